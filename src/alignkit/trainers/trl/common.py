"""What alignkit's TRL-backed trainers (dpo, kto, sft) share: data in, TRL configured, run dir out.

The algorithms are TRL 1.16's (`DPOTrainer`, `KTOTrainer`, `SFTTrainer`); this module only connects them
to alignkit's plumbing, one small function per job:

- `load_train_eval`: our loaders -> validated `Record`s (identical chosen/rejected pairs skipped and
  counted), the eval set from ``--eval-data`` or ``--eval-split``;
- `fit_records`: cut prompts from the left (oldest turns first) so prompt + answer fits ``--max-length``;
  drop, count and report an answer that alone does not fit (answers are never cut silently);
- `to_dataset`: `Record`s -> a `datasets.Dataset` in TRL's conversational format;
- `load_policy` / `peft_config` / `training_precision`: the model from our registry, LoRA as a PEFT config
  (so TRL takes the reference from the same weights with the adapter disabled: no second copy);
- `prepare`: all of the above, in order, before the run dir is opened (a `Setup`);
- `training_args` / `eval_args`: our `TrainConfig` -> TRL's config (a `transformers.TrainingArguments`);
- `build_trainer`: TRL's trainer on the prepared policy and data, reporting through `RunCallback`;
- `RunCallback`: TRL's logs -> our ``metrics.jsonl`` (`Run.log`) and console progress; HF checkpoints
  ``checkpoint-N`` -> our ``checkpoints/step-N``;
- `train`: ``--resume`` -> ``trainer.train(resume_from_checkpoint=checkpoints/step-N)``;
- `save_outputs`: the adapter (loadable by plain ``PeftModel.from_pretrained``), ``--merge``;
- `conclude`: after training, the model saved and report.json written (`base_report` + the command's
  fields + `run_facts`).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from alignkit import console
from alignkit.config import TrainConfig
from alignkit.data.records import Conversation, Message, Record
from alignkit.errors import ConfigError, DataError, ModelError
from alignkit.models.device import Precision, resolve_precision
from alignkit.models.merge import merge_adapter_run
from alignkit.runs import CHECKPOINT_RE, Run

TRAINER_DIR = "trainer"  # HF Trainer's scratch output_dir inside a run (model card, partial checkpoints)
IDENTICAL_REASON = "identical"  # the loader's reason for a pair whose chosen equals rejected contains this


# ----------------------------------------------------------------------------- quiet libraries, processes
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

    from alignkit.trainers.loop import fresh_accelerate_state

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


# ----------------------------------------------------------------------------------------------- data
@dataclass
class DataStats:
    """What happened to the data on its way to the trainer (reported in report.json)."""

    format: str = ""
    source_kind: str = ""
    identical_skipped: list[str] = field(default_factory=list)  # sources of pairs whose chosen == rejected
    invalid_skipped: list[str] = field(default_factory=list)  # other invalid records (--skip-invalid)
    prompts_cut: int = 0  # prompts shortened from the left to fit max_length
    dropped_long: list[str] = field(default_factory=list)  # records whose answer alone exceeds max_length

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "source_kind": self.source_kind,
            "identical_pairs_skipped": len(self.identical_skipped),
            "invalid_skipped": len(self.invalid_skipped),
            "prompts_cut": self.prompts_cut,
            "dropped_long_answers": len(self.dropped_long),
            "examples_identical": self.identical_skipped[:5],
            "examples_dropped_long": self.dropped_long[:5],
        }


def load_records_for(path: str, kind: str, skip_invalid: bool, stats: DataStats) -> list[Record]:
    """Records of ``kind`` from ``path``; pairs with chosen == rejected are skipped and counted, always.

    Such a pair carries no preference signal (the loader calls it invalid). Every other invalid record
    stops the run with its FILE:LINE unless ``--skip-invalid``.
    """
    from alignkit.data.load import load_records

    result = load_records(path, kind=kind, skip_invalid=True)
    others = []
    for source, reason in result.skipped:
        if IDENTICAL_REASON in reason:
            stats.identical_skipped.append(source)
        else:
            others.append((source, reason))
    if others and not skip_invalid:
        source, reason = others[0]
        more = f" (and {len(others) - 1} more invalid records)" if len(others) > 1 else ""
        raise DataError(
            f"{reason}{more}; fix the data or pass --skip-invalid to skip invalid records", source
        )
    stats.invalid_skipped.extend(s for s, _ in others)
    stats.format, stats.source_kind = result.format, result.source_kind
    return result.records


def load_train_eval(cfg: TrainConfig, kind: str) -> tuple[list[Record], list[Record], DataStats]:
    """(train, eval, stats): ``--data`` as ``kind``; eval from ``--eval-data`` or a ``--eval-split`` of it."""
    from alignkit.data.load import split_records

    stats = DataStats()
    assert cfg.data is not None
    train = load_records_for(cfg.data, kind, cfg.skip_invalid, stats)
    evals: list[Record] = []
    if cfg.eval_data:
        eval_stats = DataStats()
        evals = load_records_for(cfg.eval_data, kind, cfg.skip_invalid, eval_stats)
        stats.identical_skipped += eval_stats.identical_skipped
        stats.invalid_skipped += eval_stats.invalid_skipped
    elif cfg.eval_split > 0:
        train, evals = split_records(train, cfg.eval_split, cfg.seed)
    return train, evals, stats


def _answers(record: Record) -> list[Conversation]:
    return record.answers()


def _messages(conv: Sequence[Message]) -> list[dict[str, str]]:
    return [m.to_dict() for m in conv]


def _template_ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    """Token ids of a chat through the tokenizer's template, as TRL tokenizes it (``apply_chat_template``)."""
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=generation_prompt, return_dict=True
    )
    return list(out["input_ids"])


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def measure(tokenizer: Any, prompt: Conversation, answers: Sequence[Conversation]) -> tuple[int, list[int]]:
    """(prompt tokens, tokens of each answer) the way TRL splits prompt+answer (at the common prefix)."""
    prompt_ids = _template_ids(tokenizer, _messages(prompt), True)
    lengths, start = [], len(prompt_ids)
    for answer in answers:
        full = _template_ids(tokenizer, _messages(prompt) + _messages(answer), False)
        cut = _common_prefix(prompt_ids, full)
        start = min(start, cut)
        lengths.append(len(full) - cut)
    return start, lengths


