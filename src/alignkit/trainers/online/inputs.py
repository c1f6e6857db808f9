"""What an online run reads besides the models: its prompts, its judges as reward sources, its gold scorer.

Used by `trainers.online.loop` at set-up.
"""

from __future__ import annotations

from typing import Any

from alignkit import console
from alignkit.data.records import Record
from alignkit.errors import UserError
from alignkit.trainers.online.config import OnlineConfig


def judge_members(cfg: OnlineConfig) -> list[Any]:
    """`RewardSet` members for --reward-judge: `simulated` pointwise, any other judge as a win rate."""
    from alignkit.feedback.config import JudgeConfig
    from alignkit.feedback.judge import make_judge
    from alignkit.feedback.templates import load_template
    from alignkit.rewards.ensemble import unique_names
    from alignkit.rewards.judges import judge_member

    members = []
    names = unique_names(
        ["simulated" if s.strip().lower() == "simulated" else "judge" for s in cfg.reward_judge]
    )
    for i, (spec, name) in enumerate(zip(cfg.reward_judge, names, strict=True)):
        weight = cfg.reward_judge_weight[i] if cfg.reward_judge_weight else 1.0
        if spec.strip().lower() == "simulated":
            members.append(judge_member(None, name, weight))
            continue
        jc = JudgeConfig(
            judge=spec, judge_model=cfg.judge_model, template=cfg.judge_template, dtype=cfg.dtype,
            trust_remote_code=cfg.trust_remote_code,
        )  # fmt: skip
        jc.validate()
        members.append(
            judge_member(make_judge(jc, load_template(cfg.judge_template)), name, weight, cfg.judge_swap)
        )
    return members


def load_prompts(cfg: OnlineConfig, main: bool = True) -> tuple[list[Record], list[Record]]:
    """(train prompts, eval prompts) as prompt records; the main process says when a file holds more than prompts.

    A record keeps its other columns (``meta``: a reference answer, IFEval's instructions, ...): reward
    functions receive them as keyword lists."""
    from alignkit.data.load import load_records, split_records

    if not cfg.prompts:
        raise UserError(
            "no prompts: pass --prompts FILE (one prompt per record; any format `data inspect` reads)"
        )
    loaded = load_records(cfg.prompts, kind="prompt", format=cfg.format, skip_invalid=cfg.skip_invalid)
    if main:
        say_prompts_of(loaded)
    train = loaded.records
    evals: list[Any] = []
    if cfg.eval_data:
        loaded = load_records(
            cfg.eval_data, kind="prompt", skip_invalid=cfg.skip_invalid, fallback_format=cfg.format
        )
        if main:
            say_prompts_of(loaded)
        evals = loaded.records
    elif cfg.eval_split > 0:
        train, evals = split_records(train, cfg.eval_split, cfg.seed)
    return train, evals


def say_prompts_of(loaded: Any) -> None:
    """One info line when a prompt file holds more than prompts (pairs, SFT data): only their prompts are used."""
    if loaded.source_kind != "prompt":
        console.info(
            f"{loaded.path} holds {loaded.source_kind} data (format {loaded.format}): using its "
            f"{len(loaded.records)} prompts; the answers in it are not used"
        )


def gold_scorer(cfg: OnlineConfig):
    """The held-out gold scorer of --gold-reward-model / --gold-judge simulated, or None."""
    from alignkit.evaluation.policy import reward_scorer, simulated_scorer

    if cfg.gold_reward_model:
        return reward_scorer(
            cfg.gold_reward_model, [], "sum", None, cfg.dtype, cfg.forward_batch_size, "gold"
        )
    if cfg.gold_judge is not None:
        return simulated_scorer("gold: simulated")
    return None


__all__ = ["gold_scorer", "judge_members", "load_prompts"]
