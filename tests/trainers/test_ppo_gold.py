"""`alignkit ppo --gold-judge simulated`: a held-out gold score logged beside the proxy, never trained on."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from alignkit.cli import main
from factories import make_reward_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_ppo import base_args  # noqa: E402


def test_gold_score_is_logged_and_proxy_unchanged(tiny_model_dir, tmp_path, capsys):
    torch.set_num_threads(1)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": p}) + "\n" for p in ["Name a colour.", "Say hi.", "2+2?", "Hi"])
    )
    rm = make_reward_model(tmp_path / "rm", tiny_model_dir)
    rows = {}
    for name, extra in (("plain", []), ("gold", ["--gold-judge", "simulated"])):
        out = tmp_path / name
        assert main(base_args(tiny_model_dir, prompts, rm, out, "--max-steps", "1", *extra)) == 0
        rows[name] = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert "gold/score" in rows["gold"] and "gold/score" not in rows["plain"]
    # the gold judge only watches: the proxy score and the update are the same as without it
    assert rows["gold"]["reward/score"] == rows["plain"]["reward/score"]
    assert rows["gold"]["ppo/policy_loss"] == rows["plain"]["ppo/policy_loss"]
    capsys.readouterr()
    assert main(base_args(tiny_model_dir, prompts, rm, tmp_path / "bad", "--gold-judge", "gpt")) == 2
    assert "only `simulated`" in capsys.readouterr().err
