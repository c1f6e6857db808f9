"""Which config dataclass each command's recipe (`recipes/<command>[_variant].yaml`) resolves against."""

from __future__ import annotations

from alignkit.config import InspectConfig, ModelsConfig
from alignkit.demo.config import DemoConfig
from alignkit.feedback.config import JudgeConfig, LabelConfig
from alignkit.plots.config import PlotConfig
from alignkit.sampling.config import SampleConfig
from alignkit.trainers.dpo_config import DPOConfig
from alignkit.trainers.kto_config import KTOConfig
from alignkit.trainers.online.config import PPOConfig
from alignkit.trainers.online.grpo_config import GRPOConfig, RLOOConfig
from alignkit.trainers.rm_config import RMConfig
from alignkit.trainers.sft_config import SFTConfig


def command_configs() -> dict[str, type]:
    """Command name -> its config dataclass (the name a recipe file starts with)."""
    return {
        "inspect": InspectConfig,
        "rm": RMConfig,
        "dpo": DPOConfig,
        "kto": KTOConfig,
        "sft": SFTConfig,
        "ppo": PPOConfig,
        "grpo": GRPOConfig,
        "rloo": RLOOConfig,
        "judge": JudgeConfig,
        "label": LabelConfig,
        "sample": SampleConfig,
        "demo": DemoConfig,
        "models": ModelsConfig,
        "plot": PlotConfig,
    }
