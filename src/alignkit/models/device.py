"""Where models run and in which precision: the device, the dtype ``auto`` means, and one `Precision`.

Every command resolves ``--dtype`` here: `resolve_dtype` parses the option (``auto`` = bf16 where the CPU
or GPU computes it natively, else fp32), and `resolve_precision` turns it into a `Precision`: the dtype of
frozen weights and the dtype of the autocast region the forward passes run in.
"""

from __future__ import annotations

import functools
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from alignkit.errors import ConfigError

# ------------------------------------------------------------------------------------------ devices
DEVICE_ENV = "ALIGNKIT_DEVICE"


def default_device() -> torch.device:
    """Where the commands put their models: ``$ALIGNKIT_DEVICE`` when set (``cpu`` forces the CPU on a GPU
    machine; ``cuda:1`` picks a card), else the CPU when ``accelerate launch`` was told to use it
    (``ACCELERATE_USE_CPU``), else ``cuda:$LOCAL_RANK`` when CUDA is available (``LOCAL_RANK`` is set per
    process by ``accelerate launch`` / ``torchrun``; 0 otherwise), else the CPU.

    Library functions never choose a device themselves: they run on the device of the model they are given.
    """
    spec = os.environ.get(DEVICE_ENV, "").strip()
    if spec:
        try:
            return torch.device(spec)
        except (RuntimeError, ValueError) as error:
            raise ConfigError(
                f"{DEVICE_ENV}={spec!r} is not a device; use e.g. cpu, cuda or cuda:1"
            ) from error
    if os.environ.get("ACCELERATE_USE_CPU", "").strip().lower() in ("1", "true", "yes", "on"):
        return torch.device("cpu")  # `accelerate launch --cpu` or a config with `use_cpu: true`
    if torch.cuda.is_available():
        rank, cards = int(os.environ.get("LOCAL_RANK") or 0), torch.cuda.device_count()
        if rank >= cards:
            raise ConfigError(
                f"process LOCAL_RANK={rank} has no GPU of its own: this machine has {cards}; launch at most "
                f"{cards} process(es) per machine, or set {DEVICE_ENV}=cpu"
            )
        return torch.device("cuda", rank)
    return torch.device("cpu")


# ------------------------------------------------------------------------------------------------ dtypes


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (x86 ``avx512_bf16`` or ``amx_bf16``).

    Without it bf16 matmuls are emulated and slower than fp32, so ``"auto"`` picks fp32.
    """
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    try:  # no /proc (macOS, Windows): ask torch what its kernels were built to use
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:
        return False
    return "AMX" in capability.upper()


_DTYPE_NAMES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
}


def resolve_dtype(spec: str | torch.dtype, device: str | torch.device | None = None) -> torch.dtype:
    """Parse a dtype option: ``"auto"``, ``"bf16"``/``"bfloat16"``, ``"fp16"``/``"float16"``, ``"fp32"``/``"float32"``.

    ``"auto"`` chooses the dtype of the model *weights* (and of any autocast region a trainer opens): bf16 on a
    CPU with native bf16 (:func:`cpu_has_bf16`) or a CUDA device that supports it, otherwise fp32. It never picks
    fp16 (it overflows without loss scaling). ``device`` defaults to the CPU.
    """
    if isinstance(spec, torch.dtype):
        if spec not in (torch.bfloat16, torch.float16, torch.float32):
            raise ConfigError(f"dtype {spec} is not supported; use bf16, fp16, fp32 or auto")
        return spec
    text = str(spec).strip().lower()
    if text == "auto":
        where = torch.device(device) if device is not None else torch.device("cpu")
        if where.type == "cuda":
            return (
                torch.bfloat16
                if torch.cuda.is_available() and torch.cuda.is_bf16_supported()
                else torch.float32
            )
        if where.type == "cpu":
            return torch.bfloat16 if cpu_has_bf16() else torch.float32
        return torch.float32
    if text in _DTYPE_NAMES:
        return _DTYPE_NAMES[text]
    raise ConfigError(f"dtype '{spec}' is not one of: auto, bf16, bfloat16, fp16, float16, fp32, float32")


# ---------------------------------------------------------------------------------------- precision
@dataclass(frozen=True)
class Precision:
    """How a trainer stores weights and runs its matmuls.

    ``frozen_dtype`` is the storage dtype of weights that receive no gradient (the
    LoRA base). Trainable weights always stay fp32 (AdamW updates of ~1e-4 x w vanish
    in bf16's 8-bit mantissa). ``autocast_dtype`` (None = off) is the dtype matmuls run
    in under `autocast`, which also lets fp32 LoRA weights meet a bf16 base.
    """

    name: str  # "bf16" | "fp16" | "fp32"
    frozen_dtype: torch.dtype
    autocast_dtype: torch.dtype | None

    @property
    def bf16(self) -> bool:
        """Forward passes autocast to bf16 (`transformers.TrainingArguments.bf16`)."""
        return self.autocast_dtype == torch.bfloat16

    @property
    def fp16(self) -> bool:
        """Forward passes autocast to fp16 (`transformers.TrainingArguments.fp16`)."""
        return self.autocast_dtype == torch.float16


def resolve_precision(spec: str, lora: bool, device: torch.device | str = "cpu") -> Precision:
    """``auto`` = bf16 where supported, else fp32.

    bf16 with LoRA stores the frozen base in bf16 (half the memory, and no per-step
    fp32->bf16 weight casts) and keeps the adapter and head in fp32 under bf16 autocast.
    bf16 without LoRA keeps fp32 master weights under autocast (mixed precision,
    Micikevicius et al. 2018), since every weight is updated.
    """
    dtype = resolve_dtype(spec, device)
    if dtype == torch.float32:
        return Precision("fp32", torch.float32, None)
    name = "bf16" if dtype == torch.bfloat16 else "fp16"
    return Precision(name, dtype if lora else torch.float32, dtype)


def autocast(precision: Precision, device_type: str = "cpu") -> AbstractContextManager:
    """Context in which the forward pass runs (a no-op for fp32)."""
    if precision.autocast_dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device_type, dtype=precision.autocast_dtype)
