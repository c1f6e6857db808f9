"""Best-of-n: score N sampled answers per prompt with reward models, keep the best; export the results.

Notation: P prompts, N candidates each, B = P x N rows, prompt-major (row ``i * N + j`` is candidate j of
prompt i, as `GenerationBatch` orders them).

- **Rerank key.** The `RewardSet`'s combined score (weighted sum, or min). With a safety gate the order is
  lexicographic: every candidate whose gate score is at least the threshold beats every candidate below it,
  and candidates on the same side are ordered by the combined score (the `RewardSet` gate rule: the weighted
  sum of the other models above the threshold, the gate model's own score below it, Llama 2 sec. 3.2.2). So
  when every candidate fails, the least unsafe one wins. Ties go to the lower index.
- **KL of best-of-n from the sampling policy** (Stiennon et al. 2020, arXiv:2009.01325, appendix; Gao et
  al. 2022, arXiv:2210.10760, sec. 2): ``KL_bon = log N - (N - 1) / N``. Beirami et al. 2024
  (arXiv:2401.01879, thm. 3.1) show it is an upper bound, tight when the N candidates are almost surely
  distinct (long answers); with repeated answers the true KL is smaller. Computed by
  `alignkit.losses.kl.best_of_n_kl_bound`.
- **Exports** (TRL conversational JSONL, read back by `alignkit.data.load.load_records`): best versus worst
  as a preference pair (rejection sampling / iterative DPO; skipped when every candidate ties on the rerank
  key, then best and worst are one candidate, or when the two texts are equal), and the best as an SFT
  example (best-of-n distillation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from alignkit.data.records import Conversation, Message, Record
from alignkit.rewards.encoding import pad_rows, template_suffix_ids
from alignkit.rewards.ensemble import RewardSet, TokenBatch
from alignkit.sampling.results import Generation


@dataclass
class Scores:
    """Reward-model scores of B = P x N candidates, prompt-major."""

    combined: Tensor  # (B,) float32, the RewardSet's combined score
    per_model: dict[str, Tensor]  # name -> (B,) float32, raw (unweighted) score of each reward model
    passed: Tensor | None  # (B,) bool, True when the gate score >= its threshold; None without a gate

    def grid(self, n: int) -> tuple[Tensor, Tensor | None]:
        """combined (P, N) and passed (P, N) (or None)."""
        passed = self.passed.view(-1, n) if self.passed is not None else None
        return self.combined.view(-1, n), passed


def gate_passed(rewards: RewardSet, per_model: dict[str, Tensor]) -> Tensor | None:
    """(B,) bool: the gate model's raw score is at least its threshold; None when the set has no gate."""
    if rewards.combine != "gate" or rewards.gate is None:
        return None
    name, threshold = rewards.gate
    return per_model[name] >= threshold


def _lexicographic(combined: Tensor, passed: Tensor | None, best: bool) -> Tensor:
    """Index (P,) of the best (or worst) of (P, N) candidates by (passed, combined). A NaN score (a reward
    function's None: no score) is never chosen as best or as worst while a scored candidate is left."""
    combined = combined.nan_to_num(nan=float("-inf") if best else float("inf"), posinf=1e30, neginf=-1e30)
    if passed is None:
        return combined.argmax(-1) if best else combined.argmin(-1)
    # Rows where some candidate passes choose among those (best) / rows where some fails among those (worst).
    side = passed if best else ~passed
    restrict = side.any(-1, keepdim=True) & ~side  # (P, N) True where a candidate is out of the running
    fill = float("-inf") if best else float("inf")
    masked = combined.masked_fill(restrict, fill)
    return masked.argmax(-1) if best else masked.argmin(-1)


def best_index(combined: Tensor, passed: Tensor | None = None) -> Tensor:
    """Chosen candidate (P,) of combined scores (P, N): argmax, passing candidates first when gated."""
    return _lexicographic(combined, passed, best=True)


def worst_index(combined: Tensor, passed: Tensor | None = None) -> Tensor:
    """Rejected candidate (P,) for preference pairs: argmin, failing candidates first when gated."""
    return _lexicographic(combined, passed, best=False)


@torch.no_grad()
def score_generations(
    rewards: RewardSet,
    tokenizer,
    prompts: Sequence[Conversation],
    generations: Sequence[Generation],
    batch_size: int = 16,
    columns: dict[str, list] | None = None,
) -> Scores:
    """Score every generation with every reward model (B rows; ``prompts`` (P,) indexed by prompt_index).

    Members on the policy's tokenizer score the sampled ids as they are: prompt + response (+ the chat
    template's suffix after a finished answer's EOS, so the last token is the one `alignkit rm` scored);
    members on another tokenizer get the text, re-tokenised (`RewardSet.score`). The candidates of one
    prompt go in together, as a group: a reward model that shares prompts (`RewardModel.score_groups`)
    forwards the prompt once for all of them. Groups go through in length order, about ``batch_size``
    rows at a time (a group is never split between calls), so each forward pass pads little.
    ``columns``: keyword lists for reward functions, one value per generation (in ``generations``' order).
    """
    suffix = template_suffix_ids(tokenizer)
    rows = [list(g.prompt_ids) + list(g.response_ids) + (suffix if g.finished else []) for g in generations]
    by_prompt: dict[int, list[int]] = {}
    for i, generation in enumerate(generations):
        by_prompt.setdefault(generation.prompt_index, []).append(i)
    groups = sorted(by_prompt.values(), key=lambda index: max(len(rows[i]) for i in index))
    chunks: list[list[int]] = [[]]
    for index in groups:
        if chunks[-1] and len(chunks[-1]) + len(index) > batch_size:
            chunks.append([])
        chunks[-1].extend(index)
    combined = torch.zeros(len(rows))
    per_model = {name: torch.zeros(len(rows)) for name in rewards.names}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for chunk in chunks if rows else []:
        chunk.sort(key=lambda i: len(rows[i]))  # members that do not share prompts batch by length
        ids, mask = pad_rows([rows[i] for i in chunk], pad)
        scores, per = rewards.score(
            [prompts[generations[i].prompt_index] for i in chunk],
            [generations[i].text for i in chunk],
            TokenBatch(ids, mask.bool(), tokenizer),
            [generations[i].finished for i in chunk],
            groups=[generations[i].prompt_index for i in chunk],
            columns={k: [v[i] for i in chunk] for k, v in columns.items()} if columns else None,
        )
        combined[chunk] = scores.float()
        for name, values in per.items():
            per_model[name][chunk] = values.float()
    return Scores(combined, per_model, gate_passed(rewards, per_model))


# ------------------------------------------------------------------------------------------------- exports


def _answer(text: str) -> Conversation:
    return (Message("assistant", text),)


def preference_pair(prompt: Conversation, best: Generation, worst: Generation) -> Record | None:
    """Best versus worst as a preference `Record`; None when the two texts are the same (no signal)."""
    if best.text == worst.text:
        return None
    return Record(prompt, chosen=_answer(best.text), rejected=_answer(worst.text))


def sft_example(prompt: Conversation, best: Generation) -> Record:
    """The winner as an SFT `Record` (prompt + completion)."""
    return Record(prompt, completion=_answer(best.text))


__all__ = [
    "Scores",
    "best_index",
    "gate_passed",
    "preference_pair",
    "score_generations",
    "sft_example",
    "worst_index",
]
