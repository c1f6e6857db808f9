"""A TRL-backed run from configured trainer to written report: TRL's config and trainer, training, outputs.

- `training_args` / `eval_args`: our `TrainConfig` -> TRL's config (a `transformers.TrainingArguments`);
- `build_trainer`: TRL's trainer on the prepared policy and data, reporting through `RunCallback`;
- `train`: ``--resume`` -> ``trainer.train(resume_from_checkpoint=checkpoints/step-N)``;
- `save_outputs`: the adapter (loadable by plain ``PeftModel.from_pretrained``), ``--merge``;
- `conclude`: after training, the model saved and report.json written (`report.base_report` + the
  command's fields + `report.run_facts`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alignkit import console
from alignkit.config import TrainConfig
from alignkit.models.device import Precision
from alignkit.models.merge import merge_adapter_run
from alignkit.runs import CHECKPOINT_RE, Run
from alignkit.trainers.trl.callback import RunCallback
from alignkit.trainers.trl.data import to_dataset
from alignkit.trainers.trl.policy import Policy
from alignkit.trainers.trl.report import TrainResult, base_report, run_facts
from alignkit.trainers.trl.setup import Processes, Setup, device_type

TRAINER_DIR = "trainer"  # HF Trainer's scratch output_dir inside a run (model card, partial checkpoints)


def training_args(trl_config_cls: type, cfg: TrainConfig, run: Run, precision: Precision, **extra: Any):
    """TRL's config (a ``TrainingArguments``) from the common options; trainer-specific fields in ``extra``.

    Differences from TRL's defaults, on purpose: gradient checkpointing off unless asked (TRL turns it on;
    for a 135M model on a CPU it costs ~30% time for memory we do not need), cosine schedule with linear
    warm-up, logging/saving/eval cadence from our options, no tqdm (alignkit draws its own progress).
    """
    save = cfg.save_every > 0
    args = dict(
        output_dir=str(run.path / TRAINER_DIR),
        max_steps=cfg.max_steps,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a fraction of the steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        max_length=cfg.max_length,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=precision.bf16,
        fp16=precision.fp16,
        gradient_checkpointing=bool(getattr(cfg, "gradient_checkpointing", False)),
        per_device_eval_batch_size=getattr(cfg, "eval_batch_size", cfg.batch_size),
        logging_steps=cfg.log_every,
        logging_first_step=True,
        save_strategy="steps" if save else "no",
        save_steps=cfg.save_every if save else 500,
        save_total_limit=None,  # RunCallback keeps the newest `keep_checkpoints` step-N dirs
        # Batches of similar length waste little padding (the collators pad to the longest sequence).
        train_sampling_strategy="group_by_length" if getattr(cfg, "group_by_length", False) else "random",
        length_column_name="length",
        remove_unused_columns=False,  # keeps `length` for the sampler; TRL's collators read only their own keys
        report_to=[] if cfg.report_to == "none" else [cfg.report_to],
        disable_tqdm=True,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        use_cpu=device_type() == "cpu",  # transformers refuses bf16 autocast on a CPU unless told
        trust_remote_code=cfg.trust_remote_code,
    )
    args.update(extra)
    return trl_config_cls(**args)


def eval_args(cfg: TrainConfig, evaluate: bool) -> dict[str, Any]:
    """`training_args` extras for TRL's own held-out evaluation: every ``--eval-every`` steps when there is
    eval data (``evaluate``) and ``--eval-every`` > 0, else none during training."""
    every = evaluate and cfg.eval_every > 0
    return {"eval_strategy": "steps" if every else "no", "eval_steps": cfg.eval_every if every else None}


def drop_printer(trainer: Any) -> None:
    """Remove transformers' PrinterCallback/ProgressCallback: alignkit prints its own progress."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def build_trainer(
    trainer_cls: type, setup: Setup, args: Any, callback: RunCallback, kind: str, **extra: Any
) -> Any:
    """TRL's ``trainer_cls`` on the prepared policy and data (``kind`` as in `to_dataset`), reporting through
    ``callback``, without transformers' own printing; ``extra`` goes to the trainer (e.g. ``ref_model``)."""
    trainer = trainer_cls(
        model=setup.policy.model,
        args=args,
        train_dataset=to_dataset(setup.train, kind),
        eval_dataset=to_dataset(setup.eval, kind) if setup.eval else None,
        processing_class=setup.policy.tokenizer,
        peft_config=setup.policy.peft_config,
        callbacks=[callback],
        **extra,
    )
    drop_printer(trainer)
    from alignkit.models.lora import fuse_lora_layers

    fuse_lora_layers(trainer.model)  # the PEFT model TRL built from peft_config
    return trainer


