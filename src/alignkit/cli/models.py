"""`alignkit models`: the embedded default and the cached models."""

from __future__ import annotations

from alignkit import console
from alignkit.cli.app import app
from alignkit.cli.options import config_command
from alignkit.config import ModelsConfig


@app.command("models")
@config_command(ModelsConfig)
def models_command(cfg: ModelsConfig) -> None:
    """List the embedded default model and the models in the cache; --prepare converts the default.

    The cache is $ALIGNKIT_CACHE, else $XDG_CACHE_HOME/alignkit, else ~/.cache/alignkit.

    Example:

        alignkit models --prepare
    """
    from alignkit.models import default
    from alignkit.reports.models import show_models

    prepared = None
    if cfg.prepare:
        with console.progress("preparing the embedded default model", total=None, status=False):
            prepared = default.prepare_default(force=cfg.force)
        console.info(f"ready: {prepared}")
    models = default.list_models()
    if cfg.json:
        console.print_json(
            {
                "cache": str(default.cache_dir()),
                "prepared": str(prepared) if prepared else None,
                "models": models,
            }
        )
        return
    show_models(default.cache_dir(), models)
