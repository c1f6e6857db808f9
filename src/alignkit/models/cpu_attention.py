"""Training attention for bf16 on a CPU: two batched matmuls and a softmax, faster there than SDPA's kernel.

On a CPU, PyTorch's SDPA runs a flash-attention kernel whose bf16 forward + backward ran at about half
the speed of plain batched matmuls at our shapes (9 query heads, 3 KV heads, head dim 64, 400 tokens, one
thread, in a microbenchmark; attention was 37% of a reward-model step in an earlier profile). The whole
DPO step gained 1.28x in `benchmarks/dpo_vs_trl.py` (``throughput_ratio_same_no_share``, measured before
the recomputation below was added, which costs one more attention forward per layer). This attention is
transformers' eager attention with the casts taken out:

    scores = (q * scale) k^T + bias        (B, H_kv, G * T, S) bf16, G query heads per KV head
    probs  = softmax(scores)               bf16 out (PyTorch's CPU kernel accumulates in fp32)
    out    = probs v

Precision: eager attention also rounds the scores to bf16 (the matmul's output) and casts the fp32
softmax back to bf16 before ``probs v``; here the softmax's bf16 kernel does the same rounding in one
step. SDPA's flash kernel keeps the scores in fp32, so its outputs are a little closer to fp32 (relative
error ~0.5% against ~1% here, both at bf16's resolution; measured in tests/models/test_cpu_attention.py).

GQA without copies: the G query heads of a KV head are stacked along the query axis, so each K and V is
read once (no ``repeat_kv``). The mask is a (B, 1, T, S) bool (True = attend) or additive float; it
becomes one additive bf16 bias per forward pass, shared by every layer. In training the probabilities
are recomputed in the backward pass instead of kept (see `cpu_bf16_attention`).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface

ATTENTION_NAME = "alignkit_cpu_bf16"


def _bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, T, S) additive bias in ``dtype``; cached on the mask so 30 layers convert it once."""
    compiling = torch.compiler.is_compiling()  # in a compiled layer: fused into the graph, not cached
    cached = None if compiling else getattr(attention_mask, "_alignkit_bias", None)
    if cached is not None and cached.dtype == dtype:
        return cached
    if attention_mask.dtype == torch.bool:
        bias = torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device)
        bias = bias.masked_fill(~attention_mask, torch.finfo(dtype).min)
    else:
        bias = attention_mask.to(dtype)
    if not compiling:
        attention_mask._alignkit_bias = bias
    return bias


def _core(
    q: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor, group: int
) -> torch.Tensor:
    """softmax(q k^T + bias) v with the G query heads of a KV head stacked: q (B, H_kv, G T, D) → same shape."""
    batch, kv_heads, rows, _ = q.shape
    length, kv_len = rows // group, key.shape[2]
    scores = torch.matmul(q, key.transpose(-1, -2)).view(batch, kv_heads, group, length, kv_len)
    probs = torch.softmax(scores + bias[:, :, None], dim=-1)  # bias (B, 1, T, S) over heads
    return torch.matmul(probs.view(batch, kv_heads, rows, kv_len), value)


def cpu_bf16_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """query (B, H, T, D), key/value (B, H_kv, S, D), attention_mask (B, 1, T, S) or None (causal).

    Returns (B, T, H, D), as transformers' attention functions do. When gradients flow, the
    probabilities are not kept for the backward pass but recomputed there (selective recomputation,
    Korthikanti et al. 2022, arXiv:2205.05198, sec. 5): they are the only (T x T) activation, cheap to
    recompute and large to keep, so memory stays linear in T as with a flash kernel.
    """
    if dropout > 0.0 and module.training:
        raise NotImplementedError("alignkit's CPU attention has no attention dropout; use --no-cpu-attention")
    batch, heads, length, dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    group = heads // kv_heads
    scale = scaling if scaling is not None else dim**-0.5
    q = query.reshape(batch, kv_heads, group * length, dim) * scale  # heads h = kv * G + g, as repeat_kv
    if attention_mask is None:
        causal = torch.ones(length, kv_len, dtype=torch.bool, device=query.device).tril_(kv_len - length)
        attention_mask = causal[None, None]
    bias = _bias(attention_mask, q.dtype)
    if torch.is_grad_enabled() and (q.requires_grad or key.requires_grad or value.requires_grad):
        out = torch.utils.checkpoint.checkpoint(_core, q, key, value, bias, group, use_reentrant=False)
    else:
        out = _core(q, key, value, bias, group)  # (B, H_kv, G * T, D)
    return out.view(batch, heads, length, dim).transpose(1, 2), None


def attention_configs(model: nn.Module) -> list:
    """Every distinct config object in ``model`` that names an attention implementation (a PEFT wrapper
    and its base share one; a separate reference model has its own)."""
    seen: dict[int, object] = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            seen.setdefault(id(config), config)
    return list(seen.values())


def use_cpu_bf16_attention(model: nn.Module) -> bool:
    """Switch ``model`` (and every config it holds) to `cpu_bf16_attention` when it runs SDPA on a CPU.

    Returns whether it switched. The mask transformers builds for SDPA (bool, or None when there is no
    padding) is what this attention reads.
    """
    configs = attention_configs(model)
    if not configs or any(c._attn_implementation != "sdpa" for c in configs):
        return False
    if any(getattr(c, "attention_dropout", 0.0) for c in configs):
        return False  # attention dropout: keep SDPA, which implements it
    AttentionInterface.register(ATTENTION_NAME, cpu_bf16_attention)
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION_NAME, sdpa_mask)  # build the same masks as for SDPA
    for config in configs:
        config._attn_implementation = ATTENTION_NAME
    return True


def enable_for_training(models: list[nn.Module | None], enabled: bool, autocast_dtype, device) -> bool:
    """`use_cpu_bf16_attention` on each model when ``enabled`` and training runs in bf16 on a CPU."""
    if not enabled or autocast_dtype != torch.bfloat16 or torch.device(device).type != "cpu":
        return False
    return all([use_cpu_bf16_attention(m) for m in models if m is not None])


def saved_bytes_per_score(model: nn.Module) -> float:
    """Bytes per (query, key) pair per layer that the model's attention keeps for the backward pass: 0 for
    SDPA's flash kernel and for `cpu_bf16_attention`, which recomputes its probabilities; eager attention
    keeps its fp32 softmax input and bf16 probabilities for every head."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "eager":
        return 0.0
    return 6.0 * config.num_attention_heads
