"""Per-token log-probabilities of given responses, from one full forward over prompt + response.

This is the training-side twin of the sampler's ``return_logprobs``: PPO scores its rollouts with it (policy
and reference, Ouyang et al. 2022 eq. 2) and the tests check that the sampler's numbers match it.

"Same precision" means: both take the model's logits in its compute dtype, cast them to fp32, divide by the
temperature and apply ``log_softmax`` in fp32. What can still differ is the order of floating point sums
inside the model (a cached one-token step versus a whole-sequence forward): ~1e-6 in fp32, ~1e-2 in bf16.
So when the policy runs in bf16, recompute ``old_logps`` with this function instead of trusting the
sampler's, or the importance ratio starts from bf16 noise instead of 1.
"""

from __future__ import annotations

import torch
from torch import nn

from alignkit.sampling.results import PackedGenerations


def response_token_logps(
    model: nn.Module, packed: PackedGenerations, temperature: float = 1.0, batch_size: int = 16
) -> torch.Tensor:
    """log softmax(logits / temperature)[token] for every response token: (B, T) fp32, 0 on padding.

    temperature <= 0 (greedy sampling) scores at temperature 1. Runs under the caller's grad mode, so it can
    also produce differentiable log-probs for a loss (then give it a batch_size that fits memory). The forward
    runs on the model's device; the result is on the device of ``packed`` (the CPU for `pack`'s tensors).
    """
    scale = temperature if temperature > 0 else 1.0
    device = next(model.parameters()).device
    ids, mask = packed.sequence_ids, packed.sequence_mask
    response_len = packed.response_ids.shape[1]
    out = []
    for start in range(0, ids.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        row_ids, row_mask = ids[rows].to(device), mask[rows].to(device)
        positions = (row_mask.long().cumsum(-1) - 1).clamp_(min=0)
        # Logits at position t predict token t + 1: the T response tokens are predicted by the T positions
        # before the last one. Positions go in as a tensor, not an int: see `decoder.Decoder._forward`.
        keep = torch.arange(ids.shape[1] - response_len - 1, ids.shape[1] - 1, device=device)
        logits = model(
            input_ids=row_ids, attention_mask=row_mask.long(), position_ids=positions, logits_to_keep=keep
        ).logits
        logps = torch.log_softmax(logits.float() / scale, dim=-1)
        token = logps.gather(-1, packed.response_ids[rows, :, None].to(device))[..., 0]
        out.append((token * packed.response_mask[rows].to(device)).to(ids.device))
    return torch.cat(out)
