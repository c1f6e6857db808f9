"""`alignkit rm`: train a scalar reward model on preference pairs and K-way rankings.

Algorithm (per optimizer step, ``grad_accum`` micro-batches of ``batch_size`` comparisons):

1. every answer of every comparison in the micro-batch is forwarded once, all in one
   right-padded batch: scores r (N,). By default (``share_prompt``) a comparison is one
   packed row, its prompt forwarded once and each answer after it under a block mask
   (`rewards.comparisons.pack_shared`); otherwise each answer is a row of its own;
2. all C(K, 2) (better, worse) pairs are gathered from r, each pair weighted
   1 / (pairs of its comparison), so a ranking counts as one comparison
   (InstructGPT, Ouyang et al. 2022, sec. 3.5);
3. loss = Bradley-Terry -log σ(r_better - r_worse - margin) (weighted mean)
   + ``center_rewards`` * mean (r_better + r_worse)^2 (Eisenstein et al. 2023, eq. 2);
4. micro-batch losses are scaled by their share of the step's comparisons, so batch
   1 x accumulation 4 gives the same update as 4 x 1; clip, AdamW, schedule.

Our own loop rather than TRL's RewardTrainer: TRL scores pairs only (no rankings from
one forward per answer), has no Record input, and on CPU its fp32 master weights under
autocast were 2.5x slower than a bf16 frozen base here (see docs/rm.md).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from alignkit import console
from alignkit.data.records import Record
from alignkit.errors import ConfigError
from alignkit.losses.reward import centering_loss, ranking_loss
from alignkit.models.cpu_attention import enable_for_training, saved_bytes_per_score
from alignkit.models.device import Precision, resolve_precision
from alignkit.models.lora import trainable_parameters
from alignkit.rewards.comparisons import (
    SHOW_SOURCES,
    PreparedData,
    check_trainable_kind,
    collate,
    prepare_comparisons,
    report_prepared,
)
from alignkit.rewards.model import ADAPTER_NAME, REWARD_DIR, RewardModel, export_reward_model
from alignkit.runs import Run
from alignkit.trainers import checkpoints, loop, memory, processes
from alignkit.trainers.compiled import compiled_training
from alignkit.trainers.rm_config import RMConfig


# ------------------------------------------------------------------- data
def load_comparisons(cfg: RMConfig) -> tuple[list[Record], list[Record], dict[str, Any]]:
    """Training and eval records (pairs or rankings) and what the loader skipped."""
    from alignkit.data.load import load_records, split_records

    if not cfg.data:
        raise ConfigError(
            "--data is required: a preference file (e.g. prefs.jsonl), a `datasets` folder or a hub name"
        )
    loaded = load_records(cfg.data, format=cfg.format, skip_invalid=cfg.skip_invalid)
    check_trainable_kind(loaded.kind, cfg.data)
    train, evals = loaded.records, []
    skipped = list(loaded.skipped)
    if cfg.eval_data:
        ev = load_records(cfg.eval_data, skip_invalid=cfg.skip_invalid, fallback_format=cfg.format)
        check_trainable_kind(ev.kind, cfg.eval_data)
        evals = ev.records
        skipped += ev.skipped
    elif cfg.eval_split > 0:
        train, evals = split_records(train, cfg.eval_split, cfg.seed)
    info = {"format": loaded.format, "kind": loaded.kind, "skipped_invalid": len(skipped)}
    if skipped:
        console.warn(
            f"skipped {len(skipped)} invalid record(s) (--skip-invalid): "
            + ", ".join(f"{s} ({r})" for s, r in skipped[:SHOW_SOURCES])
        )
    return train, evals, info


# ------------------------------------------------------------------ model
def build_reward_model(cfg: RMConfig, precision: Precision) -> RewardModel:
    """Base LM (frozen, in ``precision.frozen_dtype``) + LoRA adapter ``reward`` + ScalarHead; or all weights."""
    from alignkit.models.heads import ScalarHead
    from alignkit.models.lora import LoraSettings, add_adapter
    from alignkit.models.registry import load_model, load_tokenizer

    tokenizer = load_tokenizer(cfg.model, padding_side="right", trust_remote_code=cfg.trust_remote_code)
    model = load_model(
        cfg.model,
        dtype=precision.frozen_dtype,
        trust_remote_code=cfg.trust_remote_code,
        for_training=not cfg.lora,
        tokenizer=tokenizer,
    )
    adapter = None
    if cfg.lora:
        model = add_adapter(model, ADAPTER_NAME, LoraSettings(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout))
        adapter = ADAPTER_NAME
        if precision.autocast_dtype is not None:
            _keep_lora_inputs_in_compute_dtype(model)
    model.train()
    torch.manual_seed(cfg.seed)  # the head's initial weights follow the seed
    head = ScalarHead(model.config.hidden_size, init="reward")
    return RewardModel(
        model, head, tokenizer, precision, cfg.max_length, adapter, {"trained_by": "alignkit rm"}
    )


def _keep_lora_inputs_in_compute_dtype(model: torch.nn.Module) -> None:
    """Let LoRA read its bf16 input as is under autocast.

    PEFT casts each LoRA layer's input to the adapter's dtype (fp32) before ``lora_A``;
    under bf16 autocast the matmul casts it straight back, and autograd keeps both
    copies for the backward pass: ~7 extra activations per layer. With the cast off,
    autocast runs ``B A x`` in bf16 with the fp32 weights cast once per step.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = False


