"""`alignkit eval refusals`: does the refusal rule agree with people?"""

from __future__ import annotations

from alignkit import console
from alignkit.cli.eval import eval_app
from alignkit.cli.options import config_command
from alignkit.evaluation.refusals import EvalRefusalsConfig


@eval_app.command("refusals")
@config_command(EvalRefusalsConfig)
def eval_refusals_command(cfg: EvalRefusalsConfig) -> None:
    """Measure the refusal rule (`is_refusal`) against answers that people labelled.

    Each CSV row holds an answer and a human label: full_compliance, full_refusal or partial_refusal (XSTest's classes; refusal = full or partial). Reports per file and in total the accuracy, precision and recall of "refusal", the confusion table (human label x rule), which rule fired, and XSTest's own string-match baseline. The answer column may be named completion/response/answer/output, the label column final_label/label/human_label.

    Example:

        alignkit eval refusals --data ../shared/data/labelled/xstest/model_completions/xstest_v2_completions_gpt4.csv --json
    """
    from alignkit.evaluation.refusals import run_eval_refusals, show_refusals

    result = run_eval_refusals(cfg)
    if cfg.json:
        console.print_json(result)
    else:
        show_refusals(result)
