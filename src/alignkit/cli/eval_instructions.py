"""`alignkit eval instructions`: IFEval's instruction-following accuracy (no logic here: evaluation/instructions.py)."""

from __future__ import annotations

from alignkit import console
from alignkit.cli.eval import eval_app
from alignkit.cli.options import config_command
from alignkit.evaluation.instructions_config import EvalInstructionsConfig

JSON_KEYS = (
    "prompt_strict",
    "inst_strict",
    "prompt_loose",
    "inst_loose",
    "prompts",
    "instructions",
    "by_type",
    "model",
    "answers_from",
    "max_new_tokens",
    "unfinished",
    "mean_tokens",
    "new_tokens",
    "generate_s",
    "tokens_per_s",
    "truncated_prompts",
    "memory_budget_gb",
    "max_rows_in_flight",
    "peak_kv_gb",
    "peak_rss_gb",
    "seconds",
    "output",
)


@eval_app.command("instructions")
@config_command(EvalInstructionsConfig)
def eval_instructions_command(cfg: EvalInstructionsConfig) -> None:
    """Measure instruction following on IFEval's verifiable instructions (Zhou et al. 2023).

    The model answers every --prompts record greedily (up to --max-new-tokens, 1280 by default, as IFEval's harnesses do; the KV cache kept within --memory-budget-gb), or --answers gives the answers; every instruction in the record's instruction_id_list is then checked with its kwargs by the built-in `ifeval` verifier. Reports prompt-level and instruction-level accuracy, strict and loose (loose also accepts the answer without its first or last line, or without markdown asterisks), and a table per instruction type. Sentences are counted with a regex split, not nltk's punkt (docs/eval_instructions.md).

    Example:

        alignkit eval instructions --prompts ifeval_input_data.jsonl --policy runs/grpo --output answers.jsonl --json
    """
    from alignkit.evaluation.instructions import run_eval_instructions
    from alignkit.reports.instructions import show_instructions

    result = run_eval_instructions(cfg)
    if cfg.json:
        console.print_json({k: result[k] for k in JSON_KEYS if k in result})
        return
    show_instructions(result)
