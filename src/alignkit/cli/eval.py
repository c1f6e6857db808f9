"""`alignkit eval ...`: measure models, one sub-command per kind of model.

`eval rm` is in cli/rm.py, `eval policy` in cli/eval_policy.py, `eval refusals` in cli/eval_refusals.py,
`eval instructions` in cli/eval_instructions.py.
"""

from __future__ import annotations

import typer

from alignkit.cli.app import app

eval_app = typer.Typer(
    help="Evaluate models: reward models (rm), a policy against its reference (policy), refusal rules "
    "against human labels (refusals), instruction following on IFEval (instructions).",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")
