"""`alignkit models`: the embedded default and the cached models."""

from __future__ import annotations

from pathlib import Path

from alignkit import console
from alignkit.cli.app import app
from alignkit.cli.options import config_command
from alignkit.config import ModelsConfig


@app.command("models")
@config_command(ModelsConfig)
def models_command(cfg: ModelsConfig) -> None:
    """List the embedded default model and the models in the cache; --prepare converts the default.

    The cache is $ALIGNKIT_CACHE, else $XDG_CACHE_HOME/alignkit, else ~/.cache/alignkit.

    Example:

        alignkit models --prepare
    """
    from alignkit.models.default import models_overview
    from alignkit.reports.models import show_models

    overview = models_overview(prepare=cfg.prepare, force=cfg.force)
    if cfg.json:
        console.print_json(overview)
        return
    show_models(Path(overview["cache"]), overview["models"])
