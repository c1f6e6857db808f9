"""`alignkit ppo`: PPO against one or more reward models (no logic here: see trainers/online/ppo.py)."""

from __future__ import annotations

from alignkit import console
from alignkit.cli.app import app
from alignkit.cli.options import config_command
from alignkit.trainers.online.config import PPOConfig


@app.command("ppo")
@config_command(PPOConfig)
def ppo_command(cfg: PPOConfig) -> None:
    """Train a policy with PPO against reward models, every model on one shared base.

    Each step samples one response per prompt with the policy, scores it with the reward
    model(s), subtracts a per-token KL penalty to the reference (the starting model), and
    runs PPO epochs on the clipped policy and value losses. With LoRA (the default) the
    policy, value and same-base reward models are adapters on one frozen base; the
    reference is that base with the adapters switched off. Metrics go to
    RUN/metrics.jsonl (see docs/metrics.md); the trained policy adapter to RUN/.

    --prompts is the PPO name of --data. Several reward models: repeat --reward-model
    (and --reward-weight); --reward-combine sum|min|gate.

    Example:

        alignkit ppo --prompts prompts.jsonl --reward-model runs/rm-1 --max-steps 100 -o runs/ppo-1
    """
    from alignkit.trainers.online.ppo import run_ppo

    summary = run_ppo(cfg)
    if summary.get("process_rank", 0) != 0:  # data parallel: one summary, from the main process
        return
    if cfg.json:
        console.print_json(summary)
    else:
        console.info(
            f"done: {summary['steps']} steps in {summary['train_seconds']:.1f}s; final score "
            f"{summary.get('final_reward')}, KL {summary.get('final_kl')}; run: {summary['run']}"
        )
