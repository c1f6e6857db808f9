"""Process state that alignkit's trainers (rm, ppo, the TRL-backed ones) share between commands.

- `fresh_accelerate_state`: each command in a process starts from a clean accelerate state;
- `end_process_group`: under a launcher, the process group is destroyed at exit.
"""

from __future__ import annotations

import atexit
import os

__all__ = ["end_process_group", "fresh_accelerate_state"]


def fresh_accelerate_state() -> None:
    """Forget accelerate's process-wide state that an earlier command in this process left behind.

    accelerate keeps one state per process (device, mixed precision, gradient accumulation). A
    second command in the same process (the demo, a notebook, the tests) would inherit it: a CPU run
    after a GPU one fails (``AcceleratorState has already been initialized``), and an fp32 run after
    a bf16 TRL run silently trains under the old bf16 autocast. A single process therefore starts
    each command from a clean state. Under ``accelerate launch`` / ``torchrun`` (``WORLD_SIZE`` > 1)
    the state belongs to the launcher and is never touched; the process group the command is about to
    join is then torn down at exit instead (`end_process_group`).
    """
    from accelerate.state import AcceleratorState, GradientState

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        atexit.unregister(end_process_group)  # once, however many commands run
        atexit.register(end_process_group)
        return
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def end_process_group() -> None:
    """Destroy the default process group, if one is up (run at exit under a launcher).

    A process that leaves its gloo group to interpreter shutdown can die with SIGABRT ("terminate called
    without an active exception"): gloo's worker threads still hold work whose tensors reference Python
    objects that are being torn down (pytorch/pytorch#190489; the mechanism is described in
    pytorch/pytorch#179291). We saw it once in our two-process DPO test. Destroying the group at exit,
    while the interpreter is still whole, avoids it.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
