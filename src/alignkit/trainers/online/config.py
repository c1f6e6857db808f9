"""Options of the online RL commands: what every algorithm on the loop shares (`OnlineConfig`), and PPO's own.

Every implementation detail of RLHF-PPO is one field here with the default that
Huang et al. 2024 ("The N+ Implementation Details of RLHF with PPO", arXiv:2403.17031)
and TRL 1.12's PPOConfig use, unless the field's docstring says otherwise.
docs/implementation_details.md lists each with its source. The critic-free algorithms'
options (GRPO, RLOO) are `trainers.online.grpo_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from alignkit.config import CpuAttentionOption, TrainConfig
from alignkit.errors import ConfigError

REWARD_COMBINES = ("sum", "min", "gate")
SCORE_NORMS = ("none", "scale", "whiten")
VALUE_INITS = ("reward", "zero")


@dataclass
class OnlineConfig(TrainConfig, CpuAttentionOption):
    """What every online RL algorithm reads: prompts, rewards, sampling, the loop's schedule and memory."""

    lr: float = 3e-5
    """Peak learning rate of the policy and value adapters (AdamW, linear warm-up then cosine decay)."""
    warmup_ratio: float = 0.0
    """Fraction of PPO steps spent warming the learning rate up from 0."""
    batch_size: int = 8
    """Prompts per rollout on each process (one PPO step = one rollout + its update)."""
    max_length: int = 512
    """Longest prompt + response in tokens; longer prompts are cut from the left (counted and reported)."""
    save_every: int = 20
    """Write a checkpoint every N PPO steps (and always at the end)."""
    prompts: str | None = None
    """Prompt file (any format `alignkit data inspect` reads; every record's prompt is used). Same as --data."""
    reward_model: list[str] = field(default_factory=list)
    """Reward model: an `alignkit rm` run dir or a sequence-classifier checkpoint; repeat for several. `NAME=DIR`
    names it in the metrics (default: the dir's name)."""
    reward_weight: list[float] = field(default_factory=list)
    """Weight of each --reward-model in the combined score, in the same order (default 1 each)."""
    reward_combine: str = "sum"
    """How several reward models make one score: sum (weighted), min (of the weighted scores) or gate."""
    reward_gate: str | None = None
    """With --reward-combine gate: `NAME:THRESHOLD`; when that model scores below THRESHOLD the score is the
    gate penalty (or its own score, Llama 2 style), else the weighted sum of the other models."""
    reward_gate_penalty: float | None = None
    """Fixed score given below the gate's threshold; unset: use the gate model's own score (Llama 2)."""
    gold_reward_model: list[str] = field(default_factory=list)
    """Held-out gold reward model(s), never trained against: logged as `gold/score` beside `reward/score`, so
    over-optimisation (proxy up, gold down; Gao et al. 2022) shows during training."""
    gold_judge: str | None = None
    """`simulated`: log the simulated annotator's score (the demo's gold rule) as `gold/score` every step."""
    policy: str | None = None
    """Model to start the policy from (and the reference): a checkpoint, or an adapter run dir. Default --model."""
    sft: str | None = None
    """An `alignkit sft` run dir: the policy starts from its adapter and the reference is the SFT model."""
    max_new_tokens: int = 64
    """Longest response sampled per prompt, in tokens (responses that reach it without EOS are truncated)."""
    temperature: float = 0.7
    """Sampling temperature; the same value divides the logits of rollout, reference and training passes."""
    top_k: int = 0
    """Sample only among the k likeliest tokens (0: off). PPO assumes the full distribution: keep it off."""
    top_p: float = 1.0
    """Nucleus sampling (1.0: off). PPO assumes the full distribution: keep it off."""
    missing_eos_penalty: float | None = 1.0
    """Subtracted from the score of a response that never emitted EOS (unset: no penalty)."""
    num_mini_batches: int = 1
    """Each PPO epoch splits the shuffled rollout into this many minibatches, one optimizer step each."""
    score_norm: str = "none"
    """Normalise reward-model scores with running statistics: none, scale (divide by std) or whiten (std used once >= 1e-4)."""
    score_clip: float | None = None
    """Clip the (normalised) score to [-c, c] (unset: no clipping)."""
    kl_target: float = 6.0
    """Target KL in nats per response: the adaptive controller's set point, and a warning fires above 2x."""
    disable_dropout: bool = True
    """Set every dropout probability to 0 in all models (policy log-probs must not be random)."""
    recompute_logprobs: bool = True
    """Recompute the rollout log-probs with a training-precision forward pass instead of the sampler's."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass of the update: less memory, more time."""
    compile: bool = False
    """Compile the decoder layers for the update and the decode step for the rollouts (torch.compile): faster
    steps after a one-off compile of tens of seconds in the first step. Needs a C++ compiler on a CPU."""
    forward_batch_size: int = 16
    """Rows per no-grad forward pass of the rollout (reference, value, reward)."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep."""
    length_drift_warn: float = 0.5
    """Warn when the mean response length moves by this fraction from the first rollouts'."""
    reward_fn: list[str] = field(default_factory=list)
    """Reward function: a built-in verifier (math, length, ifeval) or `FILE.py:NAME` / `MODULE:NAME`, with TRL's
    signature fn(prompts, completions, **columns) -> list[float | None]; repeat for several (docs/rewards.md)."""
    reward_fn_weight: list[float] = field(default_factory=list)
    """Weight of each --reward-fn in the combined score, in the same order (default 1 each)."""
    eval_samples: int = 1
    """Answers sampled per held-out prompt at each evaluation; their mean reward is logged, with its standard
    error over prompts (`eval/reward/score_stderr`)."""
    reward_judge: list[str] = field(default_factory=list)
    """A judge as a reward: `simulated` (the demo's rule, pointwise), a local model, or an OpenAI-compatible
    URL (key from ALIGNKIT_JUDGE_API_KEY or OPENAI_API_KEY). Each answer's reward is its win rate against
    the other answers to the same prompt (docs/rewards.md); repeat for several."""
    reward_judge_weight: list[float] = field(default_factory=list)
    """Weight of each --reward-judge in the combined score, in the same order (default 1 each)."""
    judge_template: str = "helpful"
    """The --reward-judge's principle: helpful, harmless, honest, or a template file (as `alignkit judge`)."""
    judge_model: str | None = None
    """Model name sent to an HTTP --reward-judge."""
    judge_swap: bool = True
    """Judge each pair in both orders and average (position bias cancels; twice the judgements)."""

    def extra_checks(self) -> list[tuple[bool, str]]:
        """(ok, message) checks of a subclass's own options; `validate` raises the first that fails."""
        return []

    def validate(self) -> None:
        if self.gold_judge is not None and self.gold_judge.strip().lower() != "simulated":
            raise ConfigError(
                f"--gold-judge {self.gold_judge!r}: the online trainers log a pointwise gold score, so only "
                "`simulated` is supported here; for an LM or HTTP judge use `alignkit eval policy --gold-judge` on checkpoints"
            )
        if self.gold_judge is not None and self.gold_reward_model:
            raise ConfigError("give one gold: --gold-reward-model or --gold-judge")
        if self.prompts is not None and self.data is not None and self.prompts != self.data:
            raise ConfigError("give the prompts once: --prompts (or its alias --data), not both")
        if self.prompts is None:
            self.prompts = self.data
        self.data = None  # one name in config.yaml, so --resume compares one key
        if self.policy is not None and self.sft is not None:
            raise ConfigError("give either --policy or --sft, not both")
        checks = [
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.grad_accum >= 1, f"--grad-accum must be >= 1, got {self.grad_accum}"),
            (self.num_mini_batches >= 1, f"--num-mini-batches must be >= 1, got {self.num_mini_batches}"),
            (self.max_new_tokens >= 1, f"--max-new-tokens must be >= 1, got {self.max_new_tokens}"),
            (
                self.max_length > self.max_new_tokens,
                f"--max-length ({self.max_length}) must exceed --max-new-tokens ({self.max_new_tokens})",
            ),
            (self.temperature > 0, f"--temperature must be > 0, got {self.temperature}"),
            (self.top_k >= 0, f"--top-k must be >= 0, got {self.top_k}"),
            (0 < self.top_p <= 1, f"--top-p must be in (0, 1], got {self.top_p}"),
            (self.score_norm in SCORE_NORMS, f"--score-norm must be one of {', '.join(SCORE_NORMS)}"),
            (
                self.score_clip is None or self.score_clip > 0,
                f"--score-clip must be > 0, got {self.score_clip}",
            ),
            (self.kl_target > 0, f"--kl-target must be > 0, got {self.kl_target}"),
            (self.eval_samples >= 1, f"--eval-samples must be >= 1, got {self.eval_samples}"),
            (
                self.reward_combine in REWARD_COMBINES,
                f"--reward-combine must be one of {', '.join(REWARD_COMBINES)}",
            ),
            (
                self.forward_batch_size >= 1,
                f"--forward-batch-size must be >= 1, got {self.forward_batch_size}",
            ),
            (self.keep_checkpoints >= 1, f"--keep-checkpoints must be >= 1, got {self.keep_checkpoints}"),
            (self.length_drift_warn > 0, f"--length-drift-warn must be > 0, got {self.length_drift_warn}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (0 <= self.warmup_ratio < 1, f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}"),
            (
                self.max_steps == -1 or self.max_steps >= 1,
                f"--max-steps must be -1 or >= 1, got {self.max_steps}",
            ),
            (self.max_steps != -1 or self.epochs > 0, f"--epochs must be > 0, got {self.epochs}"),
            (self.lora_r >= 1, f"--lora-r must be >= 1, got {self.lora_r}"),
            (0 <= self.lora_dropout < 1, f"--lora-dropout must be in [0, 1), got {self.lora_dropout}"),
            (0 <= self.eval_split < 1, f"--eval-split must be in [0, 1), got {self.eval_split}"),
            (self.save_every >= 0, f"--save-every must be >= 0, got {self.save_every}"),
            (self.log_every >= 1, f"--log-every must be >= 1, got {self.log_every}"),
            (
                self.dtype in ("auto", "bf16", "fp16", "fp32"),
                f"--dtype must be auto, bf16, fp16 or fp32, got {self.dtype!r}",
            ),
        ]
        for ok, message in checks + self.extra_checks():
            if not ok:
                raise ConfigError(message)
        if self.reward_weight and len(self.reward_weight) != len(self.reward_model):
            raise ConfigError(
                f"--reward-weight was given {len(self.reward_weight)} times for {len(self.reward_model)} "
                "--reward-model(s): give one weight per reward model, in the same order"
            )
        if (self.reward_combine == "gate") != (self.reward_gate is not None):
            raise ConfigError("--reward-combine gate and --reward-gate NAME:THRESHOLD go together")
        if self.eval_data is not None and self.eval_split > 0:
            raise ConfigError("give either --eval-data or --eval-split, not both")
        if self.reward_judge_weight and len(self.reward_judge_weight) != len(self.reward_judge):
            raise ConfigError(
                f"--reward-judge-weight was given {len(self.reward_judge_weight)} times for "
                f"{len(self.reward_judge)} --reward-judge(s): give one weight per judge, in the same order"
            )
        if self.reward_fn_weight and len(self.reward_fn_weight) != len(self.reward_fn):
            raise ConfigError(
                f"--reward-fn-weight was given {len(self.reward_fn_weight)} times for {len(self.reward_fn)} "
                "--reward-fn(s): give one weight per reward function, in the same order"
            )


