"""Records → token ids → padded batches for reward models (training, evaluation and scoring).

A *comparison* is the unit a reward model learns from: a preference pair (two answers)
or a K-way ranking (K answers with ranks). Each answer is tokenised once as
prompt + answer through the tokenizer's chat template, so a ranking costs K forward
passes, not 2 * C(K, 2) (InstructGPT, Ouyang et al. 2022, sec. 3.5).

Shared prompt (``share_prompt``, on by default in training and evaluation): the K answers
of a comparison share their prompt, so one packed row holds the prompt once and the K
answers after it, each answer attending to the prompt and to itself only (a block
attention mask) at the positions it would have on its own. The scores equal K separate
passes (tested), for ~35% fewer tokens on multi-turn data such as HH-RLHF, where the
prompt is most of a sequence.

Length rule: a sequence longer than ``max_length`` loses tokens from the *left of the
prompt* (the answer stays whole; the newest turns of the prompt are kept). An answer
that alone is longer than ``max_length`` cannot be scored honestly: its comparison is
dropped and counted, never cut silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from alignkit import console
from alignkit.data.records import Conversation, Message, Record, text_of
from alignkit.errors import DataError
from alignkit.losses.reward import batch_ranking_pairs
from alignkit.models.shared_prompt import SharedPrompt, common_prefix, pack
from alignkit.rewards.encoding import pad_rows

TRAINABLE_KINDS = ("preference", "ranking")
SHOW_SOURCES = 5  # sources listed in a warning


# ---------------------------------------------------------------- tokenising
@dataclass(frozen=True)
class EncodedAnswer:
    """One prompt + answer sequence, ready for the model."""

    input_ids: list[int]  # (T,) prompt tokens (maybe cut on the left) then the answer's
    answer_tokens: int  # tokens of the answer part (the tail of input_ids)
    prompt_cut: int  # prompt tokens removed from the left to fit max_length


def _as_conversation(value: Conversation | str, role: str) -> Conversation:
    return (Message(role, value),) if isinstance(value, str) else tuple(value)


def render(tokenizer, prompt: Conversation, answer: Conversation) -> tuple[str, int]:
    """Text of prompt + answer through the chat template, and the character where the answer starts.

    The answer starts after the prompt rendered with the generation prompt (e.g.
    ``<|im_start|>assistant\\n``) when the full text begins with it; otherwise at
    the longest common prefix of the two renderings. Without a chat template the
    text is the plain contents, the prompt and answer separated by a blank line,
    ending with EOS.
    """
    if not getattr(tokenizer, "chat_template", None):
        head = text_of(prompt) + "\n\n"
        return head + text_of(answer) + (tokenizer.eos_token or ""), len(head)
    messages = [m.to_dict() for m in prompt]
    full = tokenizer.apply_chat_template(messages + [m.to_dict() for m in answer], tokenize=False)
    for generation_prompt in (True, False):
        head = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
        if full.startswith(head):
            return full, len(head)
    common = 0
    for a, b in zip(full, head, strict=False):
        if a != b:
            break
        common += 1
    return full, common


def encode_answers(
    tokenizer, items: Sequence[tuple[Conversation | str, Conversation | str]], max_length: int
) -> list[EncodedAnswer | None]:
    """Tokenise (prompt, answer) pairs; None for an answer longer than ``max_length`` on its own.

    Strings are read as one user message (prompt) / one assistant message (answer).
    Tokens whose characters start inside the answer belong to the answer, so a token
    that straddles the boundary is never cut away with the prompt.
    """
    texts, starts = [], []
    for prompt, answer in items:
        text, start = render(
            tokenizer, _as_conversation(prompt, "user"), _as_conversation(answer, "assistant")
        )
        texts.append(text)
        starts.append(start)
    if not texts:
        return []
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    out: list[EncodedAnswer | None] = []
    for ids, offsets, start in zip(enc["input_ids"], enc["offset_mapping"], starts, strict=True):
        prompt_len = sum(1 for _, end in offsets if end <= start)  # tokens wholly inside the prompt
        answer_len = len(ids) - prompt_len
        if answer_len > max_length:
            out.append(None)
            continue
        cut = max(0, len(ids) - max_length)
        out.append(EncodedAnswer(list(ids[cut:]), answer_len, cut))
    return out


# ------------------------------------------------------------- comparisons
@dataclass
class Comparison:
    """A pair or ranking, tokenised: the unit of training (one comparison each)."""

    sequences: list[list[int]]  # K token-id lists, one per answer
    ranks: tuple[int, ...]  # (K,) 0 = best, equal = tie
    answer_tokens: list[int]  # (K,) answer part of each sequence
    margin: float | None = None  # preference pairs only
    source: str = ""

    @property
    def length(self) -> int:
        """Longest sequence: what the batch is padded to."""
        return max(len(s) for s in self.sequences)

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.sequences)

    @property
    def shared_prefix(self) -> int:
        """Leading tokens every sequence has in common (its prompt), leaving each at least one of its own."""
        return common_prefix(self.sequences)

    @property
    def packed_length(self) -> int:
        """Row length with the prompt shared: the prefix once, then every answer's own tokens."""
        return self.tokens - (len(self.sequences) - 1) * self.shared_prefix


