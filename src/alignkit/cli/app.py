"""The typer app and the entry point: `main(argv)` runs one command and maps errors to exit statuses.

`UserError` -> ``error: ...`` on one line and exit status 2, and so is an `OSError` that the user can fix
(a full disk, a quota, a read-only file system, permissions: `OutputError.from_exception` names the path and
what to do); any other exception -> ``internal error: ...`` and exit status 1 (set ALIGNKIT_DEBUG=1 for the
traceback). Commands register themselves on `app` when `alignkit.cli` imports their modules.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from alignkit import __version__, console
from alignkit.cli.help import HelpGroup
from alignkit.errors import OutputError, TrainingError, UserError

app = typer.Typer(
    name="alignkit",
    help="Align language models with human preferences: reward models, best-of-n, PPO, DPO, KTO, labelling.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=HelpGroup,  # help pages as flowing paragraphs at any width (alignkit.cli.help)
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"alignkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],  # noqa: UP045
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """alignkit: the third stage of training an assistant (learning from human preferences).

    Example: alignkit data inspect prefs.jsonl
    """


# Python warnings from the libraries under alignkit that the person running a command cannot act on, hidden
# by `quiet_third_party_warnings`: (the start of the message, as a regex; its category; why it is hidden).
# alignkit's own warnings go through `console.warn`, not the warnings module, and are never filtered; a new
# library warning shows until it is listed here.
THIRD_PARTY_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    (
        r"`is_gradient_checkpointing` is deprecated",
        FutureWarning,
        "transformers 5 renamed it is_activation_checkpointing; peft reads the old name in PeftModel() (every "
        "adapter load: rm, ppo, eval, sample, export) and TRL in its generation helpers",
    ),
    (
        r"`gradient_checkpointing_enable` is deprecated",
        FutureWarning,
        "the same rename; peft, TRL and alignkit call it, because the new name does not exist in transformers "
        "4.57, the oldest alignkit supports",
    ),
    (
        r"`gradient_checkpointing_disable` is deprecated",
        FutureWarning,
        "the same rename; TRL calls it around generation",
    ),
)


def quiet_third_party_warnings() -> None:
    """Hide the `THIRD_PARTY_WARNINGS` (each by its message, so any other warning still shows)."""
    import warnings

    for message, category, _why in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    quiet_third_party_warnings()
    # Our own progress bars (console.py) say what is happening; the libraries' tqdm bars only add noise.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        # standalone mode: usage errors print their own message and exit with status 2
        app(args=args, prog_name="alignkit")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except UserError as e:
        console.error(str(e))
        return 2
    except TrainingError as e:  # training cannot go on (NaN loss, a failed demo stage): say why, exit 1
        console.error(str(e))
        return 1
    except KeyboardInterrupt:
        console.error("interrupted")
        return 130
    except Exception as e:
        user = OutputError.from_exception(e)  # a full disk, a read-only file system: the user can fix these
        if user is not None:
            console.error(str(user))
            return 2
        if os.environ.get("ALIGNKIT_DEBUG"):
            raise
        # internal failure: one line unless debugging
        console.error(f"internal error: {type(e).__name__}: {e} (set ALIGNKIT_DEBUG=1 for the traceback)")
        return 1
    return 0


def run() -> None:
    sys.exit(main())