# ------------------------------------------------------------------ train
def run_rm(cfg: RMConfig) -> dict[str, Any]:
    """Train, evaluate and save a reward model; return the summary that ``--json`` prints."""
    from accelerate import Accelerator

    from alignkit.models.device import default_device

    device = default_device()
    # We place the model ourselves (on `device`); accelerate only wraps it for data parallelism.
    processes.fresh_accelerate_state()
    accelerator = Accelerator(cpu=device.type == "cpu", device_placement=False)
    main = accelerator.is_main_process
    if not main:
        console.set_quiet(True)
    seed_everything(cfg.seed)
    train_records, eval_records, data_info = load_comparisons(cfg)
    run = Run.create("rm", cfg.output, cfg, resume=cfg.resume) if main else Run(Path(cfg.output or "."))
    accelerator.wait_for_everyone()
    precision = resolve_precision(cfg.dtype, cfg.lora, device)
    rm = build_reward_model(cfg, precision)
    rm.to(device)
    if enable_for_training([rm.model], cfg.cpu_attention, precision.autocast_dtype, device):
        console.info("rm: bf16 attention as batched matmuls on the CPU (--no-cpu-attention for SDPA)")

    train = prepare_comparisons(train_records, rm.tokenizer, cfg.max_length)
    report_prepared("train data", train, cfg.max_length)
    evals = prepare_comparisons(eval_records, rm.tokenizer, cfg.max_length) if eval_records else None
    if evals is not None:
        report_prepared("eval data", evals, cfg.max_length)

    with compiled_training(rm.model, cfg.compile, device, "rm"):
        summary = train_reward_model(cfg, rm, train, evals, run, accelerator)
    summary["data"] = {**data_info, "train": train.summary(), "eval": evals.summary() if evals else None}
    rm.eval()
    if main:
        out = rm.save(run.path / REWARD_DIR, base=_base_name(cfg.model))
        summary["reward_model"] = str(out)
        if cfg.merge:
            summary["merged"] = str(export_reward_model(out, run.path / "merged", overwrite=True))
    if evals is not None:
        from alignkit.evaluation.reward_model import evaluate_comparisons
        from alignkit.reports.reward_model import show_eval

        result = evaluate_comparisons(rm, evals.comparisons, cfg.eval_batch_size)
        summary["eval_accuracy"] = result["accuracy"]
        summary["eval"] = result  # last: report.json ends with the eval numbers
        if main:
            run.log(summary["steps"], {f"eval/{k}": result[k] for k in EVAL_LOGGED})
        show_eval(result)
    if main:
        run.write_report(summary)
        console.info(f"reward model saved in {summary['reward_model']}")
    return summary


