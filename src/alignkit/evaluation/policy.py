"""`alignkit eval policy`: a trained policy against its reference on the same prompts.

Both models answer every prompt (same sampling settings, same seed schedule). Then:

* **win rate** of the policy's i-th answer over the reference's i-th answer, ties half: by the pairwise
  ``--judge`` when given (both orders, position-following verdicts become ties), else by the proxy reward;
* **mean reward** and its spread for both sides, by the proxy (``--reward-model``) and, when given, by a
  held-out **gold** (``--gold-reward-model`` / ``--gold-judge``): proxy up while gold goes down is reward
  over-optimisation (Gao et al. 2022, arXiv:2210.10760);
* **KL(policy || reference)** estimated from the policy's own samples: the mean over samples of
  sum_t [log pi(y_t|x, y_<t) - log pi_ref(y_t|x, y_<t)] at the sampling temperature (the k1 estimator;
  unbiased, can be negative on few samples; Schulman 2020, "Approximating KL divergence");
* **length, truncation, repetition** and the **habits** (`alignkit.habits`) of both sides;
* with ``--refusal-prompts``, the refusal rate of both on safe prompts (over-refusal, XSTest).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alignkit import console
from alignkit.data.records import Conversation
from alignkit.errors import ConfigError, ModelError, UserError
from alignkit.evaluation.compare import (
    PointScorer,
    answer_stats,
    cluster_means,
    judge_wins,
    mean,
    score_summary,
    stderr,
    win_summary,
)
from alignkit.evaluation.policy_config import EvalPolicyConfig


def prompt_text(prompt: Conversation) -> str:
    from alignkit.feedback.judges.base import conversation_text

    return conversation_text(prompt, "user")


# ------------------------------------------------------------------------------------------ models
class Sides:
    """The policy and its reference: one PEFT model with the adapter on and off, or two models."""

    def __init__(self, cfg: EvalPolicyConfig):
        from peft import PeftModel

        from alignkit.models import registry
        from alignkit.models.device import default_device
        from alignkit.rewards.encoding import tokenizer_fingerprint
        from alignkit.sampling.run import load_policy

        self.model, self.tokenizer, self.base = load_policy(cfg)  # cfg has policy/model/dtype/trust fields
        self.model.eval()
        self.ref_model = None
        if cfg.reference is None:
            if not isinstance(self.model, PeftModel):
                raise ConfigError(
                    f"--policy {cfg.policy} has no LoRA adapter to switch off; give --reference MODEL (the model "
                    "it was trained from)"
                )
            self.reference_name = f"{self.base} (adapter disabled)"
        else:
            tokenizer = registry.load_tokenizer(cfg.reference, trust_remote_code=cfg.trust_remote_code)
            if tokenizer_fingerprint(tokenizer) != tokenizer_fingerprint(self.tokenizer):
                raise ModelError(
                    f"--reference {cfg.reference} has another tokenizer than the policy: the KL between them is "
                    "undefined; give the model the policy was trained from"
                )
            self.ref_model = registry.load_model(
                cfg.reference,
                cfg.dtype,
                cfg.trust_remote_code,
                device=default_device(),
                tokenizer=tokenizer,
            ).eval()
            self.reference_name = cfg.reference

    @contextlib.contextmanager
    def reference(self):
        """The reference model for generation and scoring."""
        if self.ref_model is not None:
            with torch.no_grad():
                yield self.ref_model
            return
        from alignkit.models.lora import reference

        with reference(self.model) as ref:
            yield ref


def sample(model, tokenizer, prompts: Sequence[Conversation], cfg: EvalPolicyConfig, seed: int):
    from alignkit.sampling.generate import SamplingSettings, generate

    settings = SamplingSettings(
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        n=cfg.n_samples,
        seed=seed,
        batch_size=cfg.batch_size,
    )
    with torch.no_grad():
        return generate(model, tokenizer, list(prompts), settings)


def kl_from_samples(
    sides: Sides, batch, temperature: float, batch_size: int = 16
) -> tuple[float, float | None]:
    """(mean, standard error) over the policy's samples of sum_t log pi - log pi_ref (k1); the error is
    over prompts (the spread of per-prompt means: a prompt's samples are not independent)."""
    from alignkit.sampling.logprobs import response_token_logps

    packed = batch.to_tensors()
    with torch.no_grad():
        policy = response_token_logps(sides.model, packed, temperature, batch_size).sum(-1)
    with sides.reference() as ref:
        reference = response_token_logps(ref, packed, temperature, batch_size).sum(-1)
    per_prompt = cluster_means((policy - reference).tolist(), [g.prompt_index for g in batch])
    return float(mean(per_prompt) or 0.0), stderr(per_prompt)


def kl_caveat(temperature: float, top_p: float) -> str | None:
    """Why the reported KL is not KL(policy || reference) of the distributions that answered, or None."""
    if temperature <= 0:
        return (
            "--temperature 0 decodes greedily: the reported KL is the log-ratio of the greedy answers under "
            "both models at temperature 1, not the KL of the (deterministic) decoding"
        )
    if top_p < 1:
        return (
            f"--top-p {top_p:g}: the reported KL is between the untruncated distributions at temperature "
            f"{temperature:g}, on nucleus samples; the KL between the truncated distributions that answered is "
            "not estimated (it is infinite wherever the policy's nucleus holds a token outside the reference's)"
        )
    return None


def sampled_kl(
    model,
    reference_ctx,
    tokenizer,
    prompts: Sequence[Conversation],
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    seed: int = 0,
) -> tuple[float, float | None]:
    """KL(policy || reference) in nats per answer from one policy sample per prompt (k1; see module doc).

    ``reference_ctx()`` is a context manager yielding the reference model (e.g. `lora.reference(model)` for a
    LoRA policy, whose reference is the base with the adapter off).
    """
    from alignkit.sampling.generate import SamplingSettings, generate
    from alignkit.sampling.logprobs import response_token_logps

    settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=temperature, n=1, seed=seed)
    with torch.no_grad():
        batch = generate(model, tokenizer, list(prompts), settings)
        packed = batch.to_tensors()
        policy = response_token_logps(model, packed, temperature).sum(-1)
        with reference_ctx() as ref:
            reference = response_token_logps(ref, packed, temperature).sum(-1)
    per_sample = (policy - reference).tolist()
    return float(mean(per_sample) or 0.0), stderr(per_sample)