def _cut_left(tokenizer: Any, text: str, drop_tokens: int) -> str:
    """``text`` without its first ``drop_tokens`` tokens (the newest words are kept)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids[min(len(ids), drop_tokens) :], skip_special_tokens=False)


def fit_prompt(tokenizer: Any, record: Record, max_length: int) -> tuple[Record | None, bool]:
    """(record that fits ``max_length``, whether its prompt was cut); None when an answer alone cannot fit.

    Length rule (`TrainConfig.max_length`): prompt + longest answer must fit. The prompt loses its oldest
    turns first (a leading system turn and the last turn stay), then the first tokens of its oldest
    remaining turn. A record whose answer needs more than ``max_length`` minus a minimal prompt is dropped
    (and counted by the caller), never cut.
    """
    prompt_len, answer_lens = measure(tokenizer, record.prompt, _answers(record))
    longest = max(answer_lens)
    if prompt_len + longest <= max_length:
        return _with_tokens(record, record.prompt, prompt_len + longest), False
    minimal = measure(tokenizer, (Message("user", "?"),), [])[0]  # the template's own tokens
    if longest + minimal + 1 > max_length:
        return None, False
    turns = list(record.prompt)
    keep_head = 1 if turns and turns[0].role == "system" else 0
    for _ in range(8):  # each pass removes what overflows; re-measuring handles template changes
        overflow = measure(tokenizer, tuple(turns), [])[0] + longest - max_length
        if overflow <= 0:
            return _with_tokens(record, tuple(turns), max_length + overflow), True
        while len(turns) > keep_head + 1 and overflow > 0:
            gone = turns.pop(keep_head)
            overflow -= len(tokenizer(gone.content, add_special_tokens=False)["input_ids"]) + 4
        if overflow > 0:
            first = turns[keep_head]
            turns[keep_head] = Message(first.role, _cut_left(tokenizer, first.content, overflow + 1))
    tokens = measure(tokenizer, tuple(turns), [])[0] + longest
    if tokens <= max_length:
        return _with_tokens(record, tuple(turns), tokens), True
    return None, False


def _with_tokens(record: Record, prompt: Conversation, tokens: int) -> Record:
    """``record`` with ``prompt`` and ``meta["tokens"]`` (its longest sequence); a fresh meta dict, since
    records made from one source record (`Record.to_unpaired`) share theirs."""
    return replace(record, prompt=prompt, meta={**record.meta, "tokens": tokens})


def fit_records(tokenizer: Any, records: Sequence[Record], max_length: int, stats: DataStats) -> list[Record]:
    """`fit_prompt` over ``records``: counts cut prompts, drops (and lists) answers longer than the budget."""
    kept = []
    for record in records:
        fitted, cut = fit_prompt(tokenizer, record, max_length)
        if fitted is None:
            stats.dropped_long.append(record.source)
            continue
        stats.prompts_cut += int(cut)
        kept.append(fitted)
    return kept


def to_dataset(records: Sequence[Record], kind: str):
    """A `datasets.Dataset` in TRL's conversational format for ``kind``.

    preference -> prompt, chosen, rejected; unpaired -> prompt, completion, label; sft -> prompt,
    completion (TRL's prompt-completion format, so the loss covers the completion only). Each field is a
    list of ``{"role", "content"}`` messages. ``length`` (tokens of the longest sequence a record makes,
    from `fit_prompt`) lets the trainer batch records of similar length together.
    """
    from datasets import Dataset

    columns: dict[str, list[Any]] = {"prompt": [_messages(r.prompt) for r in records]}
    if records and all("tokens" in r.meta for r in records):
        columns["length"] = [int(r.meta["tokens"]) for r in records]
    if kind == "preference":
        columns["chosen"] = [_messages(r.chosen) for r in records]  # type: ignore[arg-type]
        columns["rejected"] = [_messages(r.rejected) for r in records]  # type: ignore[arg-type]
    elif kind in ("unpaired", "sft"):
        columns["completion"] = [_messages(r.completion) for r in records]  # type: ignore[arg-type]
        if kind == "unpaired":
            columns["label"] = [bool(r.label) for r in records]
    else:
        raise ValueError(f"no TRL dataset format for {kind} records")
    return Dataset.from_dict(columns)


# ------------------------------------------------------------------------------------- model, precision
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
class Policy:
    """The model TRL trains, its tokenizer, and how the run's output relates to a base model."""

    model: Any  # PreTrainedModel, or a PeftModel when --model is an adapter dir (its adapter keeps training)
    tokenizer: Any
    base_name: str  # what alignkit_model.json records as the base (a registry name or path)
    peft_config: Any | None  # LoraConfig handed to TRL (fresh adapter), else None
    note: str  # one line for the console: what is trained and what the reference is


def peft_config(model: Any, cfg: TrainConfig):
    """A PEFT LoRA config for TRL from the common options (``all-linear`` targets, never the LM head)."""
    from peft import LoraConfig

    from alignkit.models.lora import resolve_target_modules

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=resolve_target_modules(model, "all-linear"),
        bias="none",  # a trained bias would make "adapter disabled" differ from the base model
        task_type="CAUSAL_LM",
    )