EVAL_LOGGED = ("accuracy", "margin", "length_correlation")


@dataclass
class _Training:
    """What the steps of `train_reward_model` share: the plan, the optimizer, and the state a checkpoint carries."""

    cfg: RMConfig
    rm: RewardModel
    train: PreparedData
    run: Run
    accelerator: Any
    share_prompt: bool  # each comparison one packed row (its prompt forwarded once)
    world: tuple[int, int]  # (this process, processes)
    per_epoch: int  # micro-batches per epoch on each process
    total_steps: int
    params: dict[str, torch.nn.Parameter]
    optimizer: Any  # AdamW; accelerate's wrapper once prepared
    scheduler: Any
    cursor: loop.BatchCursor = field(default_factory=loop.BatchCursor)
    step: int = 0
    counters: dict[str, float] = field(default_factory=lambda: {"train_seconds": 0.0, "tokens": 0})
    last_checkpoint: Path | None = None
    budget: Any = None  # the `memory.ActivationBudget`
    model: Any = None  # ``rm`` as accelerate prepared it
    device: torch.device | None = None  # where the model is: every batch tensor goes there
    stream: Iterator[list[int]] | None = None  # this process's micro-batches of comparison indices

    @property
    def main(self) -> bool:
        return bool(self.accelerator.is_main_process)


def train_reward_model(
    cfg: RMConfig,
    rm: RewardModel,
    train: PreparedData,
    evals: PreparedData | None,
    run: Run,
    accelerator: Any,
) -> dict[str, Any]:
    """The training loop (module docstring); trains ``rm`` in place, writes metrics and checkpoints.

    Returns ``steps``, ``train_seconds`` (this run and the ones it resumed) and ``tokens_per_s``.
    """
    t = _start_training(cfg, rm, train, run, accelerator)
    window: list[dict[str, float]] = []
    rm.train()
    with console.progress("rm", total=t.total_steps, unit="step") as bar:
        bar.advance(t.step)
        while t.step < t.total_steps:
            stats, real = _train_step(t)
            window.append(stats)
            bar.advance(
                1, tokens=real, status=f"loss {stats['loss/total']:.3f} acc {stats['reward/accuracy']:.2f}"
            )
            window = _after_step(t, window, evals)
    return {
        "command": "rm",
        "run": str(run.path),
        "steps": t.step,
        "train_seconds": round(t.counters["train_seconds"], 3),
        "tokens_per_s": t.counters["tokens"] / max(t.counters["train_seconds"], 1e-9),
        "precision": rm.precision.name,
        "lora": cfg.lora,
    }


