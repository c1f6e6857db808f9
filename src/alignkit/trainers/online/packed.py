"""Log-probs of a group's answers with their shared prompt forwarded once (GRPO, RLOO).

The G answers to one prompt share every prompt token, so a forward pass over G rows of prompt + answer
computes the prompt G times. Packed (`alignkit.models.shared_prompt.pack`), a group is one row: the
prompt once, then each answer's own tokens at its own position ids, under a block mask in which an
answer sees the prompt and its own earlier tokens only. Each answer's hidden states equal the unpacked
ones up to float rounding (Wang & Hegde 2024, arXiv:2410.20305, prefix sharing), and the backward pass
runs through the prompt once too: the update's work falls from G (P + R) to P + G R tokens per prompt.

Used by the critic-free update (`trainers.online.grpo`) and the rollout's reference pass
(`trainers.online.experience`) when the answers come in groups. :func:`can_pack` says when the model
allows it (an attention that reads a 4D mask, an LM head whose output is the logits); otherwise the
callers use `PPOModels.token_logps` unchanged.

Notation: B answers (rows), P prompt tokens (left-padded), R response tokens (right-padded).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from alignkit.losses.logits import logprobs_and_entropy
from alignkit.models import lora
from alignkit.models.device import autocast
from alignkit.models.shared_prompt import mask_for, pack, supports_shared_prompt
from alignkit.trainers.online.models import PPOModels

_SCALED_HEADS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


def _base(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _head(model: nn.Module) -> nn.Module:
    """The LM head (a LoRA-wrapped head runs its adapter too)."""
    return _base(model).get_output_embeddings()


def can_pack(model: nn.Module) -> bool:
    """The attention reads a custom 4D mask and the LM head's output is the logits (no scaling or capping)."""
    base = _base(model)
    text = base.config.get_text_config()
    plain_head = all(getattr(text, name, None) in (None, 1.0) for name in _SCALED_HEADS)
    return plain_head and supports_shared_prompt(base) and base.get_output_embeddings() is not None


def packed_token_logps(
    models: PPOModels,
    model: nn.Module,
    ids: Tensor,
    mask: Tensor,
    response_ids: Tensor,
    response_mask: Tensor,
    groups: list[int],
    temperature: float,
    with_entropy: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """log π(y_t | x, y_<t), τ-tempered, (B, R) fp32 and 0 on padding; optionally the entropy (B, R), no grad.

    The same values as ``models.token_logps`` (to float rounding), computed with each group's prompt once.

    Args:
        models: the roles (precision, device).
        model: from ``models.as_policy()`` or ``models.as_reference()``; runs under the caller's grad mode.
        ids: (B, P + R) left-padded prompt then right-padded response; mask: (B, P + R) bool.
        response_ids, response_mask: (B, R).
        groups: B group ids; rows with the same id answer the same prompt.
        temperature: τ.
    """
    device = next(model.parameters()).device
    B, R = response_ids.shape
    P = ids.shape[1] - R
    prompt_len = mask[:, :P].sum(1).tolist()  # real prompt tokens of each row
    answer_len = response_mask.sum(1).tolist()
    sequences = [ids[i][mask[i]].tolist() for i in range(B)]
    members: dict[int, list[int]] = {}
    for row, g in enumerate(groups):
        members.setdefault(g, []).append(row)
    packed_groups = list(members.values())
    packed_ids, _, layout = pack([[sequences[i] for i in rows] for rows in packed_groups], pad_id=0)
    flat = torch.tensor([i for rows in packed_groups for i in rows])  # layout sequence k is row flat[k]
    order = torch.empty_like(flat)
    order[flat] = torch.arange(B)  # row i is layout sequence order[i]
    layout = layout.to(device)
    dtype = models.precision.autocast_dtype or next(model.parameters()).dtype
    with autocast(models.precision, device.type), models._no_lora_upcast():
        hidden = lora.backbone(model)(
            input_ids=packed_ids.to(device),
            attention_mask=mask_for(lora.backbone(model), layout, dtype),
            position_ids=layout.position_ids,
            use_cache=False,
        ).last_hidden_state  # (G rows, W, H)
        # position p - 1 + t of row i's own sequence predicts its response token t
        lengths = torch.tensor([p + a for p, a in zip(prompt_len, answer_len, strict=True)], device=device)
        width = int(lengths.max())
        columns = layout.columns(lengths[flat.to(device)], width)[order.to(device)]  # (B, width) in row order
        start = torch.tensor(prompt_len, device=device)[:, None] - 1
        t = torch.arange(R, device=device)[None, :]
        picked_cols = columns.gather(1, (start + t).clamp(max=width - 1))  # (B, R)
        real = response_mask.to(device).bool()
        packed_rows = layout.rows[order.to(device)][:, None].expand(B, R)
        selected = hidden[packed_rows[real], picked_cols[real]]  # (N, H): only real response positions
        logits = _head(model)(selected)  # (N, V)
    targets = response_ids.to(device)[real]
    logps_flat, flat_entropy = logprobs_and_entropy(logits, targets, temperature, with_entropy)
    logps = torch.zeros(B, R, device=device, dtype=logps_flat.dtype).masked_scatter(real, logps_flat)
    entropy = None
    if flat_entropy is not None:
        entropy = torch.zeros(B, R, device=device).masked_scatter(real, flat_entropy)
    return logps, entropy


__all__ = ["can_pack", "packed_token_logps"]
