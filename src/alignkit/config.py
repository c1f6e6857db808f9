"""Dataclass configs: recipe YAML < command-line flags; unknown keys are errors.

Each command has one dataclass. Trainer commands share `TrainConfig` (the
common options every trainer takes with the same meaning) and add their own
fields in a subclass next to the trainer. Resolution order:

1. the dataclass defaults,
2. ``--config recipes/X.yaml`` (a mapping; unknown keys raise `ConfigError`
   naming the key and the closest known one),
3. options given explicitly on the command line (``None`` means "not given").

The resolved config is saved as ``config.yaml`` in the run directory, and
``--resume`` compares against it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from alignkit.errors import ConfigError
from alignkit.files import atomic_write_text

C = TypeVar("C")

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass
class CpuAttentionOption:
    """The training-attention switch of the commands that honour it (rm, dpo, kto, sft, ppo, grpo, rloo)."""

    cpu_attention: bool = True
    """In bf16 on a CPU, run attention as two batched matmuls (alignkit's; faster there than SDPA's kernel, with eager attention's precision). --no-cpu-attention keeps SDPA."""


@dataclass
class TrainConfig:
    """Options every trainer command (rm, dpo, kto, sft, ppo) takes with the same meaning."""

    model: str = DEFAULT_MODEL
    """Base model: the embedded default `smollm2-135m-instruct`, a local HF checkpoint dir or a hub id."""
    data: str | None = None
    """Training data: a file (.jsonl .json .jsonl.gz .csv .parquet), a `datasets` folder or a hub name."""
    format: str | None = None
    """Read the training data (--data; ppo: --prompts) as this format instead of detecting it, e.g. trl-preference, hh-rlhf, sharegpt, trl-sft, trl-prompt (an unknown name lists them all). The training data only: --eval-data is detected on its own, and read as this format only when its format cannot be told."""
    output: str | None = None
    """Run directory. Default: runs/<command>-<timestamp>."""
    max_steps: int = -1
    """Optimizer steps to train; -1 means use `epochs`."""
    epochs: float = 1.0
    """Passes over the training data when `max_steps` is -1."""
    lr: float = 1e-4
    """Peak learning rate (AdamW, linear warm-up then cosine decay)."""
    warmup_ratio: float = 0.03
    """Fraction of steps spent warming the learning rate up from 0."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    batch_size: int = 8
    """Examples per micro-batch (pairs for rm/dpo, sequences for kto/sft, prompts for ppo)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step (effective batch = batch_size x grad_accum x processes)."""
    max_length: int = 512
    """Longest prompt+answer in tokens; longer prompts are cut from the left, answers never silently."""
    lora: bool = True
    """Train a LoRA adapter on a frozen base (True) or every weight (False)."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator (scale = alpha / r)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input (0 keeps training deterministic)."""
    seed: int = 0
    """Seed for data order, initialisation and sampling."""
    dtype: str = "auto"
    """Compute precision: auto (bf16 where the CPU/GPU supports it, else fp32), bf16, fp16, fp32."""
    resume: bool = False
    """Continue from the latest checkpoint in `output` (the config must match)."""
    json: bool = False
    """Print a one-object JSON summary on stdout at the end."""
    report_to: str = "none"
    """Also log to: none, tensorboard, trackio or wandb (passed to the trainer's logger)."""
    eval_data: str | None = None
    """Held-out data evaluated at the end (and every `eval_every` steps)."""
    eval_split: float = 0.0
    """Hold out this fraction of `data` for evaluation when `eval_data` is not given."""
    eval_every: int = 0
    """Evaluate every N optimizer steps (0: only at the end)."""
    save_every: int = 50
    """Write a checkpoint every N optimizer steps (and always at the end)."""
    log_every: int = 1
    """Log metrics every N optimizer steps."""
    skip_invalid: bool = False
    """Skip invalid records (counted and reported) instead of stopping at the first."""
    trust_remote_code: bool = False
    """Allow model repositories to run their own Python code. Off unless you trust the source."""
    merge: bool = False
    """Also write a merged, standalone checkpoint at the end (LoRA runs)."""


def _known_keys(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def _check_type(cls: type, name: str, value: Any, where: str) -> Any:
    """Coerce ``value`` to the field's declared type, or raise a ConfigError naming the key."""
    hints = typing.get_type_hints(cls)
    want = hints[name]
    origin = typing.get_origin(want)
    args = typing.get_args(want)
    if value is None:
        if origin in (typing.Union, types.UnionType) and type(None) in args:
            return None
        raise ConfigError(f"{where}: '{name}' must not be empty")
    if origin in (typing.Union, types.UnionType):
        want = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(want), typing.get_args(want)
    try:
        if want is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            raise TypeError
        if want is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if want is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if want is str:
            if isinstance(value, (dict, list)):
                raise TypeError
            return str(value)
        if origin in (list, tuple):
            if not isinstance(value, (list, tuple)):
                value = [value]
            inner = args[0] if args else Any
            conv = {int: int, float: float, str: str}.get(inner, lambda v: v)
            return [conv(v) for v in value]
        if origin is dict:
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
    except (TypeError, ValueError):
        tname = getattr(want, "__name__", str(want))
        raise ConfigError(f"{where}: '{name}' must be {tname}, got {value!r}") from None
    return value


def _normalise(key: str) -> str:
    return key.replace("-", "_")


def build_config(
    cls: type[C], recipe: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> C:
    """Resolve a config: dataclass defaults < recipe YAML < explicit overrides (None = not given)."""
    values: dict[str, Any] = {}
    known = _known_keys(cls)
    if recipe is not None:
        path = Path(recipe)
        if not path.is_file():
            raise ConfigError(f"{path}: no such recipe file")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a recipe must be a mapping of option: value")
        for key, value in loaded.items():
            name = _normalise(str(key))
            if name not in known:
                hint = difflib.get_close_matches(name, known, n=1)
                did = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise ConfigError(f"{path}: unknown key '{key}'{did}")
            values[name] = _check_type(cls, name, value, str(path))
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        name = _normalise(key)
        if name not in known:
            raise ConfigError(f"unknown option '{key}'")
        values[name] = _check_type(cls, name, value, "command line")
    cfg = cls(**values)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


# Options that may change between a run and its --resume without changing what is trained.
RESUME_SAFE_KEYS = frozenset(
    {
        "resume",
        "json",
        "output",
        "max_steps",
        "epochs",
        "report_to",
        "save_every",
        "log_every",
        "eval_every",
        "merge",
        "compile",  # the same numbers up to rounding; --no-compile --resume continues a run that failed to compile
    }
)


def diff_configs(saved: dict[str, Any], current: dict[str, Any], ignore=RESUME_SAFE_KEYS) -> list[str]:
    """Keys whose values differ (ignoring options that are safe to change on --resume)."""
    keys = sorted((set(saved) | set(current)) - set(ignore))
    return [k for k in keys if saved.get(k) != current.get(k)]


def field_help(cls: type, name: str) -> str:
    """The docstring under a dataclass field (the CLI uses it as the option's help)."""
    return _field_docs(cls).get(name, "")


@functools.cache
def _field_docs(cls: type) -> dict[str, str]:
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(getattr(nxt, "value", None), ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


__all__ = [
    "DEFAULT_MODEL",
    "RESUME_SAFE_KEYS",
    "TrainConfig",
    "build_config",
    "config_to_dict",
    "diff_configs",
    "field",
    "field_help",
    "save_config",
]


@dataclass
class InspectConfig:
    """`alignkit data inspect`."""

    path: str = ""
    """Data file, `datasets` folder or hub name to inspect."""
    kind: str | None = None
    """Read the data as this kind: preference, ranking, unpaired, prompt or sft (default: the format's own)."""
    format: str | None = None
    """Force a source format instead of detecting it (e.g. hh-rlhf, trl-preference, sharegpt, oasst-tree)."""
    tokenizer: str = DEFAULT_MODEL
    """Count lengths in this model's tokens (`words` counts whitespace words and loads no tokenizer)."""
    strict: bool = False
    """Stop at the first invalid record (default: skip, count and list invalid records)."""
    json: bool = False
    """Print one JSON object on stdout instead of tables."""

    def validate(self) -> None:
        from alignkit.data.records import KINDS

        if self.kind is not None and self.kind not in KINDS:
            raise ConfigError(f"--kind must be one of {', '.join(KINDS)}, got {self.kind!r}")


@dataclass
class ModelsConfig:
    """`alignkit models`."""

    prepare: bool = False
    """Convert the embedded default (GGUF) into a normal HF checkpoint in the cache, once."""
    force: bool = False
    """With --prepare: convert again even if the cache has it."""
    json: bool = False
    """Print one JSON object on stdout."""