def _start_training(
    cfg: RMConfig, rm: RewardModel, train: PreparedData, run: Run, accelerator: Any
) -> _Training:
    """Plan the steps, build the optimizer and schedule, resume, and prepare the model for accelerate."""
    share_prompt = cfg.share_prompt and rm.shares_prompt
    if cfg.share_prompt and not share_prompt:
        console.info(
            "rm: this model's attention takes no custom mask; each answer is forwarded with its prompt"
        )
    lengths = [c.packed_length if share_prompt else c.length for c in train.comparisons]

    def make_epoch(epoch: int) -> list[list[int]]:
        return loop.length_grouped_batches(lengths, cfg.batch_size, cfg.seed, epoch, cfg.group_by_length)

    world = (accelerator.process_index, accelerator.num_processes)
    per_epoch = len(make_epoch(0)) // world[1]
    total_steps = loop.plan_steps(per_epoch, cfg.grad_accum, cfg.epochs, cfg.max_steps)
    params = trainable_parameters(rm)
    optimizer = loop.build_optimizer(params, cfg.lr, cfg.weight_decay)
    scheduler = loop.build_scheduler(optimizer, total_steps, cfg.warmup_ratio)
    t = _Training(
        cfg,
        rm,
        train,
        run,
        accelerator,
        share_prompt,
        world,
        per_epoch,
        total_steps,
        params,
        optimizer,
        scheduler,
    )
    if cfg.resume:
        _resume(t)
    t.budget = _activation_budget(cfg, rm)
    t.model, t.optimizer = accelerator.prepare(rm, optimizer)
    t.device = next(rm.parameters()).device  # every batch tensor goes where the model is
    console.info(
        f"rm: {len(train.comparisons)} comparisons, {total_steps} steps of {cfg.batch_size} x {cfg.grad_accum}"
        f" x {world[1]} process(es), {rm.precision.name}, {'LoRA r=' + str(cfg.lora_r) if cfg.lora else 'all weights'}"
    )
    t.stream = loop.micro_batches(make_epoch, t.cursor, world)
    return t


def _resume(t: _Training) -> None:
    """--resume: weights, optimizer, schedule, data position and counters from the run's last checkpoint."""
    t.last_checkpoint = t.run.latest_checkpoint()
    if t.last_checkpoint is None:  # killed before the first checkpoint: start over, without its rows
        if t.main:
            t.run.rewind_metrics(None)
        return
    state = checkpoints.load_checkpoint(t.last_checkpoint, t.params, t.optimizer, t.scheduler)
    t.step = int(state["step"])
    t.cursor = loop.BatchCursor(**state["cursor"])
    t.counters.update(state.get("counters", {}))
    if t.main:
        t.run.rewind_metrics(t.step)
    console.info(f"resumed from {t.last_checkpoint} (step {t.step} of {t.total_steps})")


def _activation_budget(cfg: RMConfig, rm: RewardModel) -> memory.ActivationBudget:
    """How many layers to checkpoint per micro-batch so its activations fit --activation-memory-gb."""
    return memory.ActivationBudget(
        rm.model,
        cfg.activation_memory_gb * 1e9 if cfg.activation_memory_gb > 0 else None,
        memory.activation_bytes_per_token(
            rm.model.config,
            cfg.lora_r if cfg.lora else 0,
            2 if rm.precision.autocast_dtype is not None else 4,
        ),
        always=cfg.gradient_checkpointing,
        per_score=saved_bytes_per_score(rm.model),
    )


def _train_step(t: _Training) -> tuple[dict[str, float], int]:
    """One optimizer step over ``grad_accum`` micro-batches; return its statistics and its real tokens."""
    cfg, params, optimizer, scheduler = t.cfg, t.params, t.optimizer, t.scheduler
    started = time.perf_counter()
    assert t.stream is not None
    batches = [
        collate([t.train.comparisons[i] for i in next(t.stream)], t.rm.pad_id, t.share_prompt).to(t.device)
        for _ in range(cfg.grad_accum)
    ]
    stats, saved_bytes, checkpointed = _accumulate_gradients(t, batches)
    max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf
    grad_norm = t.accelerator.clip_grad_norm_(list(params.values()), max_norm)
    loop.check_finite(grad_norm, t.step + 1, "the gradient norm", t.last_checkpoint)
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if cfg.release_memory:  # part of the step's time
        memory.release_freed_memory()
    t.step += 1
    seconds = time.perf_counter() - started
    real = sum(b.real_tokens for b in batches)
    computed = sum(b.computed_tokens for b in batches)
    t.counters["train_seconds"] += seconds
    t.counters["tokens"] += real
    stats.update(
        {
            "train/lr": lr,
            "train/grad_norm": float(grad_norm),
            "perf/tokens_per_s": real / seconds,
            "perf/forward_tokens_per_s": computed / seconds,
            "perf/padding_efficiency": computed / sum(b.input_ids.numel() for b in batches),
            "perf/step_seconds": seconds,
            "perf/checkpointed_layers": checkpointed,
            "perf/saved_activation_gb": saved_bytes / 1e9,
            "perf/activation_estimate_scale": t.budget.scale,
            "train/epoch": t.cursor.epoch + t.cursor.batch / max(1, t.per_epoch * t.world[1]),
        }
    )
    return stats, real


