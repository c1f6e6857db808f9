"""`alignkit dpo`: Direct Preference Optimization with TRL's DPOTrainer, fed by alignkit's loaders.

DPO (Rafailov et al. 2023, arXiv:2305.18290, eq. 7) trains the policy directly on preference pairs:

    loss = -log sigmoid(beta * [(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))])

where ``beta * (log pi - log pi_ref)`` is the implicit reward (sec. 5). TRL computes the loss (every
``--loss`` in `DPO_LOSSES`); alignkit loads the data, picks the reference, and measures the result itself:

- reference: with LoRA, the same weights with the adapter disabled (TRL does this when it wraps the model
  from a ``peft_config`` and ``ref_model`` is None: `DPOTrainer._compute_loss` runs the policy under
  ``use_adapter(model, None)``), so there is one copy of the model in memory; without LoRA a frozen copy
  (or ``--ref-model``, whose tokenizer must match);
- each pair's prompt is forwarded once and the LM head runs on answer tokens only (`dpo_shared_prompt`,
  ``--share-prompt``, default on): the log-probs TRL's loss reads are unchanged, the work is smaller;
- held-out evaluation (`evaluate_pairs`): per pair, implicit rewards from sequence log-probs summed over
  the answer tokens; accuracy counts ties as half; the KL estimate is the mean over held-out chosen answers
  of ``log pi(y|x) - log pi_ref(y|x)`` per sequence (a log-ratio on fixed answers, not a sampled KL).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

import alignkit.trainers.dpo_shared_prompt as dpo_shared
from alignkit import console
from alignkit.trainers.dpo_config import DPOConfig, parse_losses
from alignkit.trainers.trl.callback import RunCallback
from alignkit.trainers.trl.report import series, trend
from alignkit.trainers.trl.run import build_trainer, conclude, train, training_args
from alignkit.trainers.trl.setup import open_run, prepare

COMMAND = "dpo"


# ------------------------------------------------------------------------------------------ metrics
def pair_metrics(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> dict[str, float]:
    """Held-out DPO metrics from per-pair sequence log-probs, all of shape (B,).

    Implicit reward r = beta * (log pi(y|x) - log pi_ref(y|x)) (Rafailov et al. 2023, sec. 5).
    ``accuracy`` = mean of 1[r_w > r_l] + 0.5 * 1[r_w == r_l] (ties count half, so an untrained adapter
    scores exactly 0.5); ``margin`` = mean(r_w - r_l); ``loss`` = mean(-log sigmoid(r_w - r_l)), the DPO
    loss at this beta whatever ``--loss`` trained; ``logratio_chosen`` = mean(log pi(y_w|x) - log pi_ref(y_w|x)),
    a log-ratio on fixed answers (not a KL: it is negative when training pushes chosen answers down too).
    """
    reward_chosen = beta * (chosen_logps - ref_chosen_logps)  # (B,)
    reward_rejected = beta * (rejected_logps - ref_rejected_logps)  # (B,)
    diff = reward_chosen - reward_rejected  # (B,)
    wins = (diff > 0).float() + 0.5 * (diff == 0).float()
    return {
        "eval_pairs": int(diff.numel()),
        "eval_accuracy": wins.mean().item(),
        "eval_margin": diff.mean().item(),
        "eval_loss": (-F.logsigmoid(diff)).mean().item(),
        "eval_logratio_chosen": (chosen_logps - ref_chosen_logps).mean().item(),
        "eval_reward_chosen": reward_chosen.mean().item(),
        "eval_reward_rejected": reward_rejected.mean().item(),
        "eval_logps_chosen": chosen_logps.mean().item(),
        "eval_logps_rejected": rejected_logps.mean().item(),
    }


KL_PROMPTS = 32  # held-out prompts sampled once each for the KL estimate at the end of training
KL_NEW_TOKENS = 64


def _sampled_kl(model: Any, setup: Any, cfg: DPOConfig) -> dict[str, Any]:
    """KL(policy || reference) on held-out prompts, from the policy's own samples (`evaluation.policy`).

    The reference is the one TRL trains against (as in `evaluate_pairs`): ``--ref-model``; the frozen copy
    "ref" of the starting adapter when ``--model`` is an adapter run; else the base with the adapter off.
    """
    import contextlib

    from alignkit.evaluation.policy import sampled_kl
    from alignkit.models import lora

    prompts = list(dict.fromkeys(r.prompt for r in setup.eval))[:KL_PROMPTS]
    if setup.ref_model is not None:
        reference = lambda: contextlib.nullcontext(setup.ref_model)  # noqa: E731
    elif "ref" in getattr(model, "peft_config", {}):  # continuing an adapter: TRL's frozen copy of it
        reference = lambda: lora.use_adapter(model, "ref")  # noqa: E731
    elif lora.adapter_names(model):
        reference = lambda: lora.reference(model)  # noqa: E731
    else:  # precomputed reference log-probs without LoRA: no reference model is kept
        return {"eval_kl_ref": None, "eval_kl_ref_stderr": None, "eval_kl_prompts": 0}
    was_training = model.training
    model.eval()
    try:
        kl, err = sampled_kl(model, reference, setup.policy.tokenizer, prompts, KL_NEW_TOKENS, 1.0, cfg.seed)
    finally:
        model.train(was_training)
    return {"eval_kl_ref": kl, "eval_kl_ref_stderr": err, "eval_kl_prompts": len(prompts)}


def _sequence_logps(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of log pi(token) over each sequence's answer tokens: (2B,) for a batch [chosen; rejected].

    Uses the LM head TRL adds to the model (``fused_lm_head=True``: per-token log-probs without building
    the (2B, T, V) logits; 0 at positions whose label is -100), so these are TRL's own numbers.
    """
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)  # (2B, T)
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        labels=labels,
        fused_lm_head=True,
        use_cache=False,
    )
    return out.log_probs.sum(dim=-1).float()  # (2B,)


