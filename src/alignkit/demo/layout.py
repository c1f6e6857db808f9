"""Where the demo keeps each stage's files under its output folder (shared by the pipeline and compare.py)."""

from __future__ import annotations

from pathlib import Path

from alignkit.demo.config import DemoConfig


class Layout:
    """The demo's config and the path of every file its stages read or write."""

    def __init__(self, cfg: DemoConfig):
        self.cfg = cfg
        self.out = Path(cfg.output).expanduser()
        d = self.out
        self.train_prompts = d / "data" / "train_prompts.jsonl"
        self.candidate_prompts = d / "data" / "candidate_prompts.jsonl"
        self.eval_prompts = d / "data" / "eval_prompts.jsonl"
        self.monitor_prompts = d / "data" / "monitor_prompts.jsonl"
        self.candidates = d / "candidates.jsonl"
        self.pair_items = d / "data" / "pairs_to_label.jsonl"
        self.labels = d / "labels.jsonl"
        self.labels_train = d / "data" / "labels_train.jsonl"
        self.labels_eval = d / "data" / "labels_eval.jsonl"
        self.rm = d / "rm"
        self.bon = d / "best_of_n.jsonl"
        self.dpo = d / "dpo"
        self.ppo = d / "ppo"
        self.grpo = d / "grpo"
        self.results = d / "results.json"
        self.plots = d / "plots"
