"""`alignkit export`: any alignkit run -> a standalone Hugging Face checkpoint that loads without alignkit.

What the run directory holds decides what is written (`inspect_run`):

- a reward model (`alignkit rm`: ``reward_model/``, or a dir whose ``alignkit_model.json`` has kind
  ``reward``) -> ``AutoModelForSequenceClassification`` (one label): adapter merged, head as ``score``
  (`alignkit.rewards.model.export_reward_model`);
- a policy LoRA adapter (dpo, kto, sft, ppo: ``adapter_config.json`` in the run dir) ->
  ``AutoModelForCausalLM``: the adapter merged into the base in fp32 (`models.merge.merge_adapter_run`);
- full weights trained with ``--no-lora`` (dpo/kto/sft: ``config.json`` in the run dir; ppo:
  ``policy/config.json``) -> the checkpoint's files copied, nothing to merge.

A checkpoint that is not inside a run (e.g. an earlier export, or ``RUN/merged``) is already standalone and
is refused with a message saying so. Nothing is written unless the whole export succeeds (`atomic_dir`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.errors import ConfigError, UserError

RUN_CONFIG = "config.yaml"  # written by `Run.create`: marks a run directory
# The files of a Hugging Face checkpoint (model + tokenizer); everything else in a run dir is alignkit's.
CHECKPOINT_FILES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "chat_template.jinja",
        "chat_template.json",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
    }
)
CHECKPOINT_SUFFIXES = (".safetensors", ".safetensors.index.json")
EXPECTED = (
    "expected an alignkit run dir: `alignkit rm` (reward_model/), or dpo/kto/sft/ppo "
    "(adapter_config.json, or config.json for a --no-lora run)"
)


@dataclass
class ExportConfig:
    """`alignkit export`: write a trained model (any run) as a plain transformers checkpoint."""

    run: str = ""
    """An alignkit run dir: `alignkit rm` (or its reward_model/ dir), dpo, kto, sft or ppo."""
    output: str = ""
    """Directory to write: a standalone checkpoint that transformers' from_pretrained loads."""
    overwrite: bool = False
    """Replace `output` if it exists."""
    json: bool = False
    """Print a one-object JSON summary on stdout."""

    def validate(self) -> None:
        if not self.output:
            raise ConfigError("--output is required: the directory to write the checkpoint into")


@dataclass(frozen=True)
class RunContents:
    """What `inspect_run` found: how to export it and from which folder."""

    kind: str  # "reward" | "adapter" (a policy LoRA adapter) | "full" (a causal LM's full weights)
    folder: Path  # what is exported: the reward model dir, the adapter dir, or the checkpoint dir
    trainer: str  # the command that trained it, when known ("rm", "dpo", "ppo", ...), else ""


def _is_checkpoint(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def inspect_run(path: str | os.PathLike) -> RunContents:
    """Classify ``path`` (see the module docstring); `UserError` naming what was expected otherwise."""
    from alignkit.models import registry
    from alignkit.rewards.model import REWARD_DIR, _is_sequence_classifier

    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such directory; {EXPECTED}")
    rm_run = (folder / REWARD_DIR).is_dir()
    reward = folder / REWARD_DIR if rm_run else folder
    meta = registry.read_model_meta(reward)
    if rm_run or meta.get("kind") == "reward":
        if _is_sequence_classifier(reward):
            raise UserError(
                f"{reward} is already a standalone AutoModelForSequenceClassification checkpoint: load it "
                "with from_pretrained, there is nothing to export"
            )
        return RunContents("reward", reward, "rm")
    trainer = str(meta.get("trainer", ""))
    if (folder / "value_head.safetensors").is_file():
        raise UserError(
            f"{folder} is a PPO value model (adapter + value head), not a policy: export the PPO run dir "
            f"{folder.parent} instead"
        )
    if registry.is_adapter_dir(folder):
        return RunContents("adapter", folder, trainer)
    is_run = (folder / RUN_CONFIG).is_file()
    if is_run and _is_checkpoint(folder / "policy"):  # ppo --no-lora keeps the policy in policy/
        return RunContents("full", folder / "policy", trainer or "ppo")
    if _is_checkpoint(folder):
        if is_run:
            return RunContents("full", folder, trainer)
        raise UserError(
            f"{folder} is already a standalone checkpoint (config.json + safetensors, not an alignkit run): "
            "load it with from_pretrained, there is nothing to export"
        )
    if is_run:
        raise UserError(
            f"{folder} is an alignkit run without a final model (did training finish? its checkpoints/ are "
            f"for --resume); {EXPECTED}"
        )
    raise UserError(f"{folder} is not an alignkit run: {EXPECTED}")


def copy_checkpoint(source: Path, output: Path, run: Path) -> Path:
    """Copy the model and tokenizer files of a full checkpoint into ``output`` (atomically); returns it.

    ``alignkit_model.json`` goes along (so alignkit reads the copy like the run), marked ``format: full``
    and ``exported_from`` the run; the run's own files (config.yaml, metrics, checkpoints/) stay behind.
    """
    import yaml

    from alignkit.files import atomic_dir, atomic_write_json
    from alignkit.models import registry

    meta = registry.read_model_meta(source) or registry.read_model_meta(run)
    if not meta.get("base"):
        try:  # ppo --no-lora writes no alignkit_model.json: the base is the run's --model
            saved = yaml.safe_load((run / RUN_CONFIG).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            saved = {}
        meta = {"base": str(saved.get("model", "")), "kind": "policy", **meta}

    def build(tmp: Path) -> None:
        for item in sorted(source.iterdir()):
            if item.is_file() and (item.name in CHECKPOINT_FILES or item.name.endswith(CHECKPOINT_SUFFIXES)):
                shutil.copy2(item, tmp / item.name)
        atomic_write_json(
            tmp / registry.MODEL_META_FILE,
            {**meta, "adapter": "", "format": "full", "exported_from": str(run.resolve())},
        )

    return atomic_dir(output, build)


def export(run: str | os.PathLike, output: str | os.PathLike, overwrite: bool = False) -> dict[str, Any]:
    """Export the run at ``run`` into ``output`` (see the module docstring); return a summary.

    Summary keys: ``output``, ``run``, ``kind`` (reward | adapter | full), ``trainer``, ``loads_with`` (the
    transformers class that loads it) and ``how`` (merged | copied).
    """
    target = Path(output)
    if target.exists() and not overwrite:
        raise UserError(f"{target} already exists; pass --overwrite to replace it or choose another --output")
    contents = inspect_run(run)
    if contents.kind == "reward":
        from alignkit.rewards.model import export_reward_model

        written = export_reward_model(contents.folder, target, overwrite=overwrite)
        loads_with, how = "AutoModelForSequenceClassification", "merged"
    elif contents.kind == "adapter":
        from alignkit.models.merge import merge_adapter_run

        written = merge_adapter_run(contents.folder, target)
        loads_with, how = "AutoModelForCausalLM", "merged"
    else:
        written = copy_checkpoint(contents.folder, target, Path(run))
        loads_with, how = "AutoModelForCausalLM", "copied"
    return {
        "output": str(written),
        "run": str(run),
        "kind": contents.kind,
        "trainer": contents.trainer,
        "loads_with": loads_with,
        "how": how,
    }