@dataclass
class PreparedData:
    comparisons: list[Comparison]
    dropped_overlength: list[str] = field(default_factory=list)  # sources of comparisons dropped
    truncated_prompts: int = 0  # sequences whose prompt was cut on the left
    duplicates: list[str] = field(default_factory=list)  # sources repeating an earlier comparison

    def summary(self) -> dict[str, int]:
        return {
            "comparisons": len(self.comparisons),
            "dropped_overlength": len(self.dropped_overlength),
            "truncated_prompts": self.truncated_prompts,
            "duplicates": len(self.duplicates),
        }


def answers_and_ranks(record: Record) -> tuple[list[Conversation], tuple[int, ...]]:
    """A preference pair is a ranking of two: (chosen, rejected) with ranks (0, 1)."""
    if record.kind == "preference":
        return [record.chosen, record.rejected], (0, 1)  # type: ignore[list-item]
    if record.kind == "ranking":
        return list(record.responses), tuple(record.ranks)  # type: ignore[arg-type]
    raise DataError(
        f"a reward model trains on preference pairs or rankings, but this record is {record.kind} data",
        record.source or None,
    )


def prepare_comparisons(records: Sequence[Record], tokenizer, max_length: int) -> PreparedData:
    """Tokenise every answer of every record once; drop (and count) those with an over-long answer.

    Exact repeats (same prompt, answers and ranks) are kept, since a repeated judgement
    may be real, but listed in ``duplicates`` so the caller can warn: they weigh double
    and leak between a train and an eval split.
    """
    items, owners = [], []
    for index, record in enumerate(records):
        answers, _ = answers_and_ranks(record)
        for answer in answers:
            items.append((record.prompt, answer))
            owners.append(index)
    encoded = encode_answers(tokenizer, items, max_length)
    per_record: list[list[EncodedAnswer | None]] = [[] for _ in records]
    for owner, enc in zip(owners, encoded, strict=True):
        per_record[owner].append(enc)

    data = PreparedData([])
    seen: set[tuple] = set()
    for record, encs in zip(records, per_record, strict=True):
        answers, ranks = answers_and_ranks(record)
        key = (record.prompt, tuple(answers), ranks)
        if key in seen:
            data.duplicates.append(record.source)
        seen.add(key)
        if any(e is None for e in encs):
            data.dropped_overlength.append(record.source)
            continue
        data.truncated_prompts += sum(1 for e in encs if e.prompt_cut > 0)  # type: ignore[union-attr]
        data.comparisons.append(
            Comparison(
                sequences=[e.input_ids for e in encs],  # type: ignore[union-attr]
                ranks=ranks,
                answer_tokens=[e.answer_tokens for e in encs],  # type: ignore[union-attr]
                margin=record.margin,
                source=record.source,
            )
        )
    return data


# ------------------------------------------------------------------ batches
def pack_shared(comparisons: Sequence[Comparison], pad_id: int) -> tuple[Tensor, Tensor, SharedPrompt]:
    """One right-padded row per comparison: its shared prefix, then each answer's own tokens
    (`models.shared_prompt.pack`). Answers are scored at ``layout.last``, in comparison order."""
    return pack([c.sequences for c in comparisons], pad_id)


