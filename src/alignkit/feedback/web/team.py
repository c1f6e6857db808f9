"""Who labels what on the web page: each annotator's secret token, and the items each one is given.

**Tokens.** Every annotator gets a token from `secrets.token_urlsafe` (256 bits) and a URL carrying it. The
tokens are kept beside the label file, in ``LABELS.jsonl.web.json`` (written atomically, mode 0600 from its
first byte: only the person who started the server can read it), so a restart prints the same URLs. A name
seen for the first time gets a new token; the file keeps the others.

**Assignment** (`assign_items`), a pure function of the item ids, the annotators' names (their order does
not matter), ``overlap`` and ``seed``, so a restart gives every annotator the same items in the same order:

* each item goes to ``overlap`` different annotators: the ones with the fewest items so far, ties broken
  by a seeded draw per item, so loads differ by at most one and every two annotators come to share items
  (a fixed rotation would pair the same two people for ever when there are four of them);
* no annotator gets an item twice (the ``overlap`` picked for an item are distinct);
* each annotator's items are shuffled with a generator seeded by ``seed`` and their name.

The settings of a round (dataset, mode, overlap, seed, names) are recorded in the same file: starting the
server again on the same dataset with other settings would hand items out anew half-way, so it is refused
(`ConfigError` naming the file).
"""

from __future__ import annotations

import hmac
import json
import os
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit import console
from alignkit.errors import ConfigError
from alignkit.files import atomic_write_bytes

FORMAT = "alignkit-label-web"


def team_path(output: str | Path) -> Path:
    """Where the tokens of the label file ``output`` are kept: ``output`` + ``.web.json``."""
    return Path(f"{output}.web.json")


def assign_items(
    item_ids: Sequence[str], annotators: Sequence[str], overlap: int, seed: int
) -> dict[str, list[str]]:
    """Each annotator's item ids, in the order they are shown (see the module docstring)."""
    names = sorted(annotators)
    if not 1 <= overlap <= len(names):
        raise ValueError(f"overlap {overlap} needs 1..{len(names)} annotators")
    rng = random.Random(f"{seed}:assign")
    out: dict[str, list[str]] = {name: [] for name in names}
    for item_id in sorted(item_ids):
        draw = {name: rng.random() for name in names}
        chosen = sorted(names, key=lambda n: (len(out[n]), draw[n]))[:overlap]
        for name in chosen:
            out[name].append(item_id)
    for name, ids in out.items():
        random.Random(f"{seed}:order:{name}").shuffle(ids)
    return out


@dataclass
class Team:
    """The annotators of one server: their tokens and their items (ids, in the order shown)."""

    path: Path
    tokens: dict[str, str]
    assignment: dict[str, list[str]]

    def who(self, token: str | None) -> str | None:
        """The annotator whose token this is (compared in constant time), or None."""
        if not token:
            return None
        found = None
        for name, secret in self.tokens.items():
            if hmac.compare_digest(token.encode("utf-8", "replace"), secret.encode("ascii")):
                found = name
        return found


def open_team(
    output: str | Path,
    names: Sequence[str],
    item_ids: Sequence[str],
    settings: dict[str, Any],
) -> Team:
    """Read (or start) the tokens file of ``output`` for ``names``; assign ``item_ids``.

    ``settings`` holds ``dataset``, ``mode``, ``overlap`` and ``seed``. Raises `ConfigError` when the file is
    not ours, or when this dataset was served before with other settings.
    """
    path = team_path(output)
    saved = _read(path)
    tokens: dict[str, str] = dict(saved.get("tokens", {}))
    rounds: dict[str, Any] = dict(saved.get("rounds", {}))
    this_round = {**settings, "annotators": sorted(names)}
    before = rounds.get(str(settings["dataset"]))
    if before is not None and before != this_round:
        changed = ", ".join(k for k in sorted(this_round) if before.get(k) != this_round.get(k))
        raise ConfigError(
            f"{path}: this label file was served with other settings ({changed}: "
            f"{_describe(before)}); start it with the same ones, or label into another --output"
        )
    new_names = [n for n in names if n not in tokens]
    for name in new_names:
        tokens[name] = secrets.token_urlsafe(32)
    if new_names or before is None:
        rounds[str(settings["dataset"])] = this_round
        data = {"format": FORMAT, "version": 1, "tokens": tokens, "rounds": rounds}
        atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"), mode=0o600)
    assignment = assign_items(item_ids, names, int(settings["overlap"]), int(settings["seed"]))
    return Team(path, {n: tokens[n] for n in names}, assignment)


def _describe(settings: dict[str, Any]) -> str:
    return (
        f"--annotators {','.join(settings.get('annotators', []))} --overlap {settings.get('overlap')} "
        f"--seed {settings.get('seed')} --mode {settings.get('mode')}"
    )


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(path, 0o600)
        console.warn(
            f"{path} could be read by others (mode {mode:o}); it holds the annotators' tokens: now 600"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not readable as JSON ({e}); delete it to make new URLs") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("tokens"), dict):
        raise ConfigError(
            f"{path} is not an alignkit label --web tokens file; move it away or choose another --output"
        )
    return data
