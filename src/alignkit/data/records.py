"""The one record type every loader produces and every trainer reads.

A `Record` is a prompt (a conversation, usually ending with a user turn) plus
the answers for one kind of data:

=========== ============================================ =====================
kind        fields                                       read by
=========== ============================================ =====================
preference  ``chosen``, ``rejected`` (+ optional margin)  rm, dpo, label
ranking     ``responses`` with ``ranks`` (0 = best)       rm, label
unpaired    ``completion`` with ``label`` (True = good)   kto
prompt      the prompt alone                              sample, ppo, eval
sft         ``completion`` without a label                sft
=========== ============================================ =====================

Answers are conversations too (tuples of `Message`), because real dialogues
part before the last turn: the shared part is the prompt and the rest of each
dialogue is a multi-turn answer.

Conversions between kinds are methods here (`to_pairs`, `to_unpaired`, ...),
so no trainer re-implements them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

from alignkit.errors import DataError

KINDS = ("preference", "ranking", "unpaired", "prompt", "sft")
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


Conversation = tuple[Message, ...]


def conversation(*turns: tuple[str, str] | Message) -> Conversation:
    """Build a conversation from ``(role, content)`` pairs or messages."""
    return tuple(t if isinstance(t, Message) else Message(*t) for t in turns)


def text_of(conv: Conversation) -> str:
    """Plain text of a conversation's contents, for display and length statistics."""
    return "\n\n".join(m.content for m in conv)