def load_policy(cfg: TrainConfig, precision: Precision) -> Policy:
    """Model and tokenizer from the registry (``--model``: name, checkpoint dir or an adapter/run dir).

    LoRA on a base model: a fresh adapter via ``peft_config`` (TRL's reference = adapter disabled). LoRA on an
    adapter dir: that adapter keeps training (as "default"); TRL keeps a frozen copy of it ("ref") as the
    reference, so the reference is the model you started from. Without LoRA every weight trains.
    """
    from alignkit.models import lora, registry

    path = registry.resolve(cfg.model)
    tokenizer = registry.load_tokenizer(
        cfg.model, padding_side="left", trust_remote_code=cfg.trust_remote_code
    )
    if registry.is_adapter_dir(path):
        base_name = registry.adapter_base(path)
        base = registry.load_model(
            base_name, precision.frozen_dtype, cfg.trust_remote_code, tokenizer=tokenizer
        )
        if cfg.lora:
            model = lora.load_adapter(base, path, "default", trainable=True)
            return Policy(
                model,
                tokenizer,
                base_name,
                None,
                f"continuing the LoRA adapter of {cfg.model}; reference: a frozen copy of it",
            )
        merged = lora.load_adapter(base, path, "default").merge_and_unload()
        merged.requires_grad_(True)
        merged.train()
        return Policy(merged, tokenizer, str(cfg.model), None, f"all weights of {cfg.model} (adapter merged)")
    model = registry.load_model(
        path, precision.frozen_dtype, cfg.trust_remote_code, for_training=not cfg.lora, tokenizer=tokenizer
    )
    if cfg.lora:
        return Policy(
            model,
            tokenizer,
            str(cfg.model),
            peft_config(model, cfg),
            f"LoRA r={cfg.lora_r} on {cfg.model}; reference: the same weights with the adapter disabled",
        )
    return Policy(model, tokenizer, str(cfg.model), None, f"all weights of {cfg.model}")


