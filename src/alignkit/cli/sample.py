"""`alignkit sample`: plain sampling or best-of-n reranking (no logic here: see sampling/run.py)."""

from __future__ import annotations

from alignkit import console
from alignkit.cli.app import app
from alignkit.cli.options import config_command
from alignkit.sampling.config import SampleConfig


@app.command("sample")
@config_command(SampleConfig)
def sample_command(cfg: SampleConfig) -> None:
    """Sample answers to prompts, or keep the best of N by one or more reward models.

    Without --best-of-n: K answers per prompt (--n-samples K), one JSON line per prompt with `prompt` and `candidates` (`alignkit label` and `alignkit judge` read it). With --best-of-n N: N candidates per prompt, each scored by every --reward-model (combined by weighted --combine sum or min, or behind a --gate NAME:THRESHOLD that failing candidates lose), and the best kept: each line adds every score, `chosen_index` and the `best` text. The summary gives the analytic KL of best-of-n from the sampling policy, log N - (N-1)/N (an upper bound), the mean best score against the mean score of a single sample, and tokens/s. --export-pairs writes best-versus-worst preference pairs (for dpo or rm) and --export-sft the winners (for sft). See docs/sample.md.

    Example:

        alignkit sample --prompts prompts.jsonl --best-of-n 8 --reward-model runs/rm --output best.jsonl --export-pairs pairs.jsonl
    """
    from alignkit.reports.sample import show_sample
    from alignkit.sampling.run import run_sample

    summary = run_sample(cfg)
    if cfg.json:
        console.print_json(summary)
        return
    show_sample(summary)
