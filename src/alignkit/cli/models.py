"""`alignkit models`: the embedded default and the cached models."""

from __future__ import annotations

from typing import Annotated

import typer

from alignkit import console
from alignkit.cli.app import app


@app.command("models")
def models_command(
    prepare: Annotated[
        bool,
        typer.Option(
            "--prepare",
            help="Convert the embedded default (GGUF) into a normal HF checkpoint in the cache, once.",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="With --prepare: convert again even if the cache has it.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No info lines on stderr.")] = False,
) -> None:
    """List the embedded default model and the models in the cache; --prepare converts the default.

    The cache is $ALIGNKIT_CACHE, else $XDG_CACHE_HOME/alignkit, else ~/.cache/alignkit.

    Example:

        alignkit models --prepare
    """
    from alignkit.models import registry

    console.set_quiet(quiet)
    prepared = None
    if prepare:
        with console.progress("preparing the embedded default model", total=None, status=False):
            prepared = registry.prepare_default(force=force)
        console.info(f"ready: {prepared}")
    models = registry.list_models()
    if json_out:
        console.print_json(
            {
                "cache": str(registry.cache_dir()),
                "prepared": str(prepared) if prepared else None,
                "models": models,
            }
        )
        return
    console.table(
        f"models (cache: {registry.cache_dir()})",
        ["name", "source", "status", "size", "path"],
        [
            [
                m.get("name"),
                m.get("source"),
                "prepared" if m.get("prepared") else "not prepared (alignkit models --prepare)",
                _size(m.get("size_bytes")),
                m.get("path") or "",
            ]
            for m in models
        ],
    )


def _size(n: int | None) -> str:
    if not n:
        return ""
    return f"{n / 2**20:,.0f} MiB"
