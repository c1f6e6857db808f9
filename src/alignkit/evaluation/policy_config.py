"""Options of `alignkit eval policy`."""

from __future__ import annotations

from dataclasses import dataclass, field

from alignkit.errors import ConfigError


@dataclass
class EvalPolicyConfig:
    """`alignkit eval policy`: a trained policy against its reference, on the same prompts."""

    policy: str | None = None
    """The policy: a run dir of dpo, kto, sft or ppo (LoRA adapter or full checkpoint), or a model name/dir."""
    prompts: str | None = None
    """Prompts to answer: any file the loaders read (preference or SFT data give their prompts)."""
    format: str | None = None
    """Read --prompts as this format instead of detecting it, e.g. trl-prompt, trl-preference, hh-rlhf (an unknown name lists them all). --refusal-prompts is detected on its own, and read as this format only when its format cannot be told."""
    reference: str | None = None
    """Reference model. Default: the policy's base with its adapter disabled (LoRA runs); required otherwise."""
    model: str | None = None
    """With a LoRA --policy: the base its adapter goes on (default: the base recorded in the run)."""
    reward_model: list[str] = field(default_factory=list)
    """Proxy reward model(s): `alignkit rm` run dirs or sequence classifiers, as DIR or NAME=DIR. Repeat for several."""
    reward_weight: list[float] = field(default_factory=list)
    """Weight of each --reward-model in the combined score (default 1 each)."""
    combine: str = "sum"
    """How several reward models make one score: sum (of weighted scores) or min (the worst weighted score)."""
    gate: str | None = None
    """Safety gate NAME:THRESHOLD: an answer below THRESHOLD on reward model NAME scores NAME's own score, not the others' (Llama 2)."""
    judge: str | None = None
    """Pairwise judge for the win rate: a causal LM, an OpenAI-compatible URL, or `simulated` (the demo's rule)."""
    judge_model: str | None = None
    """Model name sent to an HTTP judge (the key comes from ALIGNKIT_JUDGE_API_KEY, else OPENAI_API_KEY)."""
    template: str = "helpful"
    """Judge principle: helpful, harmless, honest, or a text file with {prompt}, {answer_a}, {answer_b}."""
    gold_reward_model: list[str] = field(default_factory=list)
    """Held-out gold reward model(s), reported beside the proxy: proxy up while gold goes down is over-optimisation."""
    gold_judge: str | None = None
    """Held-out gold judge (a causal LM, a URL, or `simulated`), reported beside the proxy."""
    refusal_prompts: str | None = None
    """Safe prompts (e.g. XSTest's safe half): also measure how often policy and reference refuse them."""
    n_samples: int = 1
    """Answers per prompt from each model (win rates pair the i-th answers)."""
    max_new_tokens: int = 128
    """Most tokens per answer."""
    temperature: float = 1.0
    """Sampling temperature for both models; the KL estimate is for this sampling distribution (0: greedy)."""
    top_p: float = 1.0
    """Nucleus sampling mass (1 = off)."""
    seed: int = 0
    """Seed of the sampling randomness and of the judge's answer order."""
    limit: int | None = None
    """Use only the first this many prompts."""
    batch_size: int = 64
    """Sequences decoded at once."""
    score_batch_size: int = 16
    """Answers per reward-model forward pass."""
    show: int = 3
    """Sample answers printed side by side."""
    output: str | None = None
    """Also write every prompt with both answers and their scores to this JSONL file."""
    overwrite: bool = False
    """Replace --output when it exists."""
    dtype: str = "auto"
    """Precision of the weights: auto, bf16, fp16, fp32."""
    skip_invalid: bool = False
    """Skip invalid prompt records (counted) instead of stopping at the first."""
    trust_remote_code: bool = False
    """Allow model repositories to run their own Python code. Off unless you trust the source."""
    json: bool = False
    """Print a one-object JSON summary on stdout at the end."""

    def validate(self) -> None:
        from alignkit.models.device import resolve_dtype

        if not self.policy:
            raise ConfigError("--policy RUN_OR_MODEL is required (the policy to evaluate)")
        if not self.prompts:
            raise ConfigError("--prompts PATH is required (the prompts both models answer)")
        if not self.reward_model and not self.judge:
            raise ConfigError(
                "give --reward-model DIR or --judge MODEL_OR_URL (what decides which answer wins)"
            )
        if self.reward_weight and len(self.reward_weight) != len(self.reward_model):
            raise ConfigError(
                f"{len(self.reward_weight)} --reward-weight for {len(self.reward_model)} --reward-model: "
                "give one weight per reward model"
            )
        if self.combine not in ("sum", "min"):
            raise ConfigError(f"--combine must be sum or min, got {self.combine!r}")
        if self.gate is not None and len(self.reward_model) < 2:
            raise ConfigError("--gate needs another --reward-model to score the answers that pass the gate")
        if self.gold_reward_model and self.gold_judge:
            raise ConfigError("give one gold: --gold-reward-model or --gold-judge")
        for name, value, low in (
            ("n_samples", self.n_samples, 1),
            ("max_new_tokens", self.max_new_tokens, 1),
            ("batch_size", self.batch_size, 1),
            ("score_batch_size", self.score_batch_size, 1),
            ("show", self.show, 0),
        ):
            if value < low:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {self.limit}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.temperature < 0:
            raise ConfigError(f"--temperature must be >= 0, got {self.temperature}")
        resolve_dtype(self.dtype)
