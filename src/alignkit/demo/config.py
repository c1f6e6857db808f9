"""Options of `alignkit demo` and `alignkit data demo`."""

from __future__ import annotations

from dataclasses import dataclass

from alignkit.config import DEFAULT_MODEL
from alignkit.errors import ConfigError

STAGES = ("prompts", "candidates", "labels", "rm", "best_of_n", "dpo", "ppo", "grpo", "evaluate", "plots")


@dataclass
class DemoConfig:
    """`alignkit demo`: the whole stage-three pipeline on the embedded default model and demo data."""

    output: str = "runs/demo"
    """Where every stage writes (one sub-directory or file per stage)."""
    model: str = DEFAULT_MODEL
    """The base model every stage starts from."""
    stage: str | None = None
    """Run only this stage (its inputs must exist): prompts, candidates, labels, rm, best_of_n, dpo, ppo, grpo,
    evaluate, plots."""
    redo: bool = False
    """Run the stages even when their results exist (with --stage: that stage only)."""
    eval_prompts: int = 120
    """Held-out prompts that every method answers in the final comparison (2 answers each from every method
    and the base: a win rate's standard error of about 0.035)."""
    candidate_prompts: int = 160
    """Training prompts the base model answers for the annotator to label (every pair of their answers)."""
    candidates: int = 5
    """Answers sampled per labelled prompt for the simulated annotator to compare (K answers: K(K-1)/2 pairs,
    as InstructGPT collected rankings of K answers; Ouyang et al. 2022, sec. 3.5)."""
    tie_margin: float = 0.25
    """The simulated annotator calls a pair a tie ("about the same") when their gold scores differ by this much
    or less; ties train nothing and are not scored (`alignkit judge --tie-margin`)."""
    system_prompt: str = "Answer in two or three sentences."
    """The system message of every demo prompt (the deployment's instruction; "" for none)."""
    max_new_tokens: int = 96
    """Most tokens per answer, in every stage."""
    rm_eval_fraction: float = 0.25
    """Share of the training prompts whose labelled pairs are held out to measure the reward model (and DPO)."""
    rm_steps: int = 90
    """Reward-model optimizer steps."""
    best_of_n: int = 8
    """N of the best-of-n stage."""
    dpo_steps: int = 20
    """DPO optimizer steps."""
    ppo_steps: int = 12
    """PPO iterations (rollout + update)."""
    ppo_kl_target: float = 1.0
    """Target KL (nats per response) of PPO's adaptive KL controller."""
    grpo_steps: int = 12
    """GRPO iterations (rollout + update)."""
    grpo_prompts: int = 4
    """Prompts per GRPO rollout."""
    grpo_group_size: int = 8
    """Answers per prompt in a GRPO group."""
    grpo_mini_batches: int = 4
    """Optimizer steps per GRPO rollout (TRL's steps_per_generation): as many policy updates per rollout as
    PPO's 4 epochs make, at one extra forward pass for the old log-probabilities."""
    temperature: float = 0.7
    """Sampling temperature of every stage (candidates, best-of-n, PPO and GRPO rollouts, the comparison)."""
    eval_samples: int = 2
    """Answers per held-out prompt from each method in the comparison."""
    batch_size: int = 8
    """Pairs per optimizer step (rm; dpo as 1-pair micro-batches accumulated) and prompts per PPO rollout."""
    max_length: int = 256
    """Longest prompt + answer in tokens for training."""
    seed: int = 0
    """Seed of every stage."""
    json: bool = False
    """Print the comparison table as one JSON object on stdout at the end."""

    def validate(self) -> None:
        if self.stage is not None and self.stage not in STAGES:
            raise ConfigError(f"--stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        for name in (
            "eval_prompts",
            "candidate_prompts",
            "max_new_tokens",
            "rm_steps",
            "best_of_n",
            "dpo_steps",
            "ppo_steps",
            "grpo_steps",
            "grpo_prompts",
            "grpo_mini_batches",
            "eval_samples",
            "batch_size",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.candidates < 2:
            raise ConfigError(
                f"--candidates must be at least 2 (the annotator compares pairs), got {self.candidates}"
            )
        if self.tie_margin < 0:
            raise ConfigError(f"--tie-margin must be >= 0, got {self.tie_margin}")
        if not 0 < self.rm_eval_fraction < 1:
            raise ConfigError(f"--rm-eval-fraction must be in (0, 1), got {self.rm_eval_fraction}")
        if self.grpo_group_size < 2:
            raise ConfigError(
                f"--grpo-group-size must be at least 2 (a group's mean needs two), got {self.grpo_group_size}"
            )
        if (self.grpo_prompts * self.grpo_group_size) % self.grpo_mini_batches:
            raise ConfigError(
                f"--grpo-mini-batches ({self.grpo_mini_batches}) must divide the answers of a GRPO rollout "
                f"(--grpo-prompts x --grpo-group-size = {self.grpo_prompts * self.grpo_group_size})"
            )
        if self.temperature <= 0:
            raise ConfigError(f"--temperature must be > 0 (the methods sample), got {self.temperature}")
        if self.ppo_kl_target <= 0:
            raise ConfigError(f"--ppo-kl-target must be > 0, got {self.ppo_kl_target}")


@dataclass
class DemoDataConfig:
    """`alignkit data demo`: the small demo data set shipped with alignkit."""

    output: str = "runs/demo-data"
    """Folder to write demo_pairs.jsonl and demo_prompts.jsonl into (default: runs/demo-data)."""