@torch.no_grad()
def evaluate_pairs(trainer: Any, dataset: Any, beta: float) -> dict[str, float]:
    """`pair_metrics` over a prepared eval dataset (sharded across processes, gathered on all)."""
    from peft import PeftModel

    from alignkit.models import lora

    model = trainer.accelerator.unwrap_model(trainer.model)
    was_training = model.training
    model.eval()
    columns = []
    try:
        for batch in trainer.get_eval_dataloader(dataset):
            with trainer.accelerator.autocast():
                logps = _sequence_logps(model, batch)
                if "ref_chosen_logps" in batch:  # --precompute-ref
                    ref = torch.cat([batch["ref_chosen_logps"], batch["ref_rejected_logps"]]).float()
                elif trainer.ref_model is not None:
                    ref = _sequence_logps(trainer.ref_model, batch)
                elif isinstance(model, PeftModel) and "ref" in model.peft_config:  # continuing an adapter
                    with lora.use_adapter(model, "ref"):
                        ref = _sequence_logps(model, batch)
                else:
                    with lora.reference(model):
                        ref = _sequence_logps(model, batch)
            chosen, rejected = logps.chunk(2)  # batch is [chosen; rejected]
            ref_chosen, ref_rejected = ref.chunk(2)
            stacked = torch.stack([chosen, rejected, ref_chosen, ref_rejected], dim=1)  # (B, 4)
            columns.append(trainer.accelerator.gather_for_metrics(stacked).cpu())
    finally:
        model.train(was_training)
    if not columns:
        return {"eval_pairs": 0}
    table = torch.cat(columns)  # (N, 4)
    return pair_metrics(table[:, 0], table[:, 1], table[:, 2], table[:, 3], beta)


