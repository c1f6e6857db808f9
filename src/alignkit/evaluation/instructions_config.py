"""Options of `alignkit eval instructions`."""

from __future__ import annotations

from dataclasses import dataclass

from alignkit.errors import ConfigError

IFEVAL_MAX_NEW_TOKENS = 1280  # the answer length of IFEval's usual harness (lm-eval's max_gen_toks)


@dataclass
class EvalInstructionsConfig:
    """`alignkit eval instructions`: IFEval's instruction-following accuracy (strict and loose)."""

    prompts: str | None = None
    """Prompts with IFEval's columns `instruction_id_list` and `kwargs` (any prompt file the loaders read, e.g. IFEval's input_data.jsonl)."""
    answers: str | None = None
    """Judge these answers instead of generating: a JSONL whose lines give `prompt` and `response` (or `alignkit sample` output: its first candidate), matched to --prompts by the prompt's text."""
    format: str | None = None
    """Read --prompts as this format instead of detecting it, e.g. trl-prompt, prompt-string (an unknown name lists them all)."""
    policy: str | None = None
    """The model to evaluate: a run dir of dpo, kto, sft, ppo or grpo (LoRA adapter on its base, or a full checkpoint)."""
    model: str | None = None
    """Model to evaluate: the embedded default `smollm2-135m-instruct`, a checkpoint dir or a hub id. With --policy: the base its adapter goes on (default: the base recorded in the run)."""
    max_new_tokens: int = IFEVAL_MAX_NEW_TOKENS
    """Most tokens per answer, end-of-turn token included (IFEval's harnesses use 1280)."""
    batch_size: int = 128
    """Sequences decoded at once (--memory-budget-gb may lower it; the answers do not change)."""
    memory_budget_gb: float | None = None
    """Most GB the KV cache may take: fewer rows are decoded at once when rows x layers x 2 x kv_heads x head_size x dtype bytes x (longest prompt + --max-new-tokens) would not fit; the answers stay the same. Default: half the memory available when generation starts (free GPU memory, or available RAM on a CPU); 0: no budget."""
    max_prompt_tokens: int | None = None
    """Prompts longer than this lose tokens from the left (counted). Default: the model's context minus --max-new-tokens."""
    limit: int | None = None
    """Use only the first this many prompts."""
    output: str | None = None
    """Also write every prompt with its answer and the verdict on each instruction to this JSONL file (--answers reads it back)."""
    overwrite: bool = False
    """Replace --output when it exists."""
    show: int = 0
    """Also print this many answers with their verdicts."""
    dtype: str = "auto"
    """Precision of the weights: auto (bf16 where the CPU/GPU supports it, else fp32), bf16, fp16, fp32."""
    compile: bool = False
    """Compile the decode step with torch.compile (CPU): slower to start, faster per token; pays off on long runs such as IFEval's 541 prompts."""
    skip_invalid: bool = False
    """Skip invalid prompt records (counted) instead of stopping at the first."""
    trust_remote_code: bool = False
    """Allow model repositories to run their own Python code. Off unless you trust the source."""
    json: bool = False
    """Print a one-object JSON summary on stdout at the end."""

    def validate(self) -> None:
        from alignkit.models.device import resolve_dtype

        if not self.prompts:
            raise ConfigError(
                "--prompts PATH is required (prompts with IFEval's instruction_id_list and kwargs columns)"
            )
        if self.answers and (self.policy or self.model):
            raise ConfigError("--answers judges existing answers: drop --policy / --model, or drop --answers")
        for name, value, low in (
            ("max_new_tokens", self.max_new_tokens, 1),
            ("batch_size", self.batch_size, 1),
            ("show", self.show, 0),
        ):
            if value < low:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {self.limit}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ConfigError(f"--max-prompt-tokens must be >= 1, got {self.max_prompt_tokens}")
        if self.memory_budget_gb is not None and self.memory_budget_gb < 0:
            raise ConfigError(f"--memory-budget-gb must be >= 0 (0: no budget), got {self.memory_budget_gb}")
        resolve_dtype(self.dtype)