@dataclass(frozen=True)
class Record:
    prompt: Conversation
    chosen: Conversation | None = None  # preference: the preferred answer
    rejected: Conversation | None = None  # preference: the other answer
    responses: tuple[Conversation, ...] | None = None  # ranking: K answers
    ranks: tuple[int, ...] | None = None  # ranking: rank of each answer, 0 = best, equal = tie
    completion: Conversation | None = None  # unpaired (with label) or sft (without)
    label: bool | None = None  # unpaired: True = desirable
    margin: float | None = None  # preference: Bradley-Terry margin (how much better chosen is)
    source: str = ""  # "FILE:LINE" (or "FILE:#INDEX") where the record came from
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    # ------------------------------------------------------------------ kind
    @property
    def kind(self) -> str:
        if self.chosen is not None or self.rejected is not None:
            return "preference"
        if self.responses is not None:
            return "ranking"
        if self.completion is not None:
            return "unpaired" if self.label is not None else "sft"
        return "prompt"

    # ------------------------------------------------------------ validation
    def validate(self) -> Record:
        """Raise `DataError` (naming ``source``) if the record cannot train anything."""

        def fail(reason: str) -> None:
            raise DataError(reason, self.source or None)

        for name, conv in self._conversations():
            for m in conv:
                if m.role not in ROLES:
                    fail(f"{name}: unknown role {m.role!r} (expected one of {', '.join(ROLES)})")
                if not isinstance(m.content, str):
                    fail(f"{name}: message content must be text, got {type(m.content).__name__}")
        if not self.prompt:
            fail("prompt is missing or empty")
        if not any(m.content.strip() for m in self.prompt):
            fail("prompt is empty")
        kind = self.kind
        if kind == "preference":
            if self.chosen is None:
                fail("'chosen' is missing")
            if self.rejected is None:
                fail("'rejected' is missing")
            # An empty answer is a real answer (saying nothing can be the harmless choice);
            # two identical answers carry no preference signal.
            if self.chosen == self.rejected:
                fail("chosen and rejected are identical (no preference signal)")
            if self.margin is not None and self.margin != self.margin:  # NaN
                fail("margin is NaN")
        elif kind == "ranking":
            assert self.responses is not None
            if len(self.responses) < 2:
                fail(f"a ranking needs at least 2 answers, got {len(self.responses)}")
            if self.ranks is None or len(self.ranks) != len(self.responses):
                fail("ranking: every answer needs a rank")
            if len(set(self.ranks)) < 2:
                fail("ranking: all answers tie (no preference signal)")
        elif kind in ("unpaired", "sft"):
            assert self.completion is not None
            if not self.completion:
                fail("completion is empty")
        return self

    def _conversations(self):
        yield "prompt", self.prompt
        for name in ("chosen", "rejected", "completion"):
            conv = getattr(self, name)
            if conv is not None:
                yield name, conv
        for i, conv in enumerate(self.responses or ()):
            yield f"responses[{i}]", conv

    # ----------------------------------------------------------- conversions
    def answers(self) -> list[Conversation]:
        """Every answer the record holds, in its own order."""
        kind = self.kind
        if kind == "preference":
            return [self.chosen, self.rejected]  # type: ignore[list-item]
        if kind == "ranking":
            return list(self.responses)  # type: ignore[arg-type]
        if kind in ("unpaired", "sft"):
            return [self.completion]  # type: ignore[list-item]
        return []

    def to_pairs(self) -> list[Record]:
        """Preference pairs: a ranking of K answers gives every pair of different rank.

        That is up to C(K, 2) pairs (InstructGPT, Ouyang et al. 2022, sec. 3.5);
        ties give no pair. Each pair's ``meta`` keeps ``group`` (the ranking's
        source) and ``group_size`` (pairs from that ranking) so a trainer can
        weight every ranking as one comparison.
        """
        kind = self.kind
        if kind == "preference":
            return [self]
        if kind != "ranking":
            raise DataError(f"cannot make preference pairs from {kind} data", self.source or None)
        assert self.responses is not None and self.ranks is not None
        pairs = []
        for i, j in itertools.combinations(range(len(self.responses)), 2):
            if self.ranks[i] == self.ranks[j]:
                continue
            better, worse = (i, j) if self.ranks[i] < self.ranks[j] else (j, i)
            if self.responses[better] == self.responses[worse]:
                continue
            pairs.append((better, worse))
        return [
            Record(
                prompt=self.prompt,
                chosen=self.responses[b],
                rejected=self.responses[w],
                source=self.source,
                meta={
                    **self.meta,
                    "group": self.meta.get("group", self.source),
                    "group_size": len(pairs),
                    "ranks": (b, w),
                },
            )
            for b, w in pairs
        ]

    def to_ranking(self) -> Record:
        """A ranking record (a preference pair is a ranking of two)."""
        kind = self.kind
        if kind == "ranking":
            return self
        if kind != "preference":
            raise DataError(f"cannot make a ranking from {kind} data", self.source or None)
        return Record(
            prompt=self.prompt,
            responses=(self.chosen, self.rejected),  # type: ignore[arg-type]
            ranks=(0, 1),
            source=self.source,
            meta=self.meta,
        )

    def to_unpaired(self) -> list[Record]:
        """Unpaired examples: each chosen answer is desirable, each rejected one undesirable.

        Rankings first become pairs. An answer that appears in several pairs
        appears once per pair, which keeps KTO's class balance faithful to the
        comparisons.
        """
        kind = self.kind
        if kind == "unpaired":
            return [self]
        if kind == "preference":
            return [
                replace(self, chosen=None, rejected=None, margin=None, completion=self.chosen, label=True),
                replace(self, chosen=None, rejected=None, margin=None, completion=self.rejected, label=False),
            ]
        if kind == "ranking":
            return [u for pair in self.to_pairs() for u in pair.to_unpaired()]
        raise DataError(f"cannot make unpaired (labelled) examples from {kind} data", self.source or None)

    def to_sft(self) -> list[Record]:
        """Supervised examples: the preferred / best / desirable answer only."""
        kind = self.kind
        if kind == "sft":
            return [self]
        if kind == "preference":
            return [Record(prompt=self.prompt, completion=self.chosen, source=self.source, meta=self.meta)]
        if kind == "ranking":
            assert self.responses is not None and self.ranks is not None
            best = min(range(len(self.ranks)), key=lambda i: self.ranks[i])  # type: ignore[index]
            return [
                Record(
                    prompt=self.prompt, completion=self.responses[best], source=self.source, meta=self.meta
                )
            ]
        if kind == "unpaired":
            if not self.label:
                return []
            return [
                Record(prompt=self.prompt, completion=self.completion, source=self.source, meta=self.meta)
            ]
        raise DataError("prompt-only data has no answers to train on", self.source or None)

    def to_prompt(self) -> Record:
        """The prompt alone; an SFT or unpaired answer stays as the ``reference`` column (text), which
        reward functions and verifiers read (`alignkit.rewards.functions.record_columns`)."""
        meta = self.meta
        if self.completion is not None and "reference" not in meta:
            said = [m.content for m in self.completion if m.role == "assistant"] or [
                m.content for m in self.completion
            ]
            meta = {**meta, "reference": "\n\n".join(said)}
        return Record(prompt=self.prompt, source=self.source, meta=meta)

    def as_kind(self, kind: str) -> list[Record]:
        """Convert to ``kind`` (one of `KINDS`); raises `DataError` when impossible."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        if kind == self.kind:
            return [self]
        if kind == "preference":
            return self.to_pairs()
        if kind == "ranking":
            return [self.to_ranking()]
        if kind == "unpaired":
            return self.to_unpaired()
        if kind == "sft":
            return self.to_sft()
        return [self.to_prompt()]

    # ----------------------------------------------------------------- output
    def to_dict(self) -> dict[str, Any]:
        """TRL's conversational format (which `alignkit.data.load` reads back).

        ``prompt`` is a list of messages; answers are lists of messages. A
        ranking is written as ``responses`` + ``ranks``.
        """

        def conv(c: Conversation) -> list[dict[str, str]]:
            return [m.to_dict() for m in c]

        out: dict[str, Any] = {"prompt": conv(self.prompt)}
        kind = self.kind
        if kind == "preference":
            out["chosen"] = conv(self.chosen)  # type: ignore[arg-type]
            out["rejected"] = conv(self.rejected)  # type: ignore[arg-type]
            if self.margin is not None:
                out["margin"] = self.margin
        elif kind == "ranking":
            out["responses"] = [conv(r) for r in self.responses]  # type: ignore[union-attr]
            out["ranks"] = list(self.ranks)  # type: ignore[arg-type]
        elif kind in ("unpaired", "sft"):
            out["completion"] = conv(self.completion)  # type: ignore[arg-type]
            if kind == "unpaired":
                out["label"] = self.label
        return out