@dataclass
class PPOConfig(OnlineConfig):
    """`alignkit ppo`: PPO against one or more reward models, every model on one shared base."""

    ppo_epochs: int = 4
    """Passes of PPO updates over each rollout."""
    clip_range: float = 0.2
    """PPO-clip epsilon of the policy ratio."""
    value_clip_range: float = 0.2
    """Clip range of the value prediction around the rollout's value (0: no value clipping)."""
    vf_coef: float = 0.1
    """Weight of the value loss in the total loss."""
    gamma: float = 1.0
    """Discount of GAE."""
    lam: float = 0.95
    """Lambda of GAE."""
    whiten_advantages: bool = True
    """Whiten the advantages of each rollout (mean 0, variance 1 over response tokens)."""
    whiten_rewards: bool = False
    """Scale per-token rewards by their std over the rollout (without shifting the mean)."""
    target_approx_kl: float = 0.0
    """Stop the PPO epochs of a step early once ppo/approx_kl exceeds this (0: never stop early)."""
    kl_coef: float = 0.05
    """KL coefficient beta (the starting value when --adaptive-kl)."""
    kl_estimator: str = "k1"
    """Per-token KL penalty estimator: k1 (log-ratio, unbiased), k3 (low variance), k2 or abs."""
    adaptive_kl: bool = False
    """Adapt beta so the per-sequence KL to the reference tracks --kl-target (Ziegler et al. 2019)."""
    kl_horizon: int = 10000
    """Adaptive controller horizon in responses (a larger horizon adapts beta more slowly)."""
    value_init: str = "reward"
    """Start the value adapter and head from the (first, same-base) reward model, or from zero."""

    def extra_checks(self) -> list[tuple[bool, str]]:
        return [
            (
                self.batch_size % (self.num_mini_batches * self.grad_accum) == 0,
                f"--batch-size ({self.batch_size}) must be a multiple of --num-mini-batches x --grad-accum "
                f"({self.num_mini_batches} x {self.grad_accum})",
            ),
            (self.ppo_epochs >= 1, f"--ppo-epochs must be >= 1, got {self.ppo_epochs}"),
            (self.clip_range > 0, f"--clip-range must be > 0, got {self.clip_range}"),
            (self.value_clip_range >= 0, f"--value-clip-range must be >= 0, got {self.value_clip_range}"),
            (self.vf_coef >= 0, f"--vf-coef must be >= 0, got {self.vf_coef}"),
            (0 <= self.gamma <= 1, f"--gamma must be in [0, 1], got {self.gamma}"),
            (0 <= self.lam <= 1, f"--lam must be in [0, 1], got {self.lam}"),
            (self.target_approx_kl >= 0, f"--target-approx-kl must be >= 0, got {self.target_approx_kl}"),
            (self.kl_coef >= 0, f"--kl-coef must be >= 0, got {self.kl_coef}"),
            (self.kl_estimator in ("k1", "k2", "k3", "abs"), "--kl-estimator must be one of k1, k2, k3, abs"),
            (self.kl_horizon >= 1, f"--kl-horizon must be >= 1, got {self.kl_horizon}"),
            (self.value_init in VALUE_INITS, f"--value-init must be one of {', '.join(VALUE_INITS)}"),
        ]
