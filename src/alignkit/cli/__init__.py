"""The `alignkit` command line: typer app, one module per command group, no logic.

Each command parses options, builds a config and calls one library function; `alignkit.cli.app` holds the
typer app and `main` (errors -> exit statuses). Importing this package registers every command.
"""

from __future__ import annotations

# Commands register themselves on import; `alignkit --help` lists them in `alignkit.cli.help.COMMAND_ORDER`.
from alignkit.cli import (  # noqa: E402, F401, I001
    data,  # data inspect, data demo
    demo,  # demo
    dpo,  # dpo, kto, sft
    eval_instructions,  # eval instructions
    eval_policy,  # eval policy
    eval_refusals,  # eval refusals
    export,  # export (any run)
    grpo,  # grpo, rloo
    label,  # label, judge
    models,  # models
    plot,  # plot
    ppo,  # ppo
    rm,  # rm, eval rm, score
    sample,  # sample
)
from alignkit.cli.app import app, main, run

__all__ = ["app", "main", "run"]
