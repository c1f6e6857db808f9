"""Options of `alignkit sample`: plain sampling (K answers per prompt) or best-of-n reranking."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from alignkit.errors import ConfigError

if TYPE_CHECKING:
    from alignkit.sampling.generate import SamplingSettings

COMBINES = ("sum", "min")


@dataclass
class SampleConfig:
    """`alignkit sample`: K answers per prompt, or the best of N by one or more reward models."""

    prompts: str | None = None
    """Prompts: any file, `datasets` folder or hub name the loaders read (preference or SFT data give their prompts)."""
    format: str | None = None
    """Read --prompts as this format instead of detecting it, e.g. trl-prompt, prompt-string, trl-preference, hh-rlhf (an unknown name lists them all)."""
    model: str | None = None
    """Model to sample from: the embedded default `smollm2-135m-instruct`, a checkpoint dir or a hub id. With --policy: the base its adapter goes on (default: the base recorded in the run)."""
    policy: str | None = None
    """Sample from a trained policy: a run dir of dpo, kto, sft or ppo (LoRA adapter on its base, or a full checkpoint)."""
    output: str | None = None
    """Where to write the samples: FILE.jsonl, one line per prompt (written to a temporary file, renamed at the end)."""
    overwrite: bool = False
    """Replace --output (and the export files) when they exist."""
    n_samples: int | None = None
    """Answers per prompt without reranking (default 1)."""
    best_of_n: int | None = None
    """Sample N candidates per prompt, score them with --reward-model and/or --reward-fn and keep the best."""
    reward_model: list[str] = field(default_factory=list)
    """Reward model for --best-of-n: an `alignkit rm` run dir or a sequence-classifier checkpoint, as DIR or NAME=DIR. Repeat for several."""
    reward_weight: list[float] = field(default_factory=list)
    """Weight of each --reward-model in the combined score, in the same order (default 1 each)."""
    reward_fn: list[str] = field(default_factory=list)
    """Reward function for --best-of-n: a built-in verifier (math, length, ifeval) or `FILE.py:NAME` / `MODULE:NAME`, TRL's signature fn(prompts, completions, **columns) -> list[float | None] (the prompt records' other columns as keyword lists; None: no score, never chosen). Repeat for several; combined with the reward models (docs/rewards.md)."""
    reward_fn_weight: list[float] = field(default_factory=list)
    """Weight of each --reward-fn in the combined score, in the same order (default 1 each)."""
    combine: str = "sum"
    """How several reward models make one score: sum (of weighted scores) or min (the worst weighted score)."""
    gate: str | None = None
    """Safety gate NAME:THRESHOLD: candidates scoring below THRESHOLD on reward model NAME lose to every candidate that passes; the others are ranked by the weighted sum of the remaining models."""
    export_pairs: str | None = None
    """With --best-of-n: also write best-versus-worst preference pairs (TRL conversational JSONL: prompt/chosen/rejected) for dpo or rm."""
    export_sft: str | None = None
    """With --best-of-n: also write the winners as SFT data (TRL conversational JSONL: prompt/completion)."""
    max_new_tokens: int = 128
    """Most tokens per answer (the end-of-turn token included)."""
    temperature: float = 1.0
    """Sampling temperature (0: greedy). The KL bound of best-of-n is relative to this sampling distribution."""
    top_p: float = 1.0
    """Nucleus sampling: keep the most likely tokens up to this probability mass (1 = off)."""
    top_k: int = 0
    """Sample from the k most likely tokens only (0 = off)."""
    seed: int = 0
    """Seed of the sampling randomness (the same seed gives the same samples)."""
    batch_size: int = 128
    """Sequences (prompt x sample rows) decoded at once; larger is faster until memory runs out (--memory-budget-gb may lower it)."""
    memory_budget_gb: float | None = None
    """Most GB the KV cache may take: fewer rows are decoded at once when rows x layers x 2 x kv_heads x head_size x dtype bytes x (longest prompt + --max-new-tokens) would not fit; the samples stay the same. Default: half the memory available when sampling starts (free GPU memory, or available RAM on a CPU); 0: no budget."""
    score_batch_size: int = 16
    """Candidates per reward-model forward pass."""
    max_prompt_tokens: int | None = None
    """Prompts longer than this lose tokens from the left (counted). Default: the model's context minus --max-new-tokens."""
    dtype: str = "auto"
    """Precision of the weights: auto (bf16 where the CPU/GPU supports it, else fp32), bf16, fp16, fp32."""
    compile: bool = False
    """Compile the decode step with torch.compile (CPU): 0.87x the step time for a one-off ~23 s (SmolLM2-135M, 2 cores); pays off from about two thousand decode steps at batch 128 (e.g. 500 prompts x N = 8 x 128 tokens)."""
    share_prompts: bool = True
    """Keep each prompt's keys and values once for its samples where the native CPU attention kernel runs (bf16, N > 1); --no-share-prompts stores a copy per sample."""
    limit: int | None = None
    """Use only the first this many prompts."""
    skip_invalid: bool = False
    """Skip invalid prompt records (counted) instead of stopping at the first."""
    trust_remote_code: bool = False
    """Allow model repositories to run their own Python code. Off unless you trust the source."""
    json: bool = False
    """Print a one-object JSON summary on stdout at the end."""

    @property
    def samples_per_prompt(self) -> int:
        """N with --best-of-n, else K (--n-samples, default 1)."""
        if self.best_of_n is not None:
            return self.best_of_n
        return 1 if self.n_samples is None else self.n_samples

    def validate(self) -> None:
        from alignkit.models.device import resolve_dtype

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(self.n_samples is None or self.n_samples >= 1, f"--n-samples must be >= 1, got {self.n_samples}")
        need(self.best_of_n is None or self.best_of_n >= 1, f"--best-of-n must be >= 1, got {self.best_of_n}")
        need(
            self.n_samples is None or self.best_of_n is None,
            "give --n-samples K (plain sampling) or --best-of-n N (reranking), not both",
        )
        reranking = self.best_of_n is not None
        need(
            not reranking or bool(self.reward_model or self.reward_fn),
            "--best-of-n needs at least one --reward-model DIR or --reward-fn to score the candidates",
        )
        need(
            reranking or not (self.reward_model or self.reward_fn),
            "--reward-model and --reward-fn score candidates for --best-of-n N; add --best-of-n",
        )
        for flag, value in (("--export-pairs", self.export_pairs), ("--export-sft", self.export_sft)):
            need(
                reranking or value is None, f"{flag} needs --best-of-n N and a --reward-model or --reward-fn"
            )
        need(
            not self.reward_fn_weight or len(self.reward_fn_weight) == len(self.reward_fn),
            f"{len(self.reward_fn_weight)} --reward-fn-weight for {len(self.reward_fn)} --reward-fn: "
            "give one weight per reward function",
        )
        need(
            not self.reward_weight or len(self.reward_weight) == len(self.reward_model),
            f"{len(self.reward_weight)} --reward-weight for {len(self.reward_model)} --reward-model: "
            "give one weight per reward model",
        )
        need(
            self.combine in COMBINES, f"--combine must be one of {', '.join(COMBINES)}, got {self.combine!r}"
        )
        if self.gate is not None:
            name, sep, value = self.gate.rpartition(":")
            need(
                bool(sep and name),
                f"--gate must look like NAME:THRESHOLD (e.g. safety:0.0), got {self.gate!r}",
            )
            try:
                float(value)
            except ValueError:
                raise ConfigError(f"--gate threshold must be a number, got {value!r}") from None
            need(
                self.combine == "sum",
                "--gate ranks passing candidates by the weighted sum; drop --combine min",
            )
            need(
                len(self.reward_model) + len(self.reward_fn) >= 2,
                "--gate needs another --reward-model or --reward-fn to rank the candidates that pass the gate",
            )
        need(self.score_batch_size >= 1, f"--score-batch-size must be >= 1, got {self.score_batch_size}")
        need(self.limit is None or self.limit >= 1, f"--limit must be >= 1, got {self.limit}")
        need(
            self.memory_budget_gb is None or self.memory_budget_gb >= 0,
            f"--memory-budget-gb must be >= 0 (0: no budget), got {self.memory_budget_gb}",
        )
        resolve_dtype(self.dtype)  # ConfigError for an unknown name
        self.sampling_settings().validated()

    def sampling_settings(self) -> SamplingSettings:
        """The generator's `SamplingSettings` for these options."""
        from alignkit.sampling.generate import SamplingSettings

        return SamplingSettings(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            n=self.samples_per_prompt,
            seed=self.seed,
            batch_size=self.batch_size,
            memory_budget_gb=self.memory_budget_gb,
            max_prompt_tokens=self.max_prompt_tokens,
            compile=self.compile,
            share_prompts=None if self.share_prompts else False,
        )
