"""`alignkit demo`: the whole stage-three pipeline, on the embedded default model, in minutes on a CPU.

Each stage is an ordinary alignkit command (shown as it runs, so it can be re-run alone) or a few lines of
glue; each writes its own file or run directory under ``--output`` and is skipped when that result exists,
so an interrupted demo continues where it stopped.

1. prompts     the embedded demo prompts, split into training prompts and held-out evaluation prompts
2. candidates  `alignkit sample`: the base model answers each training prompt several times
3. labels      `alignkit judge --judge simulated`: the simulated annotator (a documented rule standing in
               for people, `alignkit.feedback.judges.simulated`) picks the better answer of pairs of candidates
4. rm          `alignkit rm`: a reward model learns those labels; its report holds held-out pair accuracy
5. best_of_n   `alignkit sample --best-of-n`: N answers per evaluation prompt, the reward model keeps one
6. dpo         `alignkit dpo`: the policy learns from the same labels directly, with no reward model
7. ppo         `alignkit ppo`: the policy learns against the reward model with a KL penalty
8. grpo        `alignkit grpo`: the same, critic-free: G answers per prompt, each against its group's mean
9. evaluate    every method answers the held-out prompts; the simulated annotator is the gold judge, the
               reward model the proxy; one table: win rate versus base, gold score, proxy score, KL
10. plots      `alignkit plot` of the runs and the best-of-n file
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit import console
from alignkit.config import DEFAULT_MODEL
from alignkit.demo.config import STAGES, DemoConfig
from alignkit.demo.data import all_demo_prompts, is_tie
from alignkit.demo.layout import Layout
from alignkit.errors import ConfigError, TrainingError, UserError
from alignkit.files import atomic_write_json, atomic_write_text

RUN_COMMANDS = ("rm", "dpo", "ppo", "grpo")  # stages that write a run directory (checkpoints, --resume)
MONITOR_PROMPTS = 24  # held-out prompts PPO and GRPO score during training (the final comparison uses all)


@dataclass
class Stage:
    name: str
    title: str
    done: Path  # exists once the stage has finished
    run: Callable[[], None]
    command: list[str] | None = None  # the alignkit command the stage runs (None: glue in this module)
    output: Path | None = None  # a run directory the stage writes (cleared by --redo, resumed after a stop)


Runner = Callable[[list[str]], int]  # runs one `alignkit` command line, returns its exit status


class Demo(Layout):
    """The demo's stages over its `Layout`; ``runner`` runs each stage's command line."""

    def __init__(self, cfg: DemoConfig, runner: Runner):
        super().__init__(cfg)
        self.runner = (
            runner  # the CLI's `main`, handed down by `alignkit demo` (the demo never imports the CLI)
        )

    # ----------------------------------------------------------------------------------- stages
    def stages(self) -> list[Stage]:
        """Every stage in order; the command stages' argument lists are built by the methods below."""
        return [
            Stage("prompts", "write the demo prompts", self.eval_prompts, self.write_prompts),
            self._candidates_stage(),
            self._labels_stage(),
            self._rm_stage(),
            self._best_of_n_stage(),
            self._dpo_stage(),
            self._ppo_stage(),
            self._grpo_stage(),
            Stage(
                "evaluate",
                "every method against the base model on held-out prompts",
                self.results,
                self.evaluate,
            ),
            self._plots_stage(),
        ]

    def _common(self) -> list[str]:
        """The options every model stage ends with: the base model and the seed."""
        return ["--model", self.cfg.model, "--seed", str(self.cfg.seed)]

    def _candidates_stage(self) -> Stage:
        c = self.cfg
        return self.command_stage(
            "candidates",
            "the base model answers the labelled training prompts (alignkit sample)",
            self.candidates,
            [
                "sample",
                "--prompts",
                str(self.candidate_prompts),
                "--n-samples",
                str(c.candidates),
                "--max-new-tokens",
                str(c.max_new_tokens),
                "--temperature",
                str(c.temperature),
                "--output",
                str(self.candidates),
                "--overwrite",
                *self._common(),
            ],
            after=self.write_pair_items,
        )

    def _labels_stage(self) -> Stage:
        return self.command_stage(
            "labels",
            "the simulated annotator labels pairs of answers (alignkit judge)",
            self.labels,
            [
                "judge",
                "--data",
                str(self.pair_items),
                "--judge",
                "simulated",
                "--tie-margin",
                str(self.cfg.tie_margin),
                "--output",
                str(self.labels),
                "--seed",
                str(self.cfg.seed),
            ],
            after=self.split_labels,
            marker=self.out / "labels.done",
        )

    def _rm_stage(self) -> Stage:
        c = self.cfg
        return self.command_stage(
            "rm",
            "train a reward model on the labels (alignkit rm)",
            self.rm / "report.json",
            [
                "rm",
                "--data",
                str(self.labels_train),
                "--eval-data",
                str(self.labels_eval),
                "--max-steps",
                str(c.rm_steps),
                "--batch-size",
                str(c.batch_size),
                "--max-length",
                str(c.max_length),
                "--lr",
                "3e-4",
                "--save-every",
                str(max(10, c.rm_steps // 2)),
                "--no-compile",  # tens of seconds of compiling would not pay off in a few dozen steps
                "--output",
                str(self.rm),
                *self._common(),
            ],
        )

    def _best_of_n_stage(self) -> Stage:
        c = self.cfg
        return self.command_stage(
            "best_of_n",
            f"best-of-{c.best_of_n} with the reward model (alignkit sample)",
            self.bon,
            [
                "sample",
                "--prompts",
                str(self.eval_prompts),
                "--best-of-n",
                str(c.best_of_n),
                "--reward-model",
                str(self.rm),
                "--max-new-tokens",
                str(c.max_new_tokens),
                "--temperature",
                str(c.temperature),
                "--output",
                str(self.bon),
                "--overwrite",
                *self._common(),
            ],
        )

    def _dpo_stage(self) -> Stage:
        c = self.cfg
        return self.command_stage(
            "dpo",
            "DPO on the labels, no reward model (alignkit dpo)",
            self.dpo / "report.json",
            [
                "dpo",
                "--data",
                str(self.labels_train),
                "--eval-data",
                str(self.labels_eval),
                "--max-steps",
                str(c.dpo_steps),
                "--batch-size",
                "1",  # one pair per forward, accumulated: no padding to the longer pair (faster on a CPU)
                "--grad-accum",
                str(c.batch_size),
                "--max-length",
                str(c.max_length),
                "--lr",
                "3e-4",
                "--save-every",
                str(max(10, c.dpo_steps // 2)),
                "--output",
                str(self.dpo),
                *self._common(),
            ],
        )

    def _ppo_stage(self) -> Stage:
        c = self.cfg
        return self.command_stage(
            "ppo",
            "PPO against the reward model with a KL penalty (alignkit ppo)",
            self.ppo / "report.json",
            [
                "ppo",
                "--prompts",
                str(self.train_prompts),
                "--reward-model",
                str(self.rm),
                "--max-steps",
                str(c.ppo_steps),
                "--batch-size",
                str(c.batch_size),
                "--max-new-tokens",
                str(c.max_new_tokens),
                "--adaptive-kl",
                "--kl-target",
                str(c.ppo_kl_target),
                "--kl-horizon",
                "32",
                "--kl-coef",
                "0.1",
                "--temperature",
                str(c.temperature),
                "--gold-judge",
                "simulated",
                "--lr",
                "1e-4",
                "--eval-data",
                str(self.monitor_prompts),
                "--eval-every",
                str(max(1, c.ppo_steps // 3)),
                "--save-every",
                str(max(5, c.ppo_steps // 2)),
                "--output",
                str(self.ppo),
                *self._common(),
            ],
        )

    def _grpo_stage(self) -> Stage:
        c = self.cfg
        return self.command_stage(
            "grpo",
            "GRPO against the reward model, no value model (alignkit grpo)",
            self.grpo / "report.json",
            [
                "grpo",
                "--prompts",
                str(self.train_prompts),
                "--reward-model",
                str(self.rm),
                "--max-steps",
                str(c.grpo_steps),
                "--batch-size",
                str(c.grpo_prompts),
                "--group-size",
                str(c.grpo_group_size),
                "--num-mini-batches",
                str(c.grpo_mini_batches),
                "--max-new-tokens",
                str(c.max_new_tokens),
                "--temperature",
                str(c.temperature),
                "--gold-judge",
                "simulated",
                "--eval-data",
                str(self.monitor_prompts),
                "--eval-split",
                "0",
                "--eval-every",
                str(max(1, c.grpo_steps // 3)),
                "--eval-samples",
                "1",
                "--save-every",
                str(max(5, c.grpo_steps // 2)),
                "--output",
                str(self.grpo),
                *self._common(),
            ],
        )

    def _plots_stage(self) -> Stage:
        return self.command_stage(
            "plots",
            "figures (alignkit plot)",
            self.plots / "plots.done",
            [
                "plot",
                str(self.rm),
                str(self.dpo),
                str(self.ppo),
                str(self.grpo),
                str(self.bon),
                "--output",
                str(self.plots),
            ],
            marker=self.plots / "plots.done",
        )

    def command_stage(self, name, title, done, args, after=None, marker=None) -> Stage:
        output = Path(args[args.index("--output") + 1]) if args[0] in RUN_COMMANDS else None

        def run() -> None:
            import shutil

            argv = list(args)
            if output is not None and output.exists():
                if self.cfg.redo:
                    shutil.rmtree(output)  # the demo's own run dir: --redo starts the stage afresh
                elif (output / "config.yaml").exists():
                    argv.append("--resume")  # stopped inside this stage: continue from its last checkpoint
            console.info("$ alignkit " + " ".join(_quote(a) for a in argv))
            rc = self.runner(argv)
            if rc != 0:
                raise (StageFailed if rc == 2 else StageCrashed)(
                    name, f"`alignkit {args[0]}` exited with status {rc}"
                )
            if after is not None:
                after()
            if marker is not None:
                marker.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(marker, time.strftime("%Y-%m-%dT%H:%M:%S\n"))

        return Stage(name, title, marker or done, run, list(args), output)

    # ------------------------------------------------------------------------------------- glue
    def write_prompts(self) -> None:
        from alignkit.demo.data import demo_prompt_sets

        train, held = demo_prompt_sets(self.cfg.eval_prompts)
        monitor = held[:: max(1, len(held) // MONITOR_PROMPTS)][:MONITOR_PROMPTS]
        labelled = train[:: max(1, len(train) // self.cfg.candidate_prompts)][: self.cfg.candidate_prompts]
        system = [{"role": "system", "content": self.cfg.system_prompt}] if self.cfg.system_prompt else []
        files = (
            (self.train_prompts, train),
            (self.candidate_prompts, labelled),
            (self.eval_prompts, held),
            (self.monitor_prompts, monitor),
        )
        for path, prompts in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = [{"prompt": [*system, {"role": "user", "content": p}]} for p in prompts]
            atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
        console.info(
            f"{len(train)} training prompts, {len(held)} held-out prompts -> {self.train_prompts.parent}"
        )

    def write_pair_items(self) -> None:
        """Each prompt's K candidates become every one of their K(K-1)/2 pairs for the annotator."""
        lines = []
        for raw in self.candidates.read_text().splitlines():
            row = json.loads(raw)
            texts = [c["text"] for c in row["candidates"]]
            for i in range(len(texts)):
                for j in range(i + 1, len(texts)):
                    a, b = texts[i], texts[j]
                    if a.strip() and b.strip() and a != b:
                        lines.append(json.dumps({"prompt": row["prompt"], "candidates": [a, b]}))
        atomic_write_text(self.pair_items, "\n".join(lines) + "\n")

    def split_labels(self) -> None:
        """Split the labels by prompt: ``rm_eval_fraction`` of the prompts' pairs are held out for the reward
        model's (and DPO's) evaluation, so no held-out pair shares an answer, or a prompt, with a training pair."""
        import random

        lines = [line for line in self.labels.read_text().splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]
        keys = [_prompt_key(record) for record in records]
        prompts = sorted({k for k in keys if k is not None})
        random.Random(self.cfg.seed).shuffle(prompts)
        held = set(prompts[: max(1, round(self.cfg.rm_eval_fraction * len(prompts)))])
        train = [line for line, key in zip(lines, keys, strict=True) if key not in held]
        evals = [line for line, key in zip(lines, keys, strict=True) if key in held]
        atomic_write_text(self.labels_train, "\n".join(train) + "\n")
        atomic_write_text(self.labels_eval, "\n".join(evals) + "\n")
        ties = [is_tie(record) for record in records]
        held_ties = sum(t for t, key in zip(ties, keys, strict=True) if key in held)
        console.info(
            f"{len(train) - (sum(ties) - held_ties)} training pairs, {len(evals) - held_ties} held-out pairs "
            f"({len(held)} prompts); {sum(ties)} ties (scores within --tie-margin) left out"
        )

    def evaluate(self) -> None:
        from alignkit.demo.compare import evaluate_methods

        result = evaluate_methods(self)
        atomic_write_json(self.results, result)

    # -------------------------------------------------------------------------------------- driver
    def run(self) -> dict[str, Any]:
        if self.cfg.model == DEFAULT_MODEL:
            from alignkit.models.default import prepare_default

            prepare_default()  # convert the embedded GGUF once (cached), before the first stage needs it
        stages = self.stages()
        chosen = [s for s in stages if self.cfg.stage in (None, s.name)]
        started = time.perf_counter()
        timings: dict[str, float] = {}
        for stage in chosen:
            if stage.done.exists() and not self.cfg.redo:
                console.info(f"== {stage.name}: done already ({stage.done})")
                continue
            console.rule(f"{stage.name}: {stage.title}")
            t0 = time.perf_counter()
            try:
                stage.run()
            except (StageFailed, StageCrashed):
                raise
            except UserError as e:
                raise StageFailed(stage.name, str(e)) from e
            except Exception as e:
                raise StageCrashed(stage.name, f"{type(e).__name__}: {e}") from e
            timings[stage.name] = round(time.perf_counter() - t0, 1)
        if not self.results.exists():
            return {"stages": timings}
        result = json.loads(self.results.read_text())
        result["stage_seconds"] = timings
        result["seconds"] = round(time.perf_counter() - started, 1)
        from alignkit.reports.demo import show_table

        show_table(result)
        return result


def _prompt_key(event: dict[str, Any]) -> str | None:
    """The prompt of a label-file event (a label, or a tie's ``tied`` pair) as a comparable string."""
    prompt = event.get("prompt", (event.get("tied") or {}).get("prompt"))
    return None if prompt is None else json.dumps(prompt, sort_keys=True)


def _stage_message(stage: str, why: str) -> str:
    return (
        f"demo stage '{stage}' failed: {why}; re-run that stage alone with "
        f"`alignkit demo --stage {stage} --redo` (or re-run `alignkit demo` to continue)"
    )


class StageFailed(UserError):
    """A stage failed on bad input (exit 2): say which, and how to run it alone."""

    def __init__(self, stage: str, why: str):
        super().__init__(_stage_message(stage, why))


class StageCrashed(TrainingError):
    """A stage failed inside (exit 1): say which, and how to run it alone."""

    def __init__(self, stage: str, why: str):
        super().__init__(_stage_message(stage, why))


def _quote(arg: str) -> str:
    return arg if arg and all(ch.isalnum() or ch in "-_./=:" for ch in arg) else json.dumps(arg)


def run_demo(cfg: DemoConfig, runner: Runner) -> dict[str, Any]:
    """Run (or continue) the demo; ``runner`` runs each stage's command line (the CLI's ``main``)."""
    cfg.validate()
    total = len(all_demo_prompts())
    if cfg.eval_prompts >= total:
        raise ConfigError(
            f"--eval-prompts must be below the {total} demo prompts (the rest train), got {cfg.eval_prompts}"
        )
    if cfg.stage is not None and cfg.stage not in STAGES:  # validate() says so; kept for type checkers
        raise UserError(f"unknown stage {cfg.stage}")
    return Demo(cfg, runner).run()
