"""The typer app and the entry point: `main(argv)` runs one command and maps errors to exit statuses.

`UserError` -> ``error: ...`` on one line and exit status 2; any other exception -> ``internal error: ...``
and exit status 1 (set ALIGNKIT_DEBUG=1 for the traceback). Commands register themselves on `app` when
`alignkit.cli` imports their modules.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from alignkit import __version__, console
from alignkit.errors import TrainingError, UserError

app = typer.Typer(
    name="alignkit",
    help="Align language models with human preferences: reward models, best-of-n, PPO, DPO, KTO, labelling.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
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
    except Exception as e:  # internal failure: one line unless debugging
        if os.environ.get("ALIGNKIT_DEBUG"):
            raise
        console.error(f"internal error: {type(e).__name__}: {e} (set ALIGNKIT_DEBUG=1 for the traceback)")
        return 1
    return 0


def run() -> None:
    sys.exit(main())