def _accumulate_gradients(t: _Training, batches: list[Any]) -> tuple[dict[str, float], int, int]:
    """Forward and backward every micro-batch, each loss scaled by its share of the step's comparisons.

    Returns the step's loss statistics (comparison-weighted means), the most activation bytes one
    micro-batch saved, and the layers checkpointed on the last one.
    """
    cfg, model, budget, accelerator = t.cfg, t.model, t.budget, t.accelerator
    units = sum(b.comparisons for b in batches)
    stats: dict[str, float] = {}
    saved_bytes = 0
    checkpointed = 0
    for k, batch in enumerate(batches):
        last = k == len(batches) - 1
        # Gradients are summed locally and all-reduced once, on the last micro-batch.
        checkpointed = budget.plan(*batch.input_ids.shape)
        with nullcontext() if last else accelerator.no_sync(model):
            with budget.measure():
                scores = model(batch.input_ids, batch.attention_mask, batch.shared)  # (N,) per answer
            saved_bytes = max(saved_bytes, budget.last_saved_bytes)
            bt, bt_stats = ranking_loss(
                scores, batch.better_idx, batch.worse_idx, batch.pair_weights, batch.margin
            )
            center, _ = centering_loss(scores[batch.better_idx], scores[batch.worse_idx])
            loss = bt + cfg.center_rewards * center
            loop.check_finite(loss, t.step + 1, "the loss", t.last_checkpoint)
            share = batch.comparisons / units  # this micro-batch's share of the step's mean
            accelerator.backward(loss * share)
        for name, value in {
            "loss/total": loss,
            "loss/bt": bt,
            "loss/center": center,
            **bt_stats,
        }.items():
            stats[name] = stats.get(name, 0.0) + float(value.detach()) * share
    return stats, saved_bytes, checkpointed


def _after_step(
    t: _Training, window: list[dict[str, float]], evals: PreparedData | None
) -> list[dict[str, float]]:
    """Log the window of steps every --log-every, evaluate every --eval-every, checkpoint every --save-every.

    Returns the window of statistics still to log.
    """
    cfg, step = t.cfg, t.step
    if step % cfg.log_every == 0 or step == t.total_steps:
        if t.main:
            t.run.log(step, _mean(window))
        window = []
    if evals is not None and cfg.eval_every and step % cfg.eval_every == 0 and step < t.total_steps:
        from alignkit.evaluation.reward_model import evaluate_comparisons

        result = evaluate_comparisons(t.rm, evals.comparisons, cfg.eval_batch_size)
        t.rm.train()
        if t.main:
            t.run.log(step, {f"eval/{k}": result[k] for k in EVAL_LOGGED})
    if (cfg.save_every and step % cfg.save_every == 0) or step == t.total_steps:
        _save(t, step)
    return window


def _save(t: _Training, at: int) -> None:
    """Checkpoint step ``at`` on the main process; every process waits for it."""
    if t.main:
        state = {"cursor": asdict(t.cursor), "counters": t.counters, "total_steps": t.total_steps}
        t.last_checkpoint = checkpoints.save_checkpoint(
            t.run, at, t.params, t.optimizer, t.scheduler, state, keep=t.cfg.keep_checkpoints
        )
    t.accelerator.wait_for_everyone()


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = rows[0].keys()
    return {k: sum(r[k] for r in rows) / len(rows) for k in keys}


def _base_name(model: str) -> str:
    """The base model as later runs should find it: an absolute path for a local dir, else the name."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
