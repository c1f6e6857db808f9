"""Everything a TRL-backed trainer needs before training: processes, precision, data, policy, reference.

- `quiet_libraries`: datasets/transformers/TRL stay silent; alignkit prints its own progress;
- `start_processes` / `Processes`: where this process stands under `accelerate launch`;
- `open_run`: the run dir, created (or reopened with ``--resume``) on the main process;
- `training_precision`: the run's `Precision` on this machine;
- `prepare`: all of it, in order, before the run dir is opened (a `Setup`): data (`trl.data`) before the
  model (`trl.policy`), so that a bad file fails before a model is loaded.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alignkit import console
from alignkit.config import TrainConfig
from alignkit.data.records import Record
from alignkit.errors import ConfigError, DataError
from alignkit.models.device import Precision, resolve_precision
from alignkit.runs import Run
from alignkit.trainers.trl.data import DataStats, fit_records, load_train_eval
from alignkit.trainers.trl.policy import Policy, load_policy, load_reference


def quiet_libraries() -> None:
    """Silence progress bars and info logs of datasets/transformers/TRL; alignkit prints its own."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    for name in ("trl", "accelerate", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings(
        "ignore", category=UserWarning, module=r"(trl|transformers|peft|accelerate|torch)\..*"
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass
class Processes:
    """Where this process stands under `accelerate launch` (one process without it)."""

    rank: int
    world: int
    state: Any  # accelerate.PartialState

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            self.state.wait_for_everyone()


def start_processes() -> Processes:
    """Join the process group `accelerate launch` set up (a no-op for a plain run)."""
    from accelerate import PartialState

    from alignkit.trainers.processes import fresh_accelerate_state

    fresh_accelerate_state()
    state = PartialState(cpu=device_type() == "cpu")  # cpu: gloo process group under torchrun on CPUs
    procs = Processes(state.process_index, state.num_processes, state)
    if not procs.main:  # one voice: the main process prints; warnings still show
        console.set_quiet(True)
    return procs


def open_run(command: str, cfg: TrainConfig, procs: Processes) -> Run:
    """Create (or reopen with ``--resume``) the run dir on the main process; the others share its path."""
    from accelerate.utils import broadcast_object_list

    holder: list[Any] = [None]
    failure: Exception | None = None
    if procs.main:
        try:
            holder[0] = str(Run.create(command, cfg.output, cfg, resume=cfg.resume).path)
        except Exception as error:  # tell the other processes instead of leaving them waiting
            failure = error
    if procs.world > 1:
        broadcast_object_list(holder, from_process=0)
    if failure is not None:
        raise failure
    if holder[0] is None:
        raise ConfigError("the main process could not open the run directory (see its error)")
    return Run(Path(holder[0]))


def device_type() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def training_precision(cfg: TrainConfig) -> Precision:
    """The run's `Precision` on this machine's device type (``--dtype fp16`` needs a GPU).

    LoRA + bf16: the frozen base is stored in bf16 (half the memory, no per-step weight casts); PEFT keeps
    the adapter in fp32 and autocast runs the matmuls in bf16 (TRL's ``bf16=True``). Full fine-tuning +
    bf16: fp32 master weights under autocast (AdamW steps of ~lr*w vanish in bf16's 8-bit mantissa).
    """
    precision = resolve_precision(cfg.dtype, cfg.lora, device_type())
    if precision.fp16 and device_type() == "cpu":
        raise ConfigError("--dtype fp16 needs a GPU; on a CPU use bf16 (if supported) or fp32")
    return precision


@dataclass
class Setup:
    """Everything a TRL trainer needs before the run dir is opened (see `prepare`)."""

    procs: Processes
    precision: Precision
    policy: Policy
    train: list[Record]
    eval: list[Record]
    stats: DataStats
    ref_model: Any  # a separate frozen reference, or None (LoRA: adapter disabled; precompute: none kept)
    reference: str  # what the reference is, for the log and the report


def prepare(cfg: TrainConfig, kind: str, needs_reference: bool, title: str) -> Setup:
    """Processes, precision, data (loaded, fitted to --max-length), policy and reference, in that order.

    Quiets the libraries and prints ``title`` first. Data comes before the model so that a bad file fails
    before a model is loaded.
    """
    from alignkit.models import lora

    quiet_libraries()
    console.rule(title)
    if not cfg.data:
        raise ConfigError(
            "--data is required: a data file (.jsonl .json .csv .parquet), a `datasets` folder or a hub name"
        )
    procs = start_processes()
    # a read-only, unwritable or full --output fails now, before the model loads
    if procs.main and cfg.output:
        Run(Path(cfg.output)).check_writable()
    precision = training_precision(cfg)
    train_records, eval_records, stats = load_train_eval(cfg, kind)
    policy = load_policy(cfg, precision)
    train_records = fit_records(policy.tokenizer, train_records, cfg.max_length, stats)
    eval_records = fit_records(policy.tokenizer, eval_records, cfg.max_length, stats)
    if procs.main:
        warn_data(stats)
    if not train_records:
        raise DataError(f"no training examples left after fitting --max-length {cfg.max_length}", cfg.data)
    ref_model, reference = None, ""
    if needs_reference:
        ref_name = getattr(cfg, "ref_model", None)
        ref_model = load_reference(cfg, ref_name, precision, policy.tokenizer)
        if ref_model is not None:
            reference = f"--ref-model {ref_name} (frozen)"
        elif cfg.lora:
            reference = policy.note.split("reference: ")[-1]
        elif getattr(cfg, "precompute_ref", False):
            reference = f"{cfg.model} before training (log-probs precomputed, no copy kept)"
        else:
            ref_model = lora.frozen_copy(policy.model)
            reference = f"a frozen copy of {cfg.model}"
        console.info(f"policy: {policy.note.split(';')[0]}; reference: {reference}")
    else:
        console.info(f"policy: {policy.note.split(';')[0]}")
    console.info(
        f"data: {len(train_records)} train, {len(eval_records)} eval ({kind}); precision {precision.name}"
    )
    from alignkit.models.cpu_attention import enable_for_training
    from alignkit.models.device import default_device

    if enable_for_training(
        [policy.model, ref_model],
        getattr(cfg, "cpu_attention", False),
        torch.bfloat16 if precision.bf16 else None,
        default_device(),
    ):
        console.info("bf16 attention as batched matmuls on the CPU (--no-cpu-attention for SDPA)")
    return Setup(procs, precision, policy, train_records, eval_records, stats, ref_model, reference)


def warn_data(stats: DataStats) -> None:
    """Say what happened to the data: identical pairs skipped, prompts cut, over-long answers dropped."""
    if stats.identical_skipped:
        shown = ", ".join(stats.identical_skipped[:3])
        console.warn(
            f"skipped {len(stats.identical_skipped)} pair(s) whose chosen and rejected answers are identical "
            f"(no preference signal): {shown}{', ...' if len(stats.identical_skipped) > 3 else ''}"
        )
    if stats.invalid_skipped:
        console.warn(f"skipped {len(stats.invalid_skipped)} invalid record(s) (--skip-invalid)")
    if stats.prompts_cut:
        console.info(f"{stats.prompts_cut} prompt(s) lost their oldest turns/tokens to fit --max-length")
    if stats.dropped_long:
        shown = ", ".join(stats.dropped_long[:3])
        console.warn(
            f"dropped {len(stats.dropped_long)} record(s) whose answer alone does not fit --max-length "
            f"(answers are never cut): {shown}{', ...' if len(stats.dropped_long) > 3 else ''}; "
            "raise --max-length to keep them"
        )