def check_same_tokenizer(policy_tok: Any, ref_tok: Any, ref_name: str) -> None:
    """Raise ModelError unless the two tokenizers map text to the same ids (log-ratios need one vocabulary)."""
    probe = "Hello, world! 1234 \u00e9\u00e8 <|im_start|>user\n?"
    same = (
        policy_tok.get_vocab() == ref_tok.get_vocab()
        and policy_tok.eos_token_id == ref_tok.eos_token_id
        and policy_tok(probe, add_special_tokens=False)["input_ids"]
        == ref_tok(probe, add_special_tokens=False)["input_ids"]
    )
    if not same:
        raise ModelError(
            f"--ref-model {ref_name} has a different tokenizer from --model: log-ratios log pi(y|x) - log "
            "pi_ref(y|x) need the same tokens; pick a reference from the same model family"
        )


def load_reference(cfg: TrainConfig, ref_name: str | None, precision: Precision, tokenizer: Any) -> Any:
    """The separate frozen reference for ``--ref-model`` (its tokenizer must match), else None."""
    if not ref_name:
        return None
    from alignkit.models import registry

    ref_tok = registry.load_tokenizer(ref_name, trust_remote_code=cfg.trust_remote_code)
    check_same_tokenizer(tokenizer, ref_tok, ref_name)
    return registry.load_model(ref_name, precision.frozen_dtype, cfg.trust_remote_code, tokenizer=ref_tok)


# ------------------------------------------------------------------------------------------- setup
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


# ------------------------------------------------------------------------------------------- TRL config
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


# ------------------------------------------------------------------------------------------- callback
# TRL's log keys -> alignkit's metric names (docs/metrics.md). Others are kept under "trl/<key>".
METRIC_NAMES = {
    "loss": "loss/total",
    "grad_norm": "train/grad_norm",
    "learning_rate": "train/lr",
    "epoch": "train/epoch",
    "entropy": "policy/entropy",
    "mean_token_accuracy": "policy/token_accuracy",
    "num_tokens": "perf/tokens",
    "rewards/chosen": "reward/chosen",
    "rewards/rejected": "reward/rejected",
    "rewards/accuracies": "reward/accuracy",
    "rewards/margins": "reward/margin",
    "logps/chosen": "logps/chosen",
    "logps/rejected": "logps/rejected",
    "logits/chosen": "logits/chosen",
    "logits/rejected": "logits/rejected",
    "kl": "kl/batch",
}
SUMMARY_KEYS = (
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "total_flos",
    "train_loss",
)
EVAL_NOISE = ("runtime", "samples_per_second", "steps_per_second", "num_tokens", "epoch")


