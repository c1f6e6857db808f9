"""PPO's log-probs are those of the model's own forward, logit scaling included (issue 24.2).

Granite divides the LM head's output by ``logits_scaling`` and Cohere multiplies it by ``logit_scale``; the
sampler samples from those scaled logits, so old / reference / new log-probs must use them too. Tiny
random models built from transformers' config classes, offline.
"""

from __future__ import annotations

import pytest
import torch

from alignkit.models import heads, lora
from alignkit.models.device import resolve_precision
from alignkit.trainers.online.models import PPOModels, positions_of

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB, PROMPT, RESPONSE = 64, 5, 4


def _granite():
    from transformers import GraniteConfig, GraniteForCausalLM

    config = GraniteConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, logits_scaling=8.0, pad_token_id=0,
    )  # fmt: skip
    return GraniteForCausalLM(config)


def _cohere():
    from transformers import CohereConfig, CohereForCausalLM

    config = CohereConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, logit_scale=4.0, pad_token_id=0, bos_token_id=1,
        eos_token_id=2,
    )  # fmt: skip
    return CohereForCausalLM(config)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids (2, P + R): a left-padded prompt then a right-padded response; mask; response ids (2, R)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (2, PROMPT + RESPONSE), generator=g)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, :2] = False  # the second prompt is 2 tokens shorter (left padding)
    mask[1, -1] = False  # and its response 1 token shorter (right padding)
    ids[~mask] = 0
    return ids, mask, ids[:, PROMPT:]


def _expected(model, ids, mask, temperature: float) -> torch.Tensor:
    logits = model(input_ids=ids, attention_mask=mask.long(), position_ids=positions_of(mask)).logits
    logps = torch.log_softmax(logits[:, PROMPT - 1 : -1].float() / temperature, -1)
    return logps.gather(-1, ids[:, PROMPT:, None])[..., 0]


@pytest.mark.parametrize("build", [_granite, _cohere], ids=["granite", "cohere"])
@pytest.mark.parametrize("use_lora", [False, True], ids=["full", "lora"])
def test_token_logps_equal_log_softmax_of_the_models_own_logits(build, use_lora):
    """Guards issue 24.2: `PPOModels.token_logps` applied only the LM head, so Granite's logits_scaling (and
    Cohere's logit_scale) were missing from old / ref / new log-probs (-5.581 against -5.687)."""
    torch.manual_seed(0)
    model = build().eval()
    with torch.no_grad():  # a head far from the scaling's identity, so a missed scaling shows
        model.get_output_embeddings().weight.normal_(0, 0.2)
    if use_lora:
        model = lora.add_adapter(model, "policy", lora.LoraSettings(r=2, alpha=4), trainable=True)
        with torch.no_grad():
            for p in lora.adapter_parameters(model, "policy"):
                p.normal_(0, 0.1)
    models = PPOModels(
        model, None, resolve_precision("fp32", lora=use_lora), heads.ScalarHead(32), "x", use_lora
    )
    ids, mask, response = _batch()
    with models.as_policy() as policy, torch.no_grad():
        got, entropy = models.token_logps(policy, ids, mask, response, 0.7, with_entropy=True)
        expected = _expected(policy, ids, mask, 0.7)
    real = mask[:, PROMPT:]
    assert torch.allclose(got[real], expected[real], atol=1e-5)
    assert entropy is not None and entropy.shape == response.shape