# ------------------------------------------------------------------------------------------ scorers
def reward_scorer(specs, weights, combine, gate, dtype, batch_size, name="proxy") -> PointScorer:
    from alignkit.models.device import default_device
    from alignkit.rewards.encoding import as_conversation
    from alignkit.rewards.ensemble import load_reward_set

    rewards = load_reward_set(
        specs,
        weights or None,
        combine="gate" if gate else combine,
        gate=gate,
        dtype=dtype,
        forward_batch_size=batch_size,
        device=default_device(),
    )

    def score(prompts: Sequence[str], answers: Sequence[str], finished: Sequence[bool]) -> list[float]:
        out: list[float] = []
        sums: dict[str, float] = {}
        for start in range(0, len(answers), 256):
            rows = slice(start, start + 256)
            combined, per_model = rewards.score(
                [as_conversation(p) for p in prompts[rows]],
                list(answers[rows]),
                finished=list(finished[rows]),
            )
            out.extend(combined.tolist())
            for model_name, values in per_model.items():
                sums[model_name] = sums.get(model_name, 0.0) + float(values.sum())
        # each reward model's own mean, beside the combined score (weights, min and gates hide them)
        scorer.last_per_model = {k: v / max(len(answers), 1) for k, v in sums.items()}
        return out

    label = "+".join(rewards.names) if len(specs) > 1 else str(specs[0])
    scorer = PointScorer(f"{name}: {label}", score)
    return scorer


