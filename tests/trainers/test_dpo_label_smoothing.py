"""--label-smoothing is refused where TRL's DPO loss ignores it (issue 24)."""

from __future__ import annotations

import inspect
import re

import pytest

from alignkit.config import build_config
from alignkit.errors import ConfigError
from alignkit.trainers.dpo_config import DPO_LOSSES, LABEL_SMOOTHING_LOSSES, DPOConfig


@pytest.mark.parametrize("loss", ["sigmoid", "ipo", "hinge", "sigmoid,sft"])
def test_label_smoothing_on_a_loss_that_ignores_it_is_a_config_error(loss):
    """It was accepted and silently ignored: TRL 1.16's sigmoid loss no longer reads label_smoothing."""
    with pytest.raises(
        ConfigError, match=r"--label-smoothing 0\.1 has no effect on --loss .*robust, exo_pair"
    ):
        build_config(DPOConfig, None, {"loss": loss, "label_smoothing": 0.1})


@pytest.mark.parametrize("loss", ["robust", "exo_pair", "aot", "aot_unpaired", "sigmoid,robust"])
def test_label_smoothing_is_accepted_by_the_losses_that_use_it(loss):
    assert build_config(DPOConfig, None, {"loss": loss, "label_smoothing": 0.1}).label_smoothing == 0.1


def test_zero_label_smoothing_is_fine_with_any_loss():
    assert build_config(DPOConfig, None, {"loss": "sigmoid"}).label_smoothing == 0.0


def test_the_list_matches_the_installed_trl():
    """LABEL_SMOOTHING_LOSSES = the loss branches of TRL's DPOTrainer that read self.label_smoothing."""
    from trl.trainer.dpo_trainer import DPOTrainer

    source = inspect.getsource(DPOTrainer)
    branches = re.split(r'\n\s*(?:el)?if loss_type == "', source)[1:]
    reading = {b.split('"', 1)[0] for b in branches if "self.label_smoothing" in b.split("\n        elif")[0]}
    assert reading and reading <= set(DPO_LOSSES)
    assert reading == set(LABEL_SMOOTHING_LOSSES)
