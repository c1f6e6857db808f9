"""Config resolution: dataclass defaults < recipe YAML < command-line flags; unknown keys are errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from alignkit.config import TrainConfig, build_config, diff_configs, field_help
from alignkit.errors import ConfigError


@dataclass
class DemoConfig(TrainConfig):
    beta: float = 0.1
    """Strength of the KL constraint."""
    reward_model: list[str] | None = None
    """Reward models."""


def test_defaults_recipe_then_flags(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 0.001\nbatch-size: 4\nbeta: 0.5\n")
    cfg = build_config(DemoConfig, recipe, {"batch_size": 2, "lr": None})
    assert cfg.lr == 0.001  # from the recipe (flag not given)
    assert cfg.batch_size == 2  # the flag beats the recipe
    assert cfg.beta == 0.5
    assert cfg.max_length == 512  # dataclass default


def test_unknown_recipe_key_names_key_and_suggests(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 0.001\nbatch_sise: 4\n")
    with pytest.raises(
        ConfigError, match=r"r\.yaml: unknown key 'batch_sise' \(did you mean 'batch_size'\?\)"
    ):
        build_config(DemoConfig, recipe, {})


def test_wrong_type_names_field(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("max_steps: many\n")
    with pytest.raises(ConfigError, match="'max_steps' must be int"):
        build_config(DemoConfig, recipe, {})
    recipe.write_text("max_steps: 2.5\n")
    with pytest.raises(ConfigError, match="'max_steps' must be int"):
        build_config(DemoConfig, recipe, {})


def test_bad_yaml_and_non_mapping(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config(DemoConfig, recipe, {})
    recipe.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        build_config(DemoConfig, recipe, {})
    with pytest.raises(ConfigError, match="no such recipe"):
        build_config(DemoConfig, tmp_path / "missing.yaml", {})


def test_list_field_accepts_scalar_and_list(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("reward_model: a\n")
    assert build_config(DemoConfig, recipe, {}).reward_model == ["a"]
    assert build_config(DemoConfig, None, {"reward_model": ["x", "y"]}).reward_model == ["x", "y"]


def test_field_help_reads_docstrings():
    assert field_help(DemoConfig, "beta") == "Strength of the KL constraint."
    assert "LoRA rank" in field_help(DemoConfig, "lora_r")  # inherited from TrainConfig


def test_diff_configs_ignores_resume_safe_keys():
    a = {"lr": 0.1, "max_steps": 10, "json": False, "compile": True}
    b = {"lr": 0.2, "max_steps": 20, "json": True, "compile": False}
    assert diff_configs(a, b) == ["lr"]


def test_every_recipe_parses():
    """Every shipped recipe must resolve against its command's config."""
    from pathlib import Path

    from alignkit.cli.recipes import command_configs

    root = Path(__file__).resolve().parents[1] / "recipes"
    recipes = sorted(p for p in root.glob("*.yaml"))
    assert recipes, "recipes/ must ship one YAML per command"
    for path in recipes:
        cls = command_configs()[path.stem.split("_")[0]]
        build_config(cls, path, {})
