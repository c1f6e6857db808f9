"""`alignkit kto`: Kahneman-Tversky Optimization with TRL's KTOTrainer, fed by alignkit's loaders.

KTO (Ethayarajh et al. 2024, arXiv:2402.01306, eq. 7) needs only a label per answer (desirable or not):

    r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x))         implicit reward
    z0      = max(0, KL(pi || pi_ref)) estimated per micro-batch from mismatched (x, y') pairs
    loss    = lambda_D * (1 - sigmoid(r - z0))   for desirable y
              lambda_U * (1 - sigmoid(z0 - r))   for undesirable y

Data: unpaired records with ``label``, or preference pairs unpaired automatically (`Record.to_unpaired`:
chosen -> desirable, rejected -> undesirable). TRL walks the data in order (its KL estimate pairs each
example with its neighbour in the micro-batch), so alignkit shuffles it once with ``--seed`` first: data
sorted by label would otherwise give one-class batches.

Class balance (`class_weights`): the paper (sec. 4.2, eq. 8) recommends lambda_D n_D / (lambda_U n_U) in
[1, 4/3]. When the data fall outside and no weight is given, the minority class is up-weighted to a ratio
of 1, and the log says so. Data with one class only train with a warning (documented choice, docs/kto.md):
with nothing to contrast, KTO reduces to raising (or lowering) the likelihood of those answers relative to
a KL baseline, much like SFT (or unlikelihood training).
"""

from __future__ import annotations

import random
from typing import Any

from alignkit import console
from alignkit.trainers.kto_config import KTOConfig
from alignkit.trainers.trl.callback import RunCallback
from alignkit.trainers.trl.report import series, trend
from alignkit.trainers.trl.run import build_trainer, conclude, eval_args, train, training_args
from alignkit.trainers.trl.setup import open_run, prepare

COMMAND = "kto"
RATIO_RANGE = (1.0, 4.0 / 3.0)  # Ethayarajh et al. 2024, eq. 8


def class_weights(
    n_desirable: int,
    n_undesirable: int,
    desirable_weight: float | None = None,
    undesirable_weight: float | None = None,
) -> tuple[float, float, str | None]:
    """(lambda_D, lambda_U, message or None) for these class counts.

    Given weights are kept (a missing one is 1.0), with a message when lambda_D n_D / (lambda_U n_U) falls
    outside [1, 4/3]. Without weights: (1, 1) inside the range, else the minority class gets weight
    n_majority / n_minority (ratio 1). One class only: (1, 1) and a message saying why it cannot learn much.
    """
    low, high = RATIO_RANGE
    if n_desirable == 0 or n_undesirable == 0:
        have, missing = ("desirable", "undesirable") if n_undesirable == 0 else ("undesirable", "desirable")
        return (
            desirable_weight or 1.0,
            undesirable_weight or 1.0,
            f"all {n_desirable + n_undesirable} examples are {have}: KTO has no {missing} answers to contrast "
            "with, so it can only move these answers' likelihood against a KL baseline (much like SFT); it "
            f"cannot learn what to prefer. Add {missing} examples for a real preference signal.",
        )
    if desirable_weight is not None or undesirable_weight is not None:
        lam_d, lam_u = desirable_weight or 1.0, undesirable_weight or 1.0
        ratio = lam_d * n_desirable / (lam_u * n_undesirable)
        if low <= ratio <= high:
            return lam_d, lam_u, None
        return (
            lam_d,
            lam_u,
            (
                f"lambda_D n_D / lambda_U n_U = {ratio:.2f} is outside [1, 4/3], the range Ethayarajh et al. 2024 "
                "(eq. 8) recommend; leave the weights unset to balance automatically"
            ),
        )
    ratio = n_desirable / n_undesirable
    if low <= ratio <= high:
        return 1.0, 1.0, None
    if ratio < low:
        lam_d, lam_u = round(n_undesirable / n_desirable, 4), 1.0
    else:
        lam_d, lam_u = 1.0, round(n_desirable / n_undesirable, 4)
    return (
        lam_d,
        lam_u,
        (
            f"classes are imbalanced ({n_desirable} desirable, {n_undesirable} undesirable: lambda_D n_D / lambda_U "
            f"n_U would be {ratio:.2f}, outside [1, 4/3] recommended by Ethayarajh et al. 2024, eq. 8); using "
            f"desirable_weight {lam_d:g}, undesirable_weight {lam_u:g}"
        ),
    )


def run_kto(cfg: KTOConfig) -> dict[str, Any]:
    """Train with KTO as configured; write the run dir; return (and print) the report."""
    from trl import KTOConfig as TRLKTOConfig
    from trl import KTOTrainer

    title = f"alignkit kto ({cfg.loss}, beta {cfg.beta})"
    setup = prepare(cfg, "unpaired", needs_reference=True, title=title)
    random.Random(cfg.seed).shuffle(setup.train)  # TRL reads KTO data in order (see module docstring)
    n_desirable = sum(1 for r in setup.train if r.label)
    n_undesirable = len(setup.train) - n_desirable
    lam_d, lam_u, message = class_weights(
        n_desirable, n_undesirable, cfg.desirable_weight, cfg.undesirable_weight
    )
    if message and setup.procs.main:
        one_class = n_desirable == 0 or n_undesirable == 0
        given = cfg.desirable_weight is not None or cfg.undesirable_weight is not None
        if one_class or given:  # something the user should act on
            console.warn(message)
        else:  # alignkit balanced the classes itself
            console.info(message)

    run = open_run(COMMAND, cfg, setup.procs)
    args = training_args(
        TRLKTOConfig,
        cfg,
        run,
        setup.precision,
        beta=cfg.beta,
        loss_type=cfg.loss,
        desirable_weight=lam_d,
        undesirable_weight=lam_u,
        precompute_ref_log_probs=cfg.precompute_ref,
        train_sampling_strategy="sequential",  # TRL's KL estimate pairs neighbours; we shuffled above
        **eval_args(cfg, bool(setup.eval)),
    )
    callback = RunCallback(run, setup.procs, cfg.keep_checkpoints)
    trainer = build_trainer(KTOTrainer, setup, args, callback, "unpaired", ref_model=setup.ref_model)
    result = train(trainer, callback, run, cfg, COMMAND)
    final = trainer.evaluate() if setup.eval else {}

    def fields() -> dict[str, Any]:
        return {
            "eval_loss": final.get("eval_loss"),
            "eval_examples": len(setup.eval),
            "eval_margin": final.get("eval_rewards/margins"),
            "eval_kl": final.get("eval_kl"),
            "eval_reward_desirable": final.get("eval_rewards/chosen"),
            "eval_reward_undesirable": final.get("eval_rewards/rejected"),
            "train_desirable": n_desirable,
            "train_undesirable": n_undesirable,
            "desirable_weight": lam_d,
            "undesirable_weight": lam_u,
            "balance_note": message,
            "loss": cfg.loss,
            "beta": cfg.beta,
            "reference": setup.reference,
            "trends": {
                "logps_desirable": trend(series(callback.rows, "logps/chosen")),
                "logps_undesirable": trend(series(callback.rows, "logps/rejected")),
            },
            "eval_history": callback.eval_rows[:-1] if setup.eval else [],
        }

    return conclude(COMMAND, trainer, callback, setup, run, cfg, result, fields)
