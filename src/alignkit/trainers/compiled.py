"""`--compile` for the trainers: the decoder layers compiled for the training steps of a run, eager after.

`alignkit.models.compile.compile_layers` does the compiling; this module adds what a command needs around
it: a warning (and eager training) where no compiler is installed, a one-line `TrainingError` naming
``--no-compile`` when the compiler fails, and the eager forwards put back when the run ends. Nothing of
torch's compiler is imported when the run does not compile.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from alignkit import console
from alignkit.errors import TrainingError

__all__ = ["compiled_training"]


@contextmanager
def compiled_training(model: nn.Module, enabled: bool, device: torch.device, command: str) -> Iterator[None]:
    """Inside, ``model``'s decoder layers run compiled while gradients are on (when ``enabled`` and possible).

    ``command`` names the run in its messages (``rm``, ``grpo``, ...).
    """
    if not enabled:
        yield
        return
    from alignkit.models.compile import compile_layers, compile_unavailable

    reason = compile_unavailable(device)
    undo = None
    if reason is not None:
        console.warn(
            f"{command}: not compiling ({reason}); training runs eager. --no-compile hides this warning"
        )
    else:
        undo = compile_layers(model)
        if undo is None:
            console.warn(f"{command}: not compiling: the model has no transformers decoder layers to compile")
    if undo is None:
        yield
        return
    from torch._dynamo.exc import TorchDynamoException

    console.info(
        f"{command}: decoder layers compiled (torch.compile); the first steps compile them (--no-compile to skip)"
    )
    try:
        yield
    except TorchDynamoException as error:
        first_line = (str(error).splitlines() or [""])[0][:200]
        raise TrainingError(
            f"torch.compile failed ({type(error).__name__}: {first_line}); "
            "rerun with --no-compile (add --resume to continue from the last checkpoint)"
        ) from error
    finally:
        undo()
