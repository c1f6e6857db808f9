"""Packing generations into padded tensors, and prompt encoding."""

from __future__ import annotations

import torch

from alignkit.data.records import Record, conversation
from alignkit.sampling.prompts import encode_prompts
from alignkit.sampling.results import Generation, pack


def test_pack_pads_prompts_left_and_responses_right():
    generations = [
        Generation(0, 0, [5, 6, 7], [8, 2], "a", True, [-0.5, -0.25]),
        Generation(1, 0, [9], [10, 11, 12], "b", False, [-1.0, -2.0, -3.0]),
        Generation(2, 0, [4, 4], [], "", False, []),
    ]
    packed = pack(generations, pad_token_id=0)
    assert packed.prompt_ids.tolist() == [[5, 6, 7], [0, 0, 9], [0, 4, 4]]
    assert packed.prompt_mask.tolist() == [[True] * 3, [False, False, True], [False, True, True]]
    assert packed.response_ids.tolist() == [[8, 2, 0], [10, 11, 12], [0, 0, 0]]
    assert packed.response_mask.sum(-1).tolist() == [2, 3, 0]
    assert torch.equal(
        packed.token_logps, torch.tensor([[-0.5, -0.25, 0.0], [-1.0, -2.0, -3.0], [0.0, 0.0, 0.0]])
    )
    assert packed.finished.tolist() == [True, False, False]
    assert packed.sequence_ids[0].tolist() == [5, 6, 7, 8, 2, 0]
    assert packed.sequence_mask[1].tolist() == [False, False, True, True, True, True]


def test_pack_without_logps():
    packed = pack([Generation(0, 0, [1], [2], "", True)], pad_token_id=0)
    assert packed.token_logps is None


def test_encode_prompts_truncates_from_the_left_and_counts(tokenizer):
    record = Record(prompt=conversation(("user", "What is 2+2?")))
    ids, cut = encode_prompts(tokenizer, [record, list(range(10, 30)), "short"], max_prompt_tokens=12)
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    assert ids[0] == list(full)[-12:] and cut[0] == len(full) - 12
    assert ids[1] == list(range(18, 30)) and cut[1] == 8
    assert all(len(t) <= 12 for t in ids)