def metric_name(key: str) -> str:
    return METRIC_NAMES.get(key, f"trl/{key}")


def eval_metric_name(key: str) -> str:
    """``eval_loss`` -> ``eval/loss``; ``eval_rewards/chosen`` -> ``eval/reward_chosen`` (see `METRIC_NAMES`)."""
    key = key.removeprefix("eval_")
    return "eval/loss" if key == "loss" else "eval/" + metric_name(key).replace("/", "_")


class RunCallback(TrainerCallback):
    """TRL -> alignkit: metrics.jsonl, console progress, checkpoint names and rotation, eval hooks."""

    def __init__(self, run: Run, procs: Processes, keep: int, eval_hook: Callable[[int], dict] | None = None):
        self.run, self.procs, self.keep, self.eval_hook = run, procs, keep, eval_hook
        self.tracker: Any = None
        self.rows: list[dict[str, Any]] = []  # train rows logged in this session
        self.eval_rows: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}
        self._last: tuple[float, float] | None = None  # (time, cumulative tokens) at the previous log
        self.local_steps = 0  # optimizer steps this process took in this session
        self.start = time.perf_counter()
        self._every: tuple[int, Callable[[int], Any]] | None = None

    def every(self, steps: int, fn: Callable[[int], Any]) -> None:
        """Call ``fn(step)`` on every process after each ``steps`` optimizer steps (not at the last step)."""
        self._every = (steps, fn)

    # ---- training progress
    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()
        self._last = (self.start, 0.0)
        if self.tracker is not None:
            self.tracker.set(total=state.max_steps)
            if state.global_step:
                self.tracker.advance(state.global_step)

    def on_epoch_begin(self, args, state, control, **kwargs):
        # transformers' LengthGroupedSampler draws its order from the global torch RNG when the epoch's
        # iterator starts, so anything that used the RNG before (a reference pre-pass, a resume) would
        # change the data order; seeding here makes it depend on (data_seed, epoch) only.
        if args.train_sampling_strategy == "group_by_length":
            torch.manual_seed(
                (args.data_seed if args.data_seed is not None else args.seed) + math.floor(state.epoch + 1e-6)
            )

    def on_step_end(self, args, state, control, **kwargs):
        self.local_steps += 1
        if self.tracker is not None:
            self.tracker.advance(1)
        if self._every is not None:
            steps, fn = self._every
            if state.global_step % steps == 0 and state.global_step < state.max_steps:
                fn(state.global_step)
        if args.save_strategy != "no" and state.global_step >= state.max_steps:
            control.should_save = True  # a checkpoint at the end too
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        if any(k in logs for k in SUMMARY_KEYS):
            self.summary.update(logs)
            return
        if any(k.startswith("eval_") for k in logs):
            row = {
                eval_metric_name(k): v
                for k, v in logs.items()
                if k.startswith("eval_") and not k.endswith(EVAL_NOISE)
            }
            self.eval_rows.append({"step": state.global_step, **row})
            self.run.log(state.global_step, row)
            return
        row = {metric_name(k): v for k, v in logs.items()}
        now = time.perf_counter()
        tokens = float(logs.get("num_tokens", 0.0))
        if self._last is not None and tokens:
            then, before = self._last  # TRL counts tokens from 0 in each session, resumed or not
            if now > then and tokens >= before:
                row["perf/tokens_per_s"] = (tokens - before) / (now - then)
            self._last = (now, tokens)
        self.rows.append({"step": state.global_step, **row})
        self.run.log(state.global_step, row)
        if self.tracker is not None and "loss" in logs:
            self.tracker.set(status=f"loss {logs['loss']:.4f}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.eval_hook is not None:
            self.eval_hook(state.global_step)

    # ---- checkpoints: HF's output_dir/checkpoint-N -> run/checkpoints/step-N, atomically renamed
    def on_save(self, args, state, control, **kwargs):
        self.procs.barrier()  # every process has written its part (rng_state_<rank>.pth)
        if self.procs.main:
            source = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if source.is_dir():
                move_checkpoint(source, self.run, state.global_step, self.keep)
        self.procs.barrier()


def move_checkpoint(source: Path, run: Run, step: int, keep: int) -> Path:
    """Rename a finished HF checkpoint into ``checkpoints/step-N`` and keep only the newest ``keep``."""
    target = run.checkpoints_dir / f"step-{step}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    os.replace(source, target)  # same filesystem: atomic; a half-written checkpoint never gets the name
    for old in run.checkpoints()[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


# ------------------------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    steps: int
    train_seconds: float
    train_tokens: float
    resumed_from: str | None


def resume_checkpoint(run: Run, cfg: TrainConfig) -> Path | None:
    """``--resume``: the newest complete ``checkpoints/step-N`` (metrics after it are dropped), else None."""
    if not cfg.resume:
        return None
    latest = run.latest_checkpoint()
    if latest is None:
        console.warn(f"{run.path}: no checkpoint yet; starting from step 0")
        run.truncate_metrics(0)
        return None
    step = int(CHECKPOINT_RE.match(latest.name).group(1))  # type: ignore[union-attr]
    run.truncate_metrics(step)
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


# ---------------------------------------------------------------------------------------------- outputs
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


# ---------------------------------------------------------------------------------------------- reports
def trend(values: Sequence[float], parts: int = 4) -> dict[str, Any] | None:
    """First and last quarter means of a logged series, and whether it fell throughout.

    "Fell throughout": the series split into ``parts`` equal chunks has strictly decreasing chunk means
    (needs at least ``parts`` values). Chunk means smooth the batch-to-batch noise of per-step logs.
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if len(vals) < 2:
        return None
    k = min(parts, len(vals))
    bounds = [round(i * len(vals) / k) for i in range(k + 1)]
    means = [sum(vals[a:b]) / (b - a) for a, b in zip(bounds, bounds[1:], strict=False)]
    falls = len(vals) >= parts and all(b < a for a, b in zip(means, means[1:], strict=False))
    return {"first": means[0], "last": means[-1], "change": means[-1] - means[0], "falls_throughout": falls}


def series(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in rows if r.get(key) is not None]


def last(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    values = series(rows, key)
    return values[-1] if values else None


def base_report(
    command: str, run: Run, setup: Setup, result: TrainResult, callback: RunCallback, process_steps: list[int]
) -> dict[str, Any]:
    """The fields every TRL-backed command reports first (the shape `--json` prints)."""
    seconds = result.train_seconds
    return {
        "command": command,
        "run": str(run.path),
        "steps": result.steps,
        "train_seconds": seconds,
        "trainer_runtime": callback.summary.get("train_runtime"),  # HF's own measure of the training loop
        "train_tokens": result.train_tokens,
        "tokens_per_s": result.train_tokens / seconds if seconds > 0 and result.train_tokens else None,
        "final_loss": last(callback.rows, "loss/total"),
    }


def run_facts(setup: Setup, result: TrainResult, process_steps: list[int]) -> dict[str, Any]:
    """The fields every TRL-backed command reports last: where it ran and what happened to the data."""
    return {
        "precision": setup.precision.name,
        "world_size": setup.procs.world,
        "process_steps": process_steps,
        "resumed_from": result.resumed_from,
        "data": setup.stats.as_dict(),
    }


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
