"""`alignkit demo`: the whole pipeline on the embedded default model (see alignkit/demo/pipeline.py)."""

from __future__ import annotations

from alignkit import console
from alignkit.cli.app import app, main
from alignkit.cli.options import config_command
from alignkit.demo.config import DemoConfig


@app.command("demo")
@config_command(DemoConfig)
def demo_command(cfg: DemoConfig) -> None:
    """Run the whole stage-three pipeline on the embedded default model, in minutes on a CPU.

    Builds prompts, samples candidate answers, labels pairs of them with a simulated annotator (a documented rule standing in for people), trains a reward model and evaluates it on held-out labelled pairs, then runs best-of-n, DPO, a short PPO and a short GRPO, and compares each with the base model on held-out prompts (win rate by the simulated annotator as gold, gold and proxy scores, KL), and writes plots. Every stage is an alignkit command shown as it runs; finished stages are skipped, so an interrupted demo continues. See docs/demo.md.

    Example:

        alignkit demo --output runs/demo
    """
    from alignkit.demo.pipeline import run_demo

    quiet = console.is_quiet()

    def runner(argv: list[str]) -> int:
        # each stage's command sets the console's quietness from its own options: pass the demo's on, and
        # restore it after, so `alignkit demo --quiet` stays quiet
        try:
            return main([*argv, "--quiet"] if quiet else argv)
        finally:
            console.set_quiet(quiet)

    result = run_demo(cfg, runner=runner)
    if cfg.json:
        console.print_json(result)