# -------------------------------------------------------------------------------------------- train
def run_dpo(cfg: DPOConfig) -> dict[str, Any]:
    """Train with DPO as configured; write the run dir; return (and print) the report."""
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    title = f"alignkit dpo ({cfg.loss}, beta {cfg.beta})"
    setup = prepare(cfg, "preference", needs_reference=True, title=title)
    run = open_run(COMMAND, cfg, setup.procs)
    args = training_args(
        TRLDPOConfig,
        cfg,
        run,
        setup.precision,
        beta=cfg.beta,
        loss_type=parse_losses(cfg.loss),
        loss_weights=cfg.loss_weights,
        label_smoothing=cfg.label_smoothing,
        precompute_ref_log_probs=cfg.precompute_ref,
        eval_strategy="no",  # held-out evaluation is ours (evaluate_pairs), at --eval-every and at the end
    )
    callback = RunCallback(run, setup.procs, cfg.keep_checkpoints)
    trainer = build_trainer(DPOTrainer, setup, args, callback, "preference", ref_model=setup.ref_model)
    if cfg.share_prompt and not dpo_shared.install(trainer):
        console.info("dpo: the prompt is forwarded with each answer (this model or setup cannot share it)")
    history: list[dict[str, Any]] = []

    def held_out(step: int) -> dict[str, Any]:
        metrics = evaluate_pairs(trainer, trainer.eval_dataset, cfg.beta)
        history.append({"step": step, **metrics})
        if setup.procs.main:
            run.log(step, {"eval/" + k.removeprefix("eval_"): v for k, v in metrics.items()})
        return metrics

    if setup.eval and cfg.eval_every > 0:
        callback.every(cfg.eval_every, held_out)
    result = train(trainer, callback, run, cfg, COMMAND)
    final = held_out(result.steps) if setup.eval else {"eval_pairs": 0}
    if setup.eval and setup.procs.main:
        final.update(_sampled_kl(trainer.accelerator.unwrap_model(trainer.model), setup, cfg))
        run.log(
            result.steps,
            {"eval/kl_ref": final["eval_kl_ref"], "eval/kl_ref_stderr": final["eval_kl_ref_stderr"]},
        )

    def fields() -> dict[str, Any]:
        trends = {
            "logps_chosen": trend(series(callback.rows, "logps/chosen")),
            "logps_rejected": trend(series(callback.rows, "logps/rejected")),
            "reward_margin": trend(series(callback.rows, "reward/margin")),
        }
        warn_falling_chosen(trends["logps_chosen"])
        return {
            "eval_accuracy": final.get("eval_accuracy"),
            "eval_margin": final.get("eval_margin"),
            "eval_pairs": final.get("eval_pairs", 0),
            "eval_loss": final.get("eval_loss"),
            "eval_kl_ref": final.get("eval_kl_ref"),
            "eval_kl_ref_stderr": final.get("eval_kl_ref_stderr"),
            "eval_kl_prompts": final.get("eval_kl_prompts"),
            "eval_logratio_chosen": final.get("eval_logratio_chosen"),
            "eval_reward_chosen": final.get("eval_reward_chosen"),
            "eval_reward_rejected": final.get("eval_reward_rejected"),
            "train_pairs": len(setup.train),
            "skipped_identical_pairs": len(setup.stats.identical_skipped),
            "loss": cfg.loss,
            "beta": cfg.beta,
            "reference": setup.reference,
            "trends": trends,
            "eval_history": history[:-1],
        }

    return conclude(COMMAND, trainer, callback, setup, run, cfg, result, fields)


def warn_falling_chosen(chosen: dict[str, Any] | None) -> None:
    """Warn when the chosen answers' log-prob fell throughout training (`trl.report.trend`)."""
    if chosen and chosen["falls_throughout"]:
        console.warn(
            f"the chosen answers' log-prob fell throughout training ({chosen['first']:.1f} -> {chosen['last']:.1f}): "
            "DPO is making the preferred answers less likely too, a known failure (Pal et al. 2024, "
            "arXiv:2402.13228); try a larger --beta, --loss sigmoid,sft or --loss apo_zero"
        )
