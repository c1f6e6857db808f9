"""What the sampler returns: one `Generation` per (prompt, sample), and right-padded tensors for training.

Notation: B = prompts x n samples (prompt-major: row ``i * n + j`` is sample j of prompt i), P = longest
prompt, T = longest response.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch


@dataclass
class Generation:
    """One sampled response."""

    prompt_index: int  # position of the prompt in the list given to `generate`
    sample_index: int  # 0 .. n-1
    prompt_ids: list[int]  # the prompt as the model saw it (after any left truncation)
    response_ids: list[int]  # sampled tokens up to and including the first stop token
    text: str  # response_ids decoded without special tokens
    finished: bool  # True: ended with a stop token; False: cut at max_new_tokens
    token_logps: list[float] | None = None  # log pi_T(token) of each response token (return_logprobs)
    prompt_truncated: int = 0  # tokens cut from the prompt's left (0 = intact)


@dataclass
class PackedGenerations:
    """Generations as tensors; masks are True on real tokens.

    The sequence ``cat(prompt_ids, response_ids)`` is prompt + response with padding only at both ends, so
    one forward over it (positions ``cumsum(mask) - 1``) scores every response token; see
    `alignkit.sampling.logprobs.response_token_logps`.
    """

    prompt_ids: torch.Tensor  # (B, P) int64, left padded
    prompt_mask: torch.Tensor  # (B, P) bool, True on real prompt tokens
    response_ids: torch.Tensor  # (B, T) int64, right padded
    response_mask: torch.Tensor  # (B, T) bool, True on real response tokens (stop token included)
    token_logps: torch.Tensor | None  # (B, T) fp32, 0 on padding; None unless return_logprobs
    finished: torch.Tensor  # (B,) bool, True when the response ended with a stop token
    prompt_index: torch.Tensor  # (B,) int64, which prompt each row answers

    @property
    def sequence_ids(self) -> torch.Tensor:
        """(B, P + T) prompt followed by response."""
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def sequence_mask(self) -> torch.Tensor:
        """(B, P + T) True on real tokens of prompt + response."""
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)


def pack(generations: list[Generation], pad_token_id: int) -> PackedGenerations:
    """Stack generations into `PackedGenerations` (prompts left padded, responses right padded)."""
    if not generations:
        raise ValueError("nothing to pack: no generations")
    rows = len(generations)
    prompt_len = max(len(g.prompt_ids) for g in generations)
    response_len = max(1, max(len(g.response_ids) for g in generations))
    prompt_ids = torch.full((rows, prompt_len), pad_token_id, dtype=torch.long)
    prompt_mask = torch.zeros(rows, prompt_len, dtype=torch.bool)
    response_ids = torch.full((rows, response_len), pad_token_id, dtype=torch.long)
    response_mask = torch.zeros(rows, response_len, dtype=torch.bool)
    with_logps = all(g.token_logps is not None for g in generations)
    token_logps = torch.zeros(rows, response_len) if with_logps else None
    for row, g in enumerate(generations):
        p, t = len(g.prompt_ids), len(g.response_ids)
        prompt_ids[row, prompt_len - p :] = torch.tensor(g.prompt_ids, dtype=torch.long)
        prompt_mask[row, prompt_len - p :] = True
        if t:
            response_ids[row, :t] = torch.tensor(g.response_ids, dtype=torch.long)
            response_mask[row, :t] = True
            if token_logps is not None:
                token_logps[row, :t] = torch.tensor(g.token_logps, dtype=torch.float32)
    return PackedGenerations(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        token_logps=token_logps,
        finished=torch.tensor([g.finished for g in generations], dtype=torch.bool),
        prompt_index=torch.tensor([g.prompt_index for g in generations], dtype=torch.long),
    )


@dataclass
class GenerationBatch:
    """All generations of one `generate` call, prompt-major: ``batch[i * n + j]`` is sample j of prompt i."""

    generations: list[Generation]
    n: int  # samples per prompt
    pad_token_id: int
    truncated_prompts: int = 0  # prompts that lost tokens on the left (see Generation.prompt_truncated)
    stats: dict[str, float] = field(default_factory=dict)  # timings and counts (see generate's docstring)

    def __len__(self) -> int:
        return len(self.generations)

    def __iter__(self) -> Iterator[Generation]:
        return iter(self.generations)

    def __getitem__(self, index: int) -> Generation:
        return self.generations[index]

    @property
    def texts(self) -> list[str]:
        return [g.text for g in self.generations]

    def by_prompt(self) -> list[list[Generation]]:
        """The n generations of each prompt, in prompt order."""
        return [self.generations[i : i + self.n] for i in range(0, len(self.generations), self.n)]

    def to_tensors(self) -> PackedGenerations:
        """Right-padded tensors ready for PPO (see `PackedGenerations`)."""
        return pack(self.generations, self.pad_token_id)
