"""The batched sampler against transformers' generate and against itself under different batching."""

from __future__ import annotations

import contextlib
import logging

import pytest
import torch

from alignkit.data.records import conversation
from alignkit.errors import ConfigError, ModelError, UserError
from alignkit.sampling import decoder as dec
from alignkit.sampling import generate as gen
from alignkit.sampling.generate import SamplingSettings, generate
from alignkit.sampling.logprobs import response_token_logps
from factories import compiler_missing, needs_compiler


def _hf_greedy(model, prompts: list[list[int]], max_new_tokens: int, pad: int, eos: int) -> list[list[int]]:
    """transformers' greedy decoding of left-padded prompts, cut after the first EOS."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    responses = []
    for row in out[:, width:].tolist():
        responses.append(row[: row.index(eos) + 1] if eos in row else row)
    return responses


def test_greedy_matches_transformers_generate(tiny_lm, tokenizer, id_prompts):
    ours = generate(tiny_lm, tokenizer, id_prompts, max_new_tokens=16, temperature=0)
    theirs = _hf_greedy(tiny_lm, id_prompts, 16, tokenizer.pad_token_id, tokenizer.eos_token_id)
    assert [g.response_ids for g in ours] == theirs
    assert len({tuple(r) for r in theirs}) > 1  # the prompts really lead to different answers


def test_shapes_masks_and_grouping(tiny_lm, tokenizer, id_prompts):
    batch = generate(tiny_lm, tokenizer, id_prompts, n=3, max_new_tokens=7, seed=1, return_logprobs=True)
    assert len(batch) == len(id_prompts) * 3
    for i, group in enumerate(batch.by_prompt()):
        assert [g.prompt_index for g in group] == [i] * 3
        assert [g.sample_index for g in group] == [0, 1, 2]
        assert all(g.prompt_ids == id_prompts[i] for g in group)
    packed = batch.to_tensors()
    rows, width = len(batch), max(len(p) for p in id_prompts)
    longest = max(len(g.response_ids) for g in batch)
    assert packed.prompt_ids.shape == (rows, width) and packed.prompt_mask.shape == (rows, width)
    assert packed.response_ids.shape == (rows, longest) and packed.token_logps.shape == (rows, longest)
    for row, g in enumerate(batch):
        assert packed.prompt_mask[row].sum() == len(g.prompt_ids)
        assert packed.prompt_mask[row, -1]  # left padded: the prompt ends at the right edge
        assert packed.prompt_ids[row, width - len(g.prompt_ids) :].tolist() == g.prompt_ids
        assert packed.response_mask[row].sum() == len(g.response_ids)
        assert packed.response_ids[row, : len(g.response_ids)].tolist() == g.response_ids
        assert (packed.token_logps[row, len(g.response_ids) :] == 0).all()
        assert (packed.token_logps[row, : len(g.response_ids)] < 0).all()
        assert packed.prompt_index[row] == g.prompt_index
    assert packed.sequence_ids.shape == (rows, width + longest)


def test_stop_tokens_end_each_row_and_are_kept(tiny_lm, tokenizer, id_prompts):
    free = generate(tiny_lm, tokenizer, id_prompts, max_new_tokens=12, temperature=0, stop_token_ids=[])
    assert all(len(g.response_ids) == 12 and not g.finished for g in free)
    # A token greedy decoding emits at different steps in different rows becomes the stop token.
    stop = free[1].response_ids[3]
    stopped = generate(
        tiny_lm, tokenizer, id_prompts, max_new_tokens=12, temperature=0, stop_token_ids=[stop]
    )
    cut_rows = 0
    for before, after in zip(free, stopped, strict=True):
        if stop in before.response_ids:
            end = before.response_ids.index(stop) + 1
            assert after.response_ids == before.response_ids[:end]
            assert after.finished
            cut_rows += 1
        else:
            assert after.response_ids == before.response_ids and not after.finished
    assert cut_rows >= 1
    assert stopped[1].response_ids[-1] == stop and len(stopped[1].response_ids) <= 4


def test_min_new_tokens_bans_stop_tokens(tiny_lm, tokenizer, id_prompts):
    free = generate(tiny_lm, tokenizer, id_prompts, max_new_tokens=10, temperature=0, stop_token_ids=[])
    stop = free[1].response_ids[1]
    out = generate(
        tiny_lm,
        tokenizer,
        id_prompts,
        max_new_tokens=10,
        temperature=0,
        stop_token_ids=[stop],
        min_new_tokens=6,
    )
    assert all(len(g.response_ids) >= 6 for g in out)
    assert all(stop not in g.response_ids[:5] for g in out)


def test_same_seed_same_samples_whatever_the_batch_size(tiny_lm, tokenizer, id_prompts):
    settings = SamplingSettings(n=3, max_new_tokens=10, seed=7, temperature=1.0)
    big = generate(tiny_lm, tokenizer, id_prompts, settings)
    again = generate(tiny_lm, tokenizer, id_prompts, settings)
    one_by_one = generate(tiny_lm, tokenizer, id_prompts, settings, batch_size=1)
    few = generate(tiny_lm, tokenizer, id_prompts, settings, batch_size=4)
    other_seed = generate(tiny_lm, tokenizer, id_prompts, settings, seed=8)
    responses = [g.response_ids for g in big]
    assert [g.response_ids for g in again] == responses
    assert [g.response_ids for g in one_by_one] == responses
    assert [g.response_ids for g in few] == responses
    assert [g.response_ids for g in other_seed] != responses
    assert len({tuple(r) for r in responses[:3]}) > 1  # the n samples of a prompt differ


def _stop_lengths(responses: list[list[int]], stop: int, limit: int) -> list[int]:
    """Length of each greedy response when ``stop`` ends it (stop token included), else ``limit``."""
    return [r.index(stop) + 1 if stop in r[:limit] else limit for r in responses]


def _varied_stop(model, tokenizer, prompts, steps: int) -> tuple[list[list[int]], int]:
    """Greedy responses without stops, and the stop token that would end them at the most different steps.

    Chosen from the greedy run itself: a greedy row with stops is the prefix of the row without, so the
    lengths are known before sampling, whatever the tokenizer and the model's favourite tokens.
    """
    free = generate(model, tokenizer, prompts, max_new_tokens=steps, temperature=0, stop_token_ids=[])
    responses = [g.response_ids for g in free]
    candidates = sorted({t for r in responses for t in r})
    stop = max(candidates, key=lambda t: (len(set(_stop_lengths(responses, t, steps))), -t))
    return responses, stop


def test_compaction_and_refill_do_not_change_greedy_results(tiny_lm, tokenizer, id_prompts):
    steps = 14
    responses, stop = _varied_stop(tiny_lm, tokenizer, id_prompts, steps)
    expected = _stop_lengths(responses, stop, steps)
    assert len(set(expected)) > 1, "the fixture model gives every row the same stop step"
    n = 2
    kw = dict(max_new_tokens=steps, temperature=0, stop_token_ids=[stop], n=n)
    whole = generate(tiny_lm, tokenizer, id_prompts, batch_size=64, **kw)
    assert [len(g.response_ids) for g in whole] == [k for k in expected for _ in range(n)]
    assert [g.response_ids for g in whole] == [
        r[:k] for r, k in zip(responses, expected, strict=True) for _ in range(n)
    ]
    assert [g.finished for g in whole] == [stop in r for r in responses for _ in range(n)]
    # Every row fits at once: the first rebuild fills the cache; rows ending at different steps force at least
    # one more, which drops the finished rows (compaction).
    assert whole.stats["rebuilds"] >= 2
    rows = len(id_prompts) * n
    for size in (1, 3):
        small = generate(tiny_lm, tokenizer, id_prompts, batch_size=size, **kw)
        # At most `size` rows at a time: waiting rows join the cache as others finish (refill).
        assert small.stats["rebuilds"] >= -(-rows // size)
        assert [g.response_ids for g in small] == [g.response_ids for g in whole]
        assert [g.finished for g in small] == [g.finished for g in whole]


def test_n_samples_share_the_prompt_prefill(tiny_lm, tokenizer, id_prompts):
    single = generate(tiny_lm, tokenizer, id_prompts, max_new_tokens=8, temperature=0)
    grouped = generate(tiny_lm, tokenizer, id_prompts, max_new_tokens=8, temperature=0, n=4)
    for i, group in enumerate(grouped.by_prompt()):
        assert all(g.response_ids == single[i].response_ids for g in group)
    assert grouped.stats["prefill_tokens"] == single.stats["prefill_tokens"] == sum(map(len, id_prompts))


def test_top_k_1_is_greedy(tiny_lm, tokenizer, id_prompts):
    greedy = generate(tiny_lm, tokenizer, id_prompts, max_new_tokens=10, temperature=0)
    top1 = generate(tiny_lm, tokenizer, id_prompts, max_new_tokens=10, temperature=1.3, top_k=1, seed=3)
    assert [g.response_ids for g in top1] == [g.response_ids for g in greedy]


@pytest.mark.parametrize(
    "temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 0, 0.9), (1.5, 20, 1.0), (0.0, 0, 1.0), (0.8, 50, 0.8)]
)
def test_returned_logprobs_match_a_full_forward(tiny_lm, tokenizer, id_prompts, temperature, top_k, top_p):
    batch = generate(
        tiny_lm,
        tokenizer,
        id_prompts,
        n=2,
        max_new_tokens=9,
        seed=5,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        return_logprobs=True,
    )
    packed = batch.to_tensors()
    with torch.no_grad():
        recomputed = response_token_logps(tiny_lm, packed, temperature=temperature)
    assert torch.allclose(packed.token_logps, recomputed, atol=2e-5, rtol=0)
    assert (recomputed[packed.response_mask] < 0).all()


def test_prompt_truncation_is_reported(tiny_lm, tokenizer, id_prompts):
    batch = generate(tiny_lm, tokenizer, id_prompts, max_new_tokens=3, temperature=0, max_prompt_tokens=5)
    assert batch.truncated_prompts == 2  # the prompts of length 9 and 12
    for g, prompt in zip(batch, id_prompts, strict=True):
        assert g.prompt_ids == prompt[-5:]
        assert g.prompt_truncated == max(0, len(prompt) - 5)


def test_chat_prompts_strings_and_records(tiny_lm, tokenizer):
    conv = conversation(("system", "Be brief."), ("user", "Hello"))
    expected = tokenizer.apply_chat_template(
        [m.to_dict() for m in conv], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    as_user = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi there"}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    batch = generate(tiny_lm, tokenizer, [conv, "Hi there", [5, 6, 7]], max_new_tokens=4, temperature=0)
    assert batch[0].prompt_ids == list(expected)
    assert batch[1].prompt_ids == list(as_user)
    assert batch[2].prompt_ids == [5, 6, 7]
    assert batch[0].text == tokenizer.decode(batch[0].response_ids, skip_special_tokens=True)


def test_model_state_is_restored(tiny_lm, tokenizer, id_prompts):
    tiny_lm.train()
    tiny_lm.model.layers[0].eval()
    before = tiny_lm.config._attn_implementation
    generate(tiny_lm, tokenizer, id_prompts, max_new_tokens=3)
    assert tiny_lm.config._attn_implementation == before
    assert tiny_lm.training and not tiny_lm.model.layers[0].training and tiny_lm.model.layers[1].training


def test_bf16_weights_and_autocast(tokenizer, id_prompts, make_lm):
    model = make_lm(tokenizer)
    autocast = generate(model, tokenizer, id_prompts, max_new_tokens=5, temperature=0, dtype="bf16")
    bf16 = generate(
        model.to(torch.bfloat16), tokenizer, id_prompts, max_new_tokens=5, seed=0, return_logprobs=True
    )
    for batch in (autocast, bf16):
        assert all(len(g.response_ids) == 5 or g.finished for g in batch)
        assert all(0 <= t < len(tokenizer) for g in batch for t in g.response_ids)
    assert all(torch.isfinite(torch.tensor(g.token_logps)).all() for g in bf16)


def test_lora_adapter_is_used(tiny_lm, tokenizer, id_prompts):
    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(
        tiny_lm, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    )
    with torch.no_grad():
        for name, parameter in peft.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    ours = generate(peft, tokenizer, id_prompts, max_new_tokens=10, temperature=0)
    theirs = _hf_greedy(peft, id_prompts, 10, tokenizer.pad_token_id, tokenizer.eos_token_id)
    assert [g.response_ids for g in ours] == theirs
    with peft.disable_adapter():
        base = generate(peft, tokenizer, id_prompts, max_new_tokens=10, temperature=0)
    assert [g.response_ids for g in base] != theirs
    if compiler_missing() is None:  # the compiled step runs the adapter too
        compiled = generate(peft, tokenizer, id_prompts, max_new_tokens=10, temperature=0, compile=True)
        assert [g.response_ids for g in compiled] == theirs


def test_bad_input_raises_user_errors(tiny_lm, tokenizer):
    with pytest.raises(ConfigError, match="temperature"):
        generate(tiny_lm, tokenizer, ["hi"], temperature=-1)
    with pytest.raises(ConfigError, match="top_p"):
        generate(tiny_lm, tokenizer, ["hi"], top_p=0)
    with pytest.raises(UserError, match="prompt 1 is empty"):
        generate(tiny_lm, tokenizer, [[5], []])
    with pytest.raises(UserError, match="prompt 0"):
        generate(tiny_lm, tokenizer, [3.5])


# ------------------------------------------------------------------ packed weights and the compiled step


@contextlib.contextmanager
def _no_packing(model, rows=128, probe=None):
    yield 0


def _packed_against_plain(model, tokenizer, id_prompts, monkeypatch, seed: int) -> list[tuple[int, int]]:
    """Sample with packed weights and without; assert the same tokens and log-probs. Returns (layers
    packed, sibling layers) for each packing context entered."""
    counts = []
    real = gen.packed_linears

    @contextlib.contextmanager
    def spy(model, rows=128, probe=None):
        with real(model, rows, probe) as packed:
            counts.append((packed, sum(type(m).__name__ == "SiblingLinear" for m in model.modules())))
            yield packed

    kw = dict(n=2, max_new_tokens=8, seed=seed, return_logprobs=True)
    monkeypatch.setattr(gen, "packed_linears", spy)
    packed = generate(model, tokenizer, id_prompts, **kw)
    monkeypatch.setattr(gen, "packed_linears", _no_packing)
    plain = generate(model, tokenizer, id_prompts, **kw)
    assert [g.response_ids for g in packed] == [g.response_ids for g in plain]
    assert [g.token_logps for g in packed] == [g.token_logps for g in plain]
    return counts


def test_packed_bf16_weights_give_the_same_samples(tokenizer, id_prompts, make_lm, monkeypatch):
    from alignkit.models.packed_linear import packing_unavailable

    model = make_lm(tokenizer).to(torch.bfloat16)
    if packing_unavailable(model) is not None:
        pytest.skip(packing_unavailable(model))
    counts = _packed_against_plain(model, tokenizer, id_prompts, monkeypatch, seed=3)
    # q, o, gate, up, down of 2 layers (k/v, 32 x 64, are too small) + LM head; gate/up packed together
    assert counts == [(11, 4)]


def test_packed_siblings_under_a_lora_adapter_give_the_same_samples(
    tokenizer, id_prompts, make_lm, monkeypatch
):
    from peft import LoraConfig, get_peft_model

    from alignkit.models.packed_linear import packing_unavailable

    model = make_lm(tokenizer, kv_heads=4).to(torch.bfloat16)  # k/v 64 x 64: packable, so q/k/v are siblings
    if packing_unavailable(model) is not None:
        pytest.skip(packing_unavailable(model))
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, parameter in peft.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    counts = _packed_against_plain(peft, tokenizer, id_prompts, monkeypatch, seed=4)
    assert counts[0][1] == 10  # q/k/v (q and v inside their LoRA wrappers) and gate/up, in 2 layers


@needs_compiler
def test_compiled_decode_step_gives_the_eager_samples(tiny_lm, tokenizer, id_prompts, monkeypatch):
    calls = []
    real = dec._compiled_call

    def counting():
        compiled = real()

        def call(model, inputs):
            calls.append(inputs["input_ids"].shape[0])
            return compiled(model, inputs)

        return call

    # Rows stop at different steps and wait for room (batch 4 < 10 rows): compaction and refill change the
    # batch and the cache size under the compiled step.
    kw = dict(n=2, max_new_tokens=12, seed=5, return_logprobs=True, batch_size=4)
    eager = generate(tiny_lm, tokenizer, id_prompts, **kw)
    monkeypatch.setattr(dec, "_compiled_call", counting)
    compiled = generate(tiny_lm, tokenizer, id_prompts, compile=True, **kw)
    assert len(calls) == compiled.stats["steps"] > 0
    assert len(set(calls)) > 1  # several batch sizes went through the one compiled function
    assert [g.response_ids for g in compiled] == [g.response_ids for g in eager]
    for a, b in zip(compiled, eager, strict=True):
        assert torch.allclose(torch.tensor(a.token_logps), torch.tensor(b.token_logps), atol=1e-4)


def test_a_compiler_failure_falls_back_to_eager(tiny_lm, tokenizer, id_prompts, monkeypatch, caplog):
    from torch._dynamo.exc import TorchDynamoException

    def broken(model, inputs):
        raise TorchDynamoException("inductor exploded\nC++ compile error: ...")

    kw = dict(n=2, max_new_tokens=6, seed=2)
    eager = generate(tiny_lm, tokenizer, id_prompts, **kw)
    monkeypatch.setattr(dec, "_compiled_call", lambda: broken)
    with caplog.at_level(logging.WARNING, logger="alignkit.sampling.generate"):
        fallback = generate(tiny_lm, tokenizer, id_prompts, compile=True, **kw)
    assert [g.response_ids for g in fallback] == [g.response_ids for g in eager]
    assert caplog.text.count("inductor exploded") == 1  # warned once, eager for the rest of the call
    assert "C++ compile error" not in caplog.text

    import alignkit.models.compile as compile_module

    caplog.clear()
    monkeypatch.setattr(compile_module, "compile_unavailable", lambda device: "no C++ compiler")
    with caplog.at_level(logging.WARNING, logger="alignkit.sampling.generate"):
        no_compiler = generate(tiny_lm, tokenizer, id_prompts, compile=True, **kw)
    assert "no C++ compiler" in caplog.text
    assert [g.response_ids for g in no_compiler] == [g.response_ids for g in eager]


# -------------------------------------------------------------------------------------- shared prompts


def _stopping_kw(model, tokenizer, prompts, steps: int = 12) -> dict:
    """Greedy settings whose rows stop at different steps (a stop token picked from a greedy run), n = 3 rows
    per prompt in a batch of 4: compaction and refill keep changing which prompts have rows."""
    _, stop = _varied_stop(model, tokenizer, prompts, steps)
    return dict(
        max_new_tokens=steps, stop_token_ids=[stop], n=3, batch_size=4, temperature=0, return_logprobs=True
    )


def test_shared_prompts_give_the_same_samples_in_fp32(tiny_lm, tokenizer, id_prompts):
    kw = _stopping_kw(tiny_lm, tokenizer, id_prompts)
    copied = generate(tiny_lm, tokenizer, id_prompts, share_prompts=False, **kw)
    shared = generate(tiny_lm, tokenizer, id_prompts, share_prompts=True, **kw)
    assert shared.stats["shared_prompts"] and not copied.stats["shared_prompts"]
    assert len({len(g.response_ids) for g in shared}) > 1 and shared.stats["rebuilds"] > 4
    assert [g.response_ids for g in shared] == [g.response_ids for g in copied]
    for a, b in zip(shared, copied, strict=True):
        assert torch.allclose(torch.tensor(a.token_logps), torch.tensor(b.token_logps), atol=1e-5)


@needs_compiler
def test_shared_prompts_in_the_native_kernel(tokenizer, make_lm):
    model = make_lm(tokenizer).to(torch.bfloat16)
    prompts = [[100 + (7 * i + j) % 300 for j in range(n)] for i, n in enumerate((40, 25, 33, 18, 47))]
    kw = _stopping_kw(model, tokenizer, prompts)
    copied = generate(model, tokenizer, prompts, share_prompts=False, **kw)
    shared = generate(model, tokenizer, prompts, **kw)  # the default here: bf16 on a CPU, n > 1
    assert shared.stats["shared_prompts"]
    assert shared.stats["peak_kv_bytes"] < copied.stats["peak_kv_bytes"]
    # One softmax over [prompt store | own columns] sums in another order than over one row: the bf16
    # outputs may differ in the last bit, so compare the log-probabilities of the tokens both runs drew.
    same = 0
    for a, b in zip(shared, copied, strict=True):
        common = 0
        while common < min(len(a.response_ids), len(b.response_ids)) and (
            a.response_ids[common] == b.response_ids[common]
        ):
            common += 1
        same += common
        assert torch.allclose(
            torch.tensor(a.token_logps[:common]), torch.tensor(b.token_logps[:common]), atol=0.05
        )
    assert same >= 0.9 * sum(len(g.response_ids) for g in copied)


def test_sharing_is_on_where_it_pays(tiny_lm, tokenizer, id_prompts):
    fp32 = generate(tiny_lm, tokenizer, id_prompts, n=2, max_new_tokens=2)
    assert not fp32.stats["shared_prompts"]  # the fallback would copy the prompts at every step
    bf16 = tiny_lm.to(torch.bfloat16)
    assert not generate(bf16, tokenizer, id_prompts, n=1, max_new_tokens=2).stats["shared_prompts"]
    assert generate(bf16, tokenizer, id_prompts, n=2, max_new_tokens=2).stats["shared_prompts"] == (
        compiler_missing() is None
    )


def test_a_model_that_drops_the_attention_keywords_fails_loudly(tiny_lm, tokenizer, id_prompts, monkeypatch):
    monkeypatch.setattr(dec, "SLAB_KEYWORD", "something_else")  # as if the model passed another keyword only
    with pytest.raises(ModelError, match="share_prompts=False"):
        generate(tiny_lm, tokenizer, id_prompts, n=2, max_new_tokens=3, share_prompts=True)