def simulated_scorer(name: str = "simulated") -> PointScorer:
    from alignkit.feedback.judges.simulated import simulated_scores

    return PointScorer(name, lambda prompts, answers, finished: simulated_scores(prompts, answers))


def make_pairwise_judge(spec: str, cfg: EvalPolicyConfig):
    from alignkit.feedback.config import JudgeConfig
    from alignkit.feedback.judge import make_judge
    from alignkit.feedback.templates import load_template

    jc = JudgeConfig(
        judge=spec,
        judge_model=cfg.judge_model,
        template=cfg.template,
        dtype=cfg.dtype,
        trust_remote_code=cfg.trust_remote_code,
    )
    jc.validate()
    return make_judge(jc, load_template(cfg.template))


# ------------------------------------------------------------------------------------------ driver
@dataclass
class Answers:
    """Both sides' answers, row i of each answering the same prompt (``prompts[i]``, as text)."""

    prompts: list[str]
    policy: list[str]
    reference: list[str]
    policy_finished: list[bool]
    reference_finished: list[bool]
    prompt_index: list[int]  # which prompt row i answers: the clusters of the win rate's standard error


def run_eval_policy(cfg: EvalPolicyConfig, reference_answers: dict | None = None) -> dict[str, Any]:
    """Answer, score and compare; print the summary and return it (also written to --output's lines).

    ``reference_answers``: a dict kept by a caller that evaluates several policies of one base on the same
    prompts (`alignkit demo`): the reference's answers are sampled once and reused, keyed by everything that
    decides them (reference, prompts, sampling settings, seed), so the result is the same as without it."""
    out_path, prompts = read_prompts(cfg)
    started = time.perf_counter()
    sides = Sides(cfg)

    console.info(f"answering {len(prompts)} prompts x {cfg.n_samples} with the policy and the reference")
    policy_batch = sample(sides.model, sides.tokenizer, prompts, cfg, cfg.seed)
    key = _reference_key(sides, prompts, cfg)
    if reference_answers is not None and key in reference_answers:
        reference_batch = reference_answers[key]
        console.info("the reference's answers: reused from an earlier evaluation with the same settings")
    else:
        with sides.reference() as ref:
            reference_batch = sample(ref, sides.tokenizer, prompts, cfg, cfg.seed)
        if reference_answers is not None:
            reference_answers[key] = reference_batch
    kl, kl_err = kl_from_samples(sides, policy_batch, cfg.temperature)
    answers = Answers(
        prompts=[prompt_text(prompts[g.prompt_index]) for g in policy_batch],
        policy=[g.text for g in policy_batch],
        reference=[g.text for g in reference_batch],
        policy_finished=[g.finished for g in policy_batch],
        reference_finished=[g.finished for g in reference_batch],
        prompt_index=[g.prompt_index for g in policy_batch],
    )

    result: dict[str, Any] = {
        "policy": cfg.policy,
        "reference": sides.reference_name,
        "prompts": len(prompts),
        "answers": len(answers.policy),
        "temperature": cfg.temperature,
        "kl": kl,
        "kl_stderr": kl_err,
        "kl_is_sampling_kl": kl_caveat(cfg.temperature, cfg.top_p) is None,
        "kl_note": kl_caveat(cfg.temperature, cfg.top_p),
    }
    if result["kl_note"]:
        console.warn(result["kl_note"])
    proxy = None
    if cfg.reward_model:
        proxy = reward_scorer(
            cfg.reward_model, cfg.reward_weight, cfg.combine, cfg.gate, cfg.dtype, cfg.score_batch_size
        )
    gold = gold_scorer(cfg)
    rows = score_sides(result, answers, proxy, gold)
    judge_sides(result, answers, cfg, gold_scored=gold is not None)

    pol_stats = answer_stats(answers.policy, [g.response_ids for g in policy_batch], answers.policy_finished)
    ref_stats = answer_stats(
        answers.reference, [g.response_ids for g in reference_batch], answers.reference_finished
    )
    result["mean_length"] = pol_stats["mean_length"]
    result["policy_stats"] = pol_stats
    result["reference_stats"] = ref_stats

    if cfg.refusal_prompts:
        result["over_refusal"] = over_refusal(sides, cfg)

    result["seconds"] = round(time.perf_counter() - started, 2)
    if out_path is not None:
        write_answers(out_path, answers.prompts, answers.policy, answers.reference, rows)
        result["output"] = str(out_path)
    from alignkit.reports.policy import show_policy_eval

    show_policy_eval(result, answers.prompts, answers.policy, answers.reference, rows, cfg.show)
    return result