def resume_checkpoint(run: Run, cfg: TrainConfig) -> Path | None:
    """``--resume``: the newest complete ``checkpoints/step-N`` (metrics after it are dropped), else None."""
    if not cfg.resume:
        return None
    latest = run.latest_checkpoint()
    if latest is None:
        run.rewind_metrics(None)  # starting over: every row of the interrupted attempt goes
        return None
    step = int(CHECKPOINT_RE.match(latest.name).group(1))  # type: ignore[union-attr]
    run.rewind_metrics(step)
    console.info(f"resuming from {latest} (step {step})")
    return latest


def train(trainer: Any, callback: RunCallback, run: Run, cfg: TrainConfig, description: str) -> TrainResult:
    """Run ``trainer.train()`` with our progress bar, resuming from ``checkpoints/step-N`` on ``--resume``."""
    checkpoint = resume_checkpoint(run, cfg) if callback.procs.main else None
    if callback.procs.world > 1:
        from accelerate.utils import broadcast_object_list

        holder = [str(checkpoint) if checkpoint else None]
        broadcast_object_list(holder, from_process=0)
        checkpoint = Path(holder[0]) if holder[0] else None
    with console.progress(description, total=None, unit="step") as tracker:
        callback.tracker = tracker
        started = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        seconds = time.perf_counter() - started
        callback.tracker = None
    tokens = float(getattr(trainer, "_total_train_tokens", 0) or 0)
    return TrainResult(
        int(trainer.state.global_step), seconds, tokens, str(checkpoint) if checkpoint else None
    )


def gather_steps(callback: RunCallback, procs: Processes) -> list[int]:
    """Optimizer steps each process took (shows that every process trained under accelerate)."""
    if procs.world == 1:
        return [callback.local_steps]
    from accelerate.utils import gather_object

    return [int(s) for s in gather_object([callback.local_steps])]


def save_outputs(trainer: Any, policy: Policy, run: Run, cfg: TrainConfig, command: str) -> dict[str, Any]:
    """Write the trained model into the run dir (main process); return the paths for the report.

    LoRA: ``adapter_config.json`` + ``adapter_model.safetensors`` + ``alignkit_model.json`` in the run dir
    itself, so ``PeftModel.from_pretrained(base, run_dir)`` and ``--model run_dir`` both work. Full fine-tuning:
    a standalone checkpoint in the run dir. ``--merge`` (LoRA): ``merged/`` via `models.merge.merge_adapter_run`.
    """
    from peft import PeftModel

    from alignkit.models import lora, registry

    model = trainer.accelerator.unwrap_model(trainer.model)
    out: dict[str, Any] = {"model_dir": str(run.path), "merged": None}
    if isinstance(model, PeftModel):
        lora.save_adapter(model, "default", run.path)
        registry.write_model_meta(
            run.path, base=policy.base_name, adapter="default", kind="policy", trainer=command
        )
        policy.tokenizer.save_pretrained(str(run.path))
        out["adapter"] = str(run.path)
        if cfg.merge:
            out["merged"] = str(merge_adapter_run(run.path, run.path / "merged"))
    else:
        model.save_pretrained(str(run.path), safe_serialization=True)
        policy.tokenizer.save_pretrained(str(run.path))
        registry.write_model_meta(
            run.path, base=policy.base_name, adapter="", kind="policy", trainer=command, format="full"
        )
        out["adapter"] = None
    return out


def finish(run: Run, cfg: TrainConfig, report: dict[str, Any], title: str) -> dict[str, Any]:
    """Write report.json and print it: one JSON object with ``--json``, a table otherwise."""
    run.write_report(report)
    if cfg.json:
        console.print_json(report)
    else:
        flat = [(k, v) for k, v in report.items() if not isinstance(v, (dict, list))]
        console.key_values(title, flat)
    return report


def conclude(
    command: str,
    trainer: Any,
    callback: RunCallback,
    setup: Setup,
    run: Run,
    cfg: TrainConfig,
    result: TrainResult,
    fields: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """The end of every TRL-backed run; returns the report (``{}`` on processes other than the main one).

    All processes gather their step counts; the main one saves the model (`save_outputs`), then writes and
    prints report.json: `base_report`, the command's own ``fields()``, `run_facts` and the output paths.
    """
    process_steps = gather_steps(callback, setup.procs)
    if not setup.procs.main:
        return {}
    outputs = save_outputs(trainer, setup.policy, run, cfg, command)
    report = {
        **base_report(command, run, setup, result, callback, process_steps),
        **fields(),
        **run_facts(setup, result, process_steps),
        **outputs,
    }
    return finish(run, cfg, report, f"{command} report")
