"""`alignkit grpo` and `alignkit rloo`: critic-free RL (no logic here: see trainers/online/grpo.py)."""

from __future__ import annotations

from typing import Any

from alignkit import console
from alignkit.cli.app import app
from alignkit.cli.options import config_command
from alignkit.trainers.online.grpo_config import GRPOConfig, RLOOConfig


@app.command("grpo")
@config_command(GRPOConfig)
def grpo_command(cfg: GRPOConfig) -> None:
    """Train a policy with GRPO: G answers per prompt, each judged against its own group, no value model.

    Each step samples --group-size answers to each of --batch-size prompts, scores them with reward
    functions (--reward-fn FILE.py:NAME with TRL's signature, or a built-in: math, length, ifeval) and/or
    reward models (--reward-model DIR), and turns each answer's reward into an advantage against the other
    answers to the same prompt: (r - group mean) / group std (--scale-rewards group|batch|none;
    --advantage rloo|reinforce++ for the other estimators). The update is the clipped surrogate
    (--epsilon, --epsilon-high) averaged as --loss-type says, with a k3 KL term to the reference in the loss
    (--beta; --kl-in reward puts it in the reward instead). Every other column of a prompt record reaches the
    reward functions by name. A tenth of the prompts is held out and scored at the start and the end.
    Metrics: RUN/metrics.jsonl (docs/metrics.md); the policy adapter: RUN/. See docs/grpo.md.

    Example:

        alignkit grpo --prompts prompts.jsonl --reward-fn rewards.py:brevity --max-steps 40 -o runs/grpo-1
    """
    _run(cfg)


@app.command("rloo")
@config_command(RLOOConfig)
def rloo_command(cfg: RLOOConfig) -> None:
    """Train a policy with RLOO: REINFORCE with the mean of the other answers to a prompt as the baseline.

    The same loop and options as `alignkit grpo`, with TRL's RLOOTrainer defaults: --advantage rloo
    (r - mean of the other G-1 answers), the KL to the reference subtracted from the reward (--kl-in reward,
    --beta 0.05), and a sequence-level clipped loss (--loss-type sequence). See docs/grpo.md.

    Example:

        alignkit rloo --prompts prompts.jsonl --reward-fn math --max-steps 40 -o runs/rloo-1
    """
    _run(cfg)


def _run(cfg: Any) -> None:
    from alignkit.trainers.online.grpo import run_grpo

    summary = run_grpo(cfg)
    if summary.get("process_rank", 0) != 0:  # data parallel: one summary, from the main process
        return
    if cfg.json:
        console.print_json(summary)
    else:
        first, last = summary.get("eval_first_reward"), summary.get("eval_last_reward")
        held_out = (
            f"; held-out reward {first:.3f} -> {last:.3f}" if first is not None and last is not None else ""
        )
        console.info(
            f"done: {summary['steps']} steps in {summary['train_seconds']:.1f}s; final reward "
            f"{summary.get('final_reward')}, KL {summary.get('final_kl')}{held_out}; run: {summary['run']}"
        )