def _reference_key(sides: Sides, prompts: Sequence[Conversation], cfg: EvalPolicyConfig) -> str:
    """Everything the reference's sampled answers depend on, as one string."""
    import json

    settings = [
        cfg.n_samples,
        cfg.max_new_tokens,
        cfg.temperature,
        cfg.top_p,
        cfg.seed,
        cfg.dtype,
        cfg.batch_size,
    ]
    conversations = [[m.to_dict() for m in p] for p in prompts]
    return json.dumps([sides.reference_name, settings, conversations])


def read_prompts(cfg: EvalPolicyConfig) -> tuple[Path | None, list[Conversation]]:
    """Validate ``cfg``, check that --output may be written, and read --prompts: (output path, prompts)."""
    from alignkit.data.load import load_records

    cfg.validate()
    out_path = Path(cfg.output).expanduser() if cfg.output else None
    if out_path is not None and out_path.exists() and not cfg.overwrite:
        raise UserError(
            f"{out_path} already exists; pass --overwrite to replace it or choose another --output"
        )
    loaded = load_records(
        cfg.prompts, kind="prompt", format=cfg.format, skip_invalid=cfg.skip_invalid, limit=cfg.limit
    )
    prompts = [r.prompt for r in loaded.records]
    if not prompts:
        raise UserError(f"{cfg.prompts}: no prompts to answer")
    return out_path, prompts


def gold_scorer(cfg: EvalPolicyConfig) -> PointScorer | None:
    """The held-out gold scorer: --gold-reward-model, or the simulated --gold-judge (None otherwise)."""
    if cfg.gold_reward_model:
        return reward_scorer(cfg.gold_reward_model, [], "sum", None, cfg.dtype, cfg.score_batch_size, "gold")
    if cfg.gold_judge and cfg.gold_judge.strip().lower() == "simulated":
        return simulated_scorer("gold: simulated")
    return None


def score_sides(
    result: dict[str, Any], answers: Answers, proxy: PointScorer | None, gold: PointScorer | None
) -> dict[str, Any]:
    """Score both sides with the proxy and the gold scorer into ``result``; the per-answer scores by role."""
    rows: dict[str, Any] = {}
    for role, scorer in (("proxy", proxy), ("gold", gold)):
        if scorer is None:
            continue
        p_scores = scorer.score(answers.prompts, answers.policy, answers.policy_finished)
        p_models = scorer.last_per_model
        r_scores = scorer.score(answers.prompts, answers.reference, answers.reference_finished)
        rows[role] = (p_scores, r_scores)
        result[role] = score_summary(scorer.name, p_scores, r_scores, answers.prompt_index)
        if p_models is not None and scorer.last_per_model is not None:
            result[role]["per_model"] = {
                k: {"policy": p_models[k], "reference": scorer.last_per_model[k]} for k in p_models
            }
    if proxy is not None:
        result["mean_reward"] = result["proxy"]["mean"]
        result["reward_std"] = result["proxy"]["std"]
        result["reference_mean_reward"] = result["proxy"]["reference_mean"]
    else:
        result["mean_reward"] = None
    return rows