@dataclass
class RewardBatch:
    """Every answer of a micro-batch of comparisons: one right-padded row per answer, or per comparison
    when ``shared`` is set (the prompt forwarded once, see `pack_shared`)."""

    input_ids: Tensor  # (R, T) R = N answers (group after group), or one row per comparison when shared
    attention_mask: Tensor  # (R, T) 1 on real tokens
    better_idx: Tensor  # (P,) index into the (N,) scores of the preferred answer of each pair
    worse_idx: Tensor  # (P,)
    pair_weights: Tensor  # (P,) 1 / (pairs of its comparison): each comparison weighs one
    margin: Tensor | None  # (P,) required gap per pair, or None when no pair has one
    comparisons: int  # comparisons with at least one pair (the loss's unit)
    real_tokens: int  # tokens of every prompt + answer sequence, the prompt counted once per answer
    shared: SharedPrompt | None = None  # the packed layout, when answers share their prompt's forward
    computed_tokens: int = 0  # non-pad tokens actually forwarded (< real_tokens when shared)

    @property
    def padding_efficiency(self) -> float:
        return self.computed_tokens / max(1, self.input_ids.numel())

    def to(self, device: torch.device | str) -> RewardBatch:
        """The same batch with every tensor on ``device`` (the model's; a no-op copy-free on the CPU)."""
        move = lambda t: t.to(device) if t is not None else None  # noqa: E731
        return replace(
            self,
            input_ids=move(self.input_ids),
            attention_mask=move(self.attention_mask),
            better_idx=move(self.better_idx),
            worse_idx=move(self.worse_idx),
            pair_weights=move(self.pair_weights),
            margin=move(self.margin),
            shared=self.shared.to(device) if self.shared is not None else None,
        )


def pair_count(ranks: Sequence[int]) -> int:
    """Pairs of different rank in one ranking (C(K, 2) without ties)."""
    return sum(1 for i in range(len(ranks)) for j in range(i + 1, len(ranks)) if ranks[i] != ranks[j])


def collate(comparisons: Sequence[Comparison], pad_id: int, share_prompt: bool = False) -> RewardBatch:
    """The micro-batch of ``comparisons``; ``share_prompt`` packs each into one row (`pack_shared`)."""
    shared = None
    if share_prompt:
        input_ids, attention_mask, shared = pack_shared(comparisons, pad_id)
    else:
        input_ids, attention_mask = pad_rows([s for c in comparisons for s in c.sequences], pad_id)
    better, worse, weights = batch_ranking_pairs([c.ranks for c in comparisons])
    margin = None
    if any(c.margin is not None for c in comparisons):
        # A pair gives exactly one (better, worse) pair; rankings carry no margin (0).
        per_pair = [float(c.margin or 0.0) for c in comparisons for _ in range(pair_count(c.ranks))]
        margin = torch.tensor(per_pair, dtype=torch.float32)
    with_pairs = sum(1 for c in comparisons if len(set(c.ranks)) > 1)
    return RewardBatch(
        input_ids,
        attention_mask,
        better,
        worse,
        weights,
        margin,
        with_pairs,
        real_tokens=sum(c.tokens for c in comparisons),
        shared=shared,
        computed_tokens=int(attention_mask.sum()),
    )


def check_trainable_kind(kind: str, path: str) -> None:
    """A reward model trains on preferences or rankings: any other kind of data is the user's error."""
    if kind not in TRAINABLE_KINDS:
        raise DataError(
            f"a reward model trains on preference pairs or rankings, but this data holds {kind} records; "
            "see `alignkit data inspect` for what it holds",
            path,
        )


def report_prepared(name: str, data: PreparedData, max_length: int) -> None:
    """Warn about what tokenising changed: dropped over-long answers, cut prompts, duplicates."""
    if data.dropped_overlength:
        console.warn(
            f"{name}: dropped {len(data.dropped_overlength)} comparison(s) with an answer longer than "
            f"--max-length {max_length} on its own (answers are never cut): "
            + ", ".join(data.dropped_overlength[:SHOW_SOURCES])
        )
    if data.truncated_prompts:
        console.info(
            f"{name}: {data.truncated_prompts} sequence(s) had their prompt cut on the left to fit {max_length} tokens"
        )
    if data.duplicates:
        console.warn(
            f"{name}: {len(data.duplicates)} duplicated comparison(s) (they weigh double): "
            + ", ".join(data.duplicates[:SHOW_SOURCES])
        )
    if not data.comparisons:
        raise DataError(f"{name}: no comparison left after dropping over-long answers; raise --max-length")
