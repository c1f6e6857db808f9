"""A local causal LM as judge: the decision is read from the next-token log-probabilities of the names.

For a judge prompt x (the template, wrapped in the model's chat template with the assistant header
appended), the judge's preference for the answer shown first is

    log p("A" | x) - log p("B" | x),   P(first is better) = sigmoid of that difference,

where p("A" | x) sums every single-token spelling of the name ("A" and " A" when each is one token). The
probability is normalised over the two names only; ``mass`` = p("A") + p("B") says how much of the
next-token distribution the judge put on valid names at all (a weak judge puts little there).

Batching: many judge prompts per forward pass, left-padded so that the last position of every row is the
next-token position; position ids count real tokens only, so padding does not shift positions.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from alignkit.errors import ModelError
from alignkit.feedback.judges.base import JudgeInput, Verdict, verdict_from_logps
from alignkit.feedback.templates import Template

ELLIPSIS = " [...]"
MAX_CUT_ROUNDS = 8


def choice_token_ids(tokenizer: Any, name: str) -> list[int]:
    """Ids of every single-token spelling of ``name`` ("A", " A") in ``tokenizer``."""
    ids = []
    for spelling in (name, " " + name):
        encoded = tokenizer.encode(spelling, add_special_tokens=False)
        if len(encoded) == 1 and encoded[0] not in ids:
            ids.append(encoded[0])
    return ids


class LocalJudge:
    """Judge with a causal LM: ``judge(inputs)`` runs batched forwards and returns one `Verdict` per input."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        template: Template,
        choices: list[str],
        name: str = "local",
        batch_size: int = 8,
        max_length: int = 2048,
    ):
        self.model, self.tokenizer, self.template, self.choices = model, tokenizer, template, choices
        self.name, self.batch_size, self.max_length = name, batch_size, max_length
        if tokenizer.pad_token_id is None:
            raise ModelError(f"the tokenizer of judge {name!r} has no pad token")
        ids = [choice_token_ids(tokenizer, c) for c in choices]
        shared = set(ids[0]) & set(ids[1])
        ids = [[i for i in group if i not in shared] for group in ids]
        for choice, group in zip(choices, ids, strict=True):
            if not group:
                raise ModelError(
                    f"judge {name!r}: {choice!r} is not one token of its tokenizer, so its probability cannot be "
                    "read as one next token; pass --choices with single-token names (A,B or 1,2)"
                )
        self.choice_ids = [torch.tensor(g) for g in ids]
        self._keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters

    @classmethod
    def load(
        cls,
        name: str,
        template: Template,
        choices: list[str],
        batch_size: int = 8,
        max_length: int = 2048,
        dtype: str = "auto",
        device: str | None = None,
        trust_remote_code: bool = False,
    ) -> LocalJudge:
        from alignkit.models.device import default_device
        from alignkit.models.registry import load_model, load_tokenizer

        device = device or default_device()
        tokenizer = load_tokenizer(name, padding_side="left", trust_remote_code=trust_remote_code)
        model = load_model(
            name, dtype=dtype, trust_remote_code=trust_remote_code, device=device, tokenizer=tokenizer
        )
        return cls(model, tokenizer, template, choices, name, batch_size, max_length)

    # ------------------------------------------------------------------ prompts
    def prompt_text(self, inp: JudgeInput) -> str:
        """The full judge prompt: the template as the user turn, then the assistant header."""
        text = self.template.render(inp.prompt, inp.answer_a, inp.answer_b, *self.choices)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        return f"{text}\n\nAnswer: "  # a base model without a chat template

    def encode(self, inp: JudgeInput) -> tuple[list[int], bool]:
        """Token ids of the judge prompt, and whether fields were cut to fit ``max_length``.

        When too long, the longest of request / answer A / answer B loses tokens from its end (marked
        " [...]") until the prompt fits; the instructions and the question at the end are never cut.
        """
        ids = self._ids(inp)
        fields = [inp.prompt, inp.answer_a, inp.answer_b]
        rounds = 0
        while len(ids) > self.max_length and rounds < MAX_CUT_ROUNDS:
            rounds += 1
            tokens = [self.tokenizer.encode(f, add_special_tokens=False) for f in fields]
            longest = max(range(3), key=lambda i: len(tokens[i]))
            keep = max(0, len(tokens[longest]) - (len(ids) - self.max_length) - 8)
            fields[longest] = self.tokenizer.decode(tokens[longest][:keep]) + ELLIPSIS
            ids = self._ids(JudgeInput(*fields))
        if len(ids) > self.max_length:  # the template alone is too long: keep its end (the question)
            ids = ids[-self.max_length :]
        return ids, rounds > 0

    def _ids(self, inp: JudgeInput) -> list[int]:
        return self.tokenizer(self.prompt_text(inp), add_special_tokens=False)["input_ids"]

    # ------------------------------------------------------------------ forward
    @torch.inference_mode()
    def choice_logps(self, batch: list[list[int]]) -> torch.Tensor:
        """Log-probability of each choice name as the next token: (B, 2)."""
        device = next(self.model.parameters()).device
        longest = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), longest), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, ids in enumerate(batch):  # left padding: every row ends at the last column
            input_ids[row, longest - len(ids) :] = torch.tensor(ids)
            attention_mask[row, longest - len(ids) :] = 1
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): real tokens count from 0
        kwargs: dict[str, Any] = {"logits_to_keep": 1} if self._keep_arg else {}
        out = self.model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            use_cache=False,
            **kwargs,
        )
        next_logps = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # (B, V)
        return torch.stack(
            [torch.logsumexp(next_logps[:, ids.to(device)], dim=-1) for ids in self.choice_ids], dim=-1
        ).cpu()  # (B, 2)

    def judge(self, inputs: list[JudgeInput]) -> list[Verdict]:
        encoded = [self.encode(inp) for inp in inputs]
        order = sorted(range(len(inputs)), key=lambda i: -len(encoded[i][0]))  # similar lengths share a batch
        out: list[Verdict | None] = [None] * len(inputs)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            logps = self.choice_logps([encoded[i][0] for i in rows])
            for row, i in enumerate(rows):
                out[i] = verdict_from_logps(
                    float(logps[row, 0]), float(logps[row, 1]), truncated=encoded[i][1]
                )
        return [v for v in out if v is not None]
