"""Options of `alignkit grpo` and `alignkit rloo`: the critic-free algorithms on the online loop.

The loss options carry TRL 1.16's names and meanings (``num_generations`` is ``group_size`` here;
``steps_per_generation`` is ``num_mini_batches``). The defaults are chosen so that a reward function the
run has never seen rises on held-out prompts within 40 steps on a small model (docs/grpo.md says why
each); where they differ from TRL's, the field's docstring says so. docs/implementation_details.md gives
each detail's source.
"""

from __future__ import annotations

from dataclasses import dataclass

from alignkit.trainers.online.config import OnlineConfig

# The names of `alignkit.losses.group.SCALES` and `alignkit.losses.policy_gradient.LOSS_TYPES`, spelled out:
# a config module imports no torch (the CLI parses options before any ML library loads); a test keeps them equal.
SCALES = ("group", "batch", "none")
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
ADVANTAGES = ("group", "rloo", "reinforce++")
KL_PLACES = ("loss", "reward")
GRPO_LOSS_TYPES = (*LOSS_TYPES, "sequence")


@dataclass
class GRPOConfig(OnlineConfig):
    """`alignkit grpo`: Group Relative Policy Optimization (Shao et al. 2024), critic-free."""

    lr: float = 2e-4
    """Peak learning rate of the policy adapter (AdamW, linear warm-up then cosine decay).
    TRL's 1e-6 is for full fine-tuning of large models; a LoRA adapter of rank 16 needs ~100x more."""
    warmup_ratio: float = 0.0
    """Fraction of steps spent warming the learning rate up from 0."""
    batch_size: int = 4
    """Prompts per step on each process; each gets --group-size answers (answers per step = batch x group)."""
    group_size: int = 8
    """G: answers sampled per prompt, compared with each other (TRL's num_generations, default 8)."""
    max_new_tokens: int = 96
    """Longest answer sampled, in tokens (answers that reach it without EOS count as truncated)."""
    temperature: float = 1.0
    """Sampling temperature (TRL's default 1.0): the group needs different answers to compare."""
    missing_eos_penalty: float | None = None
    """Subtracted from the reward of an answer that never emitted EOS (unset: none, as TRL)."""
    eval_split: float = 0.1
    """Hold out this fraction of the prompts (at least one) and score fresh answers to them at the start and
    the end (and every --eval-every steps), so a rise is seen on prompts the policy never trained on."""
    eval_samples: int = 4
    """Answers sampled per held-out prompt at each evaluation (their mean reward and its standard error over
    prompts are logged): four halve the sampling noise of one."""
    save_every: int = 20
    """Write a checkpoint every N steps (and always at the end)."""

    advantage: str = "group"
    """group: (r - group mean) / scale (GRPO); rloo: r - mean of the other G-1 (RLOO); reinforce++: (r - batch
    mean) / batch std (REINFORCE++)."""
    scale_rewards: str = "group"
    """With --advantage group: divide by the group's std (group, GRPO), the batch's std (batch) or nothing
    (none, Dr. GRPO)."""
    normalize_advantages: bool = False
    """With --advantage rloo: whiten the advantages over the batch afterwards (TRL's normalize_advantages)."""
    loss_type: str = "dapo"
    """How token losses become one number: grpo (per-answer mean), bnpo (per-batch token mean), dr_grpo
    (sum / (answers x max-new-tokens)), dapo (sum / tokens in the step; TRL's default), or sequence (one
    clipped ratio of whole-answer probabilities per answer, mean over answers: TRL's RLOO)."""
    epsilon: float = 0.2
    """Lower clip range: the ratio pi/pi_old is clipped below at 1 - epsilon."""
    epsilon_high: float | None = None
    """Upper clip range, 1 + epsilon_high (DAPO's clip-higher uses 0.28); unset: the same as --epsilon."""
    beta: float = 0.04
    """KL coefficient to the reference (0: no KL term; the KL is still logged). TRL's default is 0.0; a small
    KL keeps the adapter near the base model so that a reward hack shows as KL first."""
    kl_in: str = "loss"
    """Where the KL goes: loss (a per-token k3 term, GRPO) or reward (beta x the answer's summed log-ratio
    subtracted from its reward before the advantages, RLOO and PPO)."""
    num_iterations: int = 1
    """Updates per rollout (GRPO's mu); above 1 the ratio pi/pi_old is that of the rollout policy."""
    mask_truncated: bool = False
    """Leave answers cut at --max-new-tokens out of the loss (DAPO's overlong filtering)."""
    forward_batch_size: int = 8
    """Answers per forward pass: the reference's (no grad), and the update's forward + backward, whose peak
    memory is that many answers' activations (the losses of the chunks add up to the whole batch's). With
    --share-prompts, a multiple of --group-size keeps each group in one packed pass."""
    share_prompts: bool = True
    """Forward each group's prompt once, its answers packed after it under a block mask, in the update and the
    reference pass: G (P + R) tokens become P + G R per prompt, with the same log-probs (to rounding)."""
    recompute_logprobs: bool = False
    """Recompute the rollout's log-probs with a training-precision forward pass. Off: one update per rollout
    takes its ratio and the logged KL from the update's own forward (TRL does the same), so no extra pass is
    needed; they are always recomputed with --num-iterations or --num-mini-batches above 1 (the ratio needs
    them) and when the KL goes in the reward (--kl-in reward with --beta > 0)."""
    all_equal_warn_steps: int = 5
    """Warn when every group's rewards have been equal for this many steps in a row (no learning signal)."""

    def extra_checks(self) -> list[tuple[bool, str]]:
        rows = self.batch_size * self.group_size
        return [
            (
                self.group_size >= 2,
                f"--group-size must be >= 2 (answers compared per prompt), got {self.group_size}",
            ),
            (
                rows % (self.num_mini_batches * self.grad_accum) == 0,
                f"answers per step (--batch-size x --group-size = {rows}) must be a multiple of "
                f"--num-mini-batches x --grad-accum ({self.num_mini_batches} x {self.grad_accum})",
            ),
            (self.advantage in ADVANTAGES, f"--advantage must be one of {', '.join(ADVANTAGES)}"),
            (self.scale_rewards in SCALES, f"--scale-rewards must be one of {', '.join(SCALES)}"),
            (self.loss_type in GRPO_LOSS_TYPES, f"--loss-type must be one of {', '.join(GRPO_LOSS_TYPES)}"),
            (0 <= self.epsilon < 1, f"--epsilon must be in [0, 1), got {self.epsilon}"),
            (
                self.epsilon_high is None or self.epsilon_high >= 0,
                f"--epsilon-high must be >= 0, got {self.epsilon_high}",
            ),
            (self.beta >= 0, f"--beta must be >= 0, got {self.beta}"),
            (self.kl_in in KL_PLACES, f"--kl-in must be one of {', '.join(KL_PLACES)}"),
            (self.num_iterations >= 1, f"--num-iterations must be >= 1, got {self.num_iterations}"),
            (
                self.all_equal_warn_steps >= 1,
                f"--all-equal-warn-steps must be >= 1, got {self.all_equal_warn_steps}",
            ),
        ]

    def validate(self) -> None:
        super().validate()
        if self.num_iterations > 1 or self.num_mini_batches > 1 or (self.kl_in == "reward" and self.beta > 0):
            # the ratio pi/pi_old of a later update, and a KL that enters the reward, need pi_old exactly
            self.recompute_logprobs = True

    @property
    def epsilon_upper(self) -> float:
        """ε_high: --epsilon-high, or --epsilon when unset."""
        return self.epsilon if self.epsilon_high is None else self.epsilon_high


@dataclass
class RLOOConfig(GRPOConfig):
    """`alignkit rloo`: REINFORCE Leave-One-Out (Ahmadian et al. 2024), TRL 1.16's RLOOTrainer defaults."""

    advantage: str = "rloo"
    """group: (r - group mean) / scale (GRPO); rloo: r - mean of the other G-1 (RLOO); reinforce++: (r - batch
    mean) / batch std (REINFORCE++)."""
    loss_type: str = "sequence"
    """How the loss is formed: sequence (one clipped ratio of whole-answer probabilities per answer, mean
    over answers: TRL's RLOO), or a token aggregation as in `alignkit grpo` (grpo, bnpo, dr_grpo, dapo)."""
    beta: float = 0.05
    """KL coefficient to the reference (TRL's RLOO default 0.05; 0: no KL term, the KL is still logged)."""
    kl_in: str = "reward"
    """Where the KL goes: reward (beta x the answer's summed log-ratio subtracted from its reward before the
    leave-one-out baseline, Ahmadian et al.; TRL's RLOO) or loss (a per-token k3 term, GRPO)."""


__all__ = ["ADVANTAGES", "GRPOConfig", "GRPO_LOSS_TYPES", "KL_PLACES", "RLOOConfig"]
