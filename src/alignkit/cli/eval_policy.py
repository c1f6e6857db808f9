"""`alignkit eval policy`: a trained policy against its reference (win rate, reward, KL, length, habits)."""

from __future__ import annotations

from alignkit import console
from alignkit.cli.eval import eval_app
from alignkit.cli.options import config_command
from alignkit.evaluation.policy_config import EvalPolicyConfig

JSON_KEYS = (
    "win_rate",
    "win_rate_by",
    "kl",
    "kl_stderr",
    "kl_is_sampling_kl",
    "kl_note",
    "mean_reward",
    "reward_std",
    "reference_mean_reward",
    "mean_length",
    "prompts",
    "answers",
    "proxy",
    "gold",
    "judge",
    "policy_stats",
    "reference_stats",
    "over_refusal",
    "policy",
    "reference",
    "seconds",
    "output",
)


@eval_app.command("policy")
@config_command(EvalPolicyConfig)
def eval_policy_command(cfg: EvalPolicyConfig) -> None:
    """Compare a trained policy with its reference on the same prompts.

    Both answer every prompt; the policy's win rate (ties half) comes from --judge, or else from the proxy --reward-model. Also reports mean reward and its spread, KL(policy || reference) estimated from the policy's samples, length, truncation, repetition and the habits of over-optimisation (refusals, apologies, AI disclaimers, list-and-summary padding, trailing filler) side by side, a few answers side by side, and, with --gold-reward-model or --gold-judge, a held-out gold score beside the proxy.

    Example:

        alignkit eval policy --policy runs/ppo --prompts prompts.jsonl --reward-model runs/rm --json
    """
    from alignkit.evaluation.policy import run_eval_policy

    result = run_eval_policy(cfg)
    if cfg.json:
        console.print_json({k: result[k] for k in JSON_KEYS if k in result})
