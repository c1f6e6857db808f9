"""A native CPU kernel for a decode step's attention over the KV cache (bf16), built on first use.

At batch 128 a decode step of SmolLM2-135M spends ~15 ms in attention: 60 batched matmuls of 384 tiny
products ((3 x 64) @ (64 x C)), which read the cache at 12-20 GB/s, about a third of what the memory gives,
plus a softmax between them. ``decode_attention.cpp`` does the whole attention of one (row, KV head) pair
in one pass (scores, fp32 softmax, weighted sum of values), reads only the columns the mask leaves visible,
and prefetches the next pair's keys and values while it computes (measured in docs/sample.md).

The kernel is plain C++ with GCC vector extensions, compiled here for this machine (``-O3 -march=native
-fopenmp``) by the C++ compiler inductor uses (``$CXX``, else ``g++``, else ``clang++``), cached under
``cache_dir()/kernels`` by a hash of the source, the compiler and the CPU, and loaded with ``ctypes``. It runs
inside the operator ``alignkit::decode_attention`` (`alignkit.models.ops`), so a compiled decode step calls
it as one opaque kernel. When it cannot be built (no compiler, not a CPU, not bf16, an odd head size) `slab_attention`
falls back to the batched matmuls; ``ALIGNKIT_NATIVE_ATTENTION=0`` forces that fallback.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from alignkit.models import ops

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("decode_attention.cpp")
SYMBOL = "alignkit_decode_attention_bf16"
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17")
LANES = 16  # the kernel's vector width in fp32 lanes: head size and capacity must be multiples / at least


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_identity() -> str:
    """What the compiled code depends on: the CPU model and its feature flags (``-march=native``)."""
    try:
        with open("/proc/cpuinfo") as handle:
            lines = [line for line in handle if line.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() + platform.machine()


def _build(compiler: str) -> Path:
    """Compile the kernel into the cache unless it is there; return the shared library's path."""
    from alignkit.models.default import cache_dir

    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False).stdout
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(
        b"\0".join([source, " ".join(FLAGS).encode(), version.encode(), _cpu_identity().encode()])
    ).hexdigest()[:16]
    target = cache_dir() / "kernels" / f"decode_attention-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        result = subprocess.run(
            [compiler, *FLAGS, str(SOURCE), "-o", str(built)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{Path(compiler).name} failed: {result.stderr.strip()[-500:]}")
        os.replace(built, target)  # atomic: another process sees the whole library or none
    return target


_READY = False  # whether _library() has loaded the kernel: what a compiled graph reads (and guards on)


def load() -> bool:
    """Build and load the kernel unless done (or impossible); whether it is there. Call it outside compiled
    code: `slab_attention_enabled` does, so a decode step compiled afterwards takes the kernel."""
    return _library() is not None


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The loaded kernel, or None (the reason is logged once)."""
    global _READY
    _READY = False
    if os.environ.get("ALIGNKIT_NATIVE_ATTENTION", "1") == "0":
        logger.info("native decode attention off (ALIGNKIT_NATIVE_ATTENTION=0)")
        return None
    compiler = _compiler()
    if compiler is None:
        logger.info("native decode attention unavailable: no C++ compiler (g++, clang++ or $CXX)")
        return None
    try:
        library = ctypes.CDLL(str(_build(compiler)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        logger.warning("native decode attention unavailable, using batched matmuls: %s", error)
        return None
    function = getattr(library, SYMBOL)
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_void_p] * 8 + [ctypes.c_int64] * 6 + [ctypes.c_float, ctypes.c_int]
    _READY = True
    return library


def native_attention_usable(
    query: torch.Tensor, keys_t: torch.Tensor, prompt_keys_t: torch.Tensor | None = None
) -> bool:
    """Whether the kernel serves this decode step: CPU bf16 tensors, head size a multiple of 16, >= 16 columns
    in each store.

    ``query`` (B, H_q, 1, D); ``keys_t`` (B, H_kv, D, C); ``prompt_keys_t`` (N, H_kv, D, P) or None.
    """
    return (
        query.device.type == "cpu"
        and query.dtype == torch.bfloat16
        and keys_t.dtype == torch.bfloat16
        and query.shape[-1] % LANES == 0
        and keys_t.shape[-1] >= LANES
        and (
            prompt_keys_t is None
            or (prompt_keys_t.dtype == torch.bfloat16 and prompt_keys_t.shape[-1] >= LANES)
        )
        # traced code must not run the build (file system calls break a graph): it reads the flag load() set
        and (_READY if torch.compiler.is_compiling() else load())
    )


def _decode_attention(
    query: torch.Tensor,
    keys_t: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor,
    scale: float,
    prompt_keys_t: torch.Tensor | None = None,
    prompt_values: torch.Tensor | None = None,
    slot: torch.Tensor | None = None,
) -> torch.Tensor:
    """One new token's attention over the cache. Shapes:

    query (B, H_q, D) bf16; keys_t (B, H_kv, D, C) bf16 (each row's own keys, transposed); values
    (B, H_kv, C, D) bf16. Optionally a prompt store shared by rows: prompt_keys_t (N, H_kv, D, P), prompt_values
    (N, H_kv, P, D), slot (B,) int64 (row b's prompt is entry ``slot[b]``). bias (B, P + C) float32 over
    [prompt columns | own columns] (P = 0 without a store), 0 = attend, -inf = hidden. Returns (B, H_q, D)
    bf16: ``softmax(scale * q [K_prompt; K]^T + bias) [V_prompt; V]`` per row, query head ``h`` reading KV
    head ``h // (H_q / H_kv)``.
    """
    batch, q_heads, dim = query.shape
    kv_heads, capacity = keys_t.shape[1], keys_t.shape[3]
    query, keys_t, values = query.contiguous(), keys_t.contiguous(), values.contiguous()
    bias = bias.to(torch.float32).contiguous()
    prompt_width, pointers = 0, [None, None, None]
    if prompt_keys_t is not None:
        assert prompt_values is not None and slot is not None
        prompt_keys_t, prompt_values = prompt_keys_t.contiguous(), prompt_values.contiguous()
        slot = slot.to(torch.int64).contiguous()
        prompt_width = prompt_keys_t.shape[3]
        pointers = [prompt_keys_t.data_ptr(), prompt_values.data_ptr(), slot.data_ptr()]
    out = torch.empty_like(query)
    library = _library()
    if library is None:
        raise RuntimeError("the native decode attention kernel is not available")
    status = getattr(library, SYMBOL)(
        query.data_ptr(),
        keys_t.data_ptr(),
        values.data_ptr(),
        bias.data_ptr(),
        out.data_ptr(),
        *pointers,
        batch,
        kv_heads,
        q_heads // kv_heads,
        dim,
        capacity,
        prompt_width,
        scale,
        torch.get_num_threads(),
    )
    if status != 0:
        raise RuntimeError(
            f"decode attention kernel: unsupported shapes (head size {dim}, {capacity} columns, "
            f"{prompt_width} prompt columns)"
        )
    return out


def _decode_attention_fake(
    query, keys_t, values, bias, scale, prompt_keys_t=None, prompt_values=None, slot=None
):
    return torch.empty_like(query)


decode_attention = ops.define(
    "decode_attention",
    "(Tensor query, Tensor keys_t, Tensor values, Tensor bias, float scale, Tensor? prompt_keys_t=None, "
    "Tensor? prompt_values=None, Tensor? slot=None) -> Tensor",
    _decode_attention,
    _decode_attention_fake,
)