def judge_sides(result: dict[str, Any], answers: Answers, cfg: EvalPolicyConfig, gold_scored: bool) -> None:
    """The win rate into ``result``: by --judge, else by the proxy; and a pairwise --gold-judge's win rate
    when no gold scorer (``gold_scored``) gave one."""
    texts, pol, ref_texts = answers.prompts, answers.policy, answers.reference
    if cfg.judge:
        if cfg.judge.strip().lower() == "simulated":
            sim = simulated_scorer()
            wins_scores = score_summary(
                sim.name,
                sim.score(texts, pol, answers.policy_finished),
                sim.score(texts, ref_texts, answers.reference_finished),
                answers.prompt_index,
            )
            result["judge"] = {
                "judge": "simulated",
                "win_rate": wins_scores["win_rate"],
                "win_rate_stderr": wins_scores["win_rate_stderr"],
            }
        else:
            wins = judge_wins(make_pairwise_judge(cfg.judge, cfg), texts, pol, ref_texts, cfg.seed, swap=True)
            result["judge"] = {"judge": cfg.judge, **_judged(wins, answers.prompt_index, "--judge")}
        result["win_rate"] = result["judge"]["win_rate"]
        result["win_rate_by"] = f"judge: {cfg.judge}"
    else:
        result["win_rate"] = result["proxy"]["win_rate"]
        result["win_rate_by"] = result["proxy"]["scorer"]
    if cfg.gold_judge and not gold_scored:  # an LM or HTTP gold judge: pairwise only
        wins = judge_wins(
            make_pairwise_judge(cfg.gold_judge, cfg), texts, pol, ref_texts, cfg.seed + 1, swap=True
        )
        result["gold"] = {
            "scorer": f"gold: {cfg.gold_judge}",
            **_judged(wins, answers.prompt_index, "--gold-judge"),
        }


def _judged(wins: list[float | None], prompt_index: list[int], option: str) -> dict[str, Any]:
    """`win_summary` of a pairwise judge's wins; a warning when some verdicts could not be parsed."""
    summary = win_summary(wins, prompt_index)
    if summary["unparsed"]:
        console.warn(
            f"{option}: {summary['unparsed']} of {len(wins)} verdicts could not be parsed; they are left out of "
            "the win rate (counted as `unparsed`)"
        )
    return summary


def over_refusal(sides: Sides, cfg: EvalPolicyConfig) -> dict[str, Any]:
    """Refusal rate of both models on --refusal-prompts (prompts a model should answer)."""
    from alignkit.data.load import load_records
    from alignkit.habits.refusal import is_refusal

    loaded = load_records(
        cfg.refusal_prompts, kind="prompt", skip_invalid=cfg.skip_invalid, fallback_format=cfg.format
    )
    prompts = [r.prompt for r in loaded.records]
    if not prompts:
        raise UserError(f"{cfg.refusal_prompts}: no prompts")
    pol = sample(sides.model, sides.tokenizer, prompts, cfg, cfg.seed + 7)
    with sides.reference() as ref:
        base = sample(ref, sides.tokenizer, prompts, cfg, cfg.seed + 7)
    rate = lambda batch: mean([float(is_refusal(g.text)) for g in batch])  # noqa: E731
    return {"prompts": len(prompts), "policy": rate(pol), "reference": rate(base)}


def write_answers(path: Path, prompts, policy, reference, rows: dict[str, Any]) -> None:
    import json

    from alignkit.files import atomic_write_text

    lines = []
    for i, (p, a, b) in enumerate(zip(prompts, policy, reference, strict=True)):
        line: dict[str, Any] = {"prompt": p, "policy": a, "reference": b}
        for role, (ps, rs) in rows.items():
            line[f"{role}_policy"], line[f"{role}_reference"] = ps[i], rs[i]
        lines.append(json.dumps(line, ensure_ascii=False))
    atomic_write_text(path, "\n".join(lines) + "\n")
