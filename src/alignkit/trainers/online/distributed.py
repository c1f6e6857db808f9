"""Data parallelism for PPO through accelerate: who am I, and the three collectives PPO needs.

Under ``accelerate launch`` every process samples its own shard of the prompts, runs
its own forward passes, and then (a) averages gradients before each optimizer step,
(b) averages the scalars that must agree everywhere (the KL that drives the adaptive
controller, the approx-KL that stops an update early), and (c) gathers the scores
that update the reward normaliser, so each process holds identical state. Outside
``accelerate launch`` (one process) all three are identities.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


class Dist:
    """Process rank/world from accelerate's `PartialState` and the collectives PPO uses."""

    def __init__(self) -> None:
        from accelerate import PartialState

        from alignkit.models.device import default_device
        from alignkit.trainers.processes import fresh_accelerate_state

        cpu = default_device().type == "cpu"
        fresh_accelerate_state()
        self.state = PartialState(cpu=cpu)  # cpu: a gloo group under torchrun
        self.world = int(self.state.num_processes)
        self.rank = int(self.state.process_index)
        self.device = self.state.device  # where collectives run: NCCL reduces CUDA tensors only

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mean(self, value: float | Tensor) -> float:
        """The mean of a scalar over processes."""
        if self.world == 1:
            return float(value)
        from accelerate.utils import reduce

        return float(
            reduce(torch.tensor(float(value), dtype=torch.float64, device=self.device), reduction="mean")
        )

    def gather(self, tensor: Tensor) -> Tensor:
        """Concatenate a (B, ...) tensor from every process (in rank order), on the collectives' device."""
        if self.world == 1:
            return tensor
        from accelerate.utils import gather

        return gather(tensor.to(self.device).contiguous())

    def average_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """All-reduce the gradients of ``params`` to their mean, in one flat buffer (one collective)."""
        if self.world == 1:
            return
        from accelerate.utils import reduce

        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        flat = reduce(flat, reduction="mean")
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g).to(g.dtype))
            offset += n

    def check_same(self, params: Iterable[nn.Parameter], what: str) -> None:
        """Raise `TrainingError` when the processes' copies of ``params`` differ (a broken all-reduce)."""
        if self.world == 1:
            return
        checksum = torch.stack([p.detach().double().sum() for p in params]).sum().reshape(1)
        sums = self.gather(checksum)
        if not torch.allclose(sums, sums[0].expand_as(sums), rtol=1e-9, atol=1e-9):
            from alignkit.errors import TrainingError

            raise TrainingError(
                f"the processes' {what} differ ({sums.tolist()}): data-parallel training went out of step"
            )

    def barrier(self) -> None:
        if self.world == 1:
            return
        if self.device.type == "cpu":
            # accelerate's barrier passes device_ids=[local rank], and torch then touches cuda:<rank> when CUDA is
            # available: CPU processes on a one-GPU machine (ALIGNKIT_DEVICE=cpu) would fail on rank 1.
            torch.distributed.barrier()
        else:
            self.state.wait_for_everyone()
