"""`alignkit label --web` without a browser: assignment, tokens, the desk, the HTTP side, concurrency."""

from __future__ import annotations

import http.client
import itertools
import os
import random
import socket
import stat
import threading
from collections import Counter
from pathlib import Path

import pytest

from alignkit.cli import main
from alignkit.data.labels import read_labels
from alignkit.errors import ConfigError, UserError
from alignkit.feedback.items import load_candidates
from alignkit.feedback.label import LabelSession
from alignkit.feedback.store import LabelStore
from alignkit.feedback.web.desk import Desk, Refused
from alignkit.feedback.web.server import bind, is_local
from alignkit.feedback.web.team import assign_items, open_team, team_path
from label_web import WebServer, api, candidate_rows, web_config, write_jsonl


# --------------------------------------------------------------------------------------- assignment
def test_assignment_gives_each_item_to_overlap_annotators_once_each():
    ids = [f"item{i:02d}" for i in range(30)]
    names = ["ana", "ben", "cleo", "dev"]
    out = assign_items(ids, names, overlap=2, seed=0)
    assert sorted(out) == sorted(names)
    holders = Counter(i for items in out.values() for i in items)
    assert holders == dict.fromkeys(ids, 2)  # every item to exactly two annotators
    assert all(len(set(items)) == len(items) for items in out.values())  # nobody sees an item twice
    loads = [len(items) for items in out.values()]
    assert max(loads) - min(loads) <= 1
    for a, b in itertools.combinations(names, 2):  # every two annotators share items: kappa for each pair
        assert set(out[a]) & set(out[b]), (a, b)
    assert any(items != sorted(items) for items in out.values())  # shuffled per annotator
    assert out == assign_items(ids, list(reversed(names)), overlap=2, seed=0)  # restart: the same
    assert out != assign_items(ids, names, overlap=2, seed=1)
    everyone = assign_items(ids, names, overlap=4, seed=0)
    assert all(sorted(items) == ids for items in everyone.values())
    assert everyone["ana"] != everyone["ben"]  # the same items, each in an order of their own
    with pytest.raises(ValueError):
        assign_items(ids, names, overlap=5, seed=0)


def test_tokens_are_secret_persisted_and_settings_guarded(tmp_path, capsys):
    out = tmp_path / "labels.jsonl"
    settings = {"dataset": "ds1", "mode": "pair", "overlap": 1, "seed": 0}
    team = open_team(out, ["ana", "ben"], ["a", "b", "c"], settings)
    path = team_path(out)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(set(team.tokens.values())) == 2 and all(len(t) >= 40 for t in team.tokens.values())
    assert team.who(team.tokens["ben"]) == "ben"
    assert team.who("x" + team.tokens["ben"]) is None and team.who("") is None and team.who(None) is None
    again = open_team(out, ["ben", "ana"], ["a", "b", "c"], settings)
    assert again.tokens == team.tokens and again.assignment == team.assignment
    with pytest.raises(ConfigError, match="other settings"):
        open_team(out, ["ana", "ben"], ["a", "b", "c"], {**settings, "overlap": 2})
    with pytest.raises(ConfigError, match="annotators"):
        open_team(out, ["ana", "ben", "cleo"], ["a", "b", "c"], settings)
    other = open_team(out, ["ana", "cleo"], ["d", "e"], {**settings, "dataset": "ds2"})  # a new round
    assert other.tokens["ana"] == team.tokens["ana"] and other.tokens["cleo"] not in team.tokens.values()
    os.chmod(path, 0o644)
    open_team(out, ["ana", "cleo"], ["d", "e"], {**settings, "dataset": "ds2"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and "could be read by others" in capsys.readouterr().err
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="web.json"):
        open_team(out, ["ana"], ["a"], settings)


def test_loopback_hosts_are_local():
    assert is_local("127.0.0.1") and is_local("localhost") and is_local("::1") and is_local("127.0.0.2")
    assert not is_local("0.0.0.0") and not is_local("192.168.1.5") and not is_local("my-host")


# --------------------------------------------------------------------------------------------- desk
def _desk(
    candidates: Path, out: Path, names=("ana", "ben"), overlap=2, mode="pair"
) -> tuple[Desk, LabelStore]:
    cands = load_candidates(candidates)
    store = LabelStore.open(out, cands.dataset, mode)
    assignment = assign_items([i.item_id for i in cands.items], names, overlap, seed=0)
    return Desk(cands.items, store, assignment, mode), store


def test_desk_writes_rows_refuses_repeats_and_undoes(candidates, tmp_path):
    out = tmp_path / "labels.jsonl"
    desk, store = _desk(candidates, out)
    view = desk.view("ana")
    assert (view["done"], view["total"], view["remaining"], view["can_undo"]) == (0, 6, 6, False)
    item = view["item"]
    request = {
        "item_id": item["item_id"],
        "action": "choose",
        "choice": 2,
        "shown_order": item["shown_order"],
    }
    after = desk.judge("ana", {**request, "seconds": 3.25})
    assert after["done"] == 1 and after["item"]["item_id"] != item["item_id"] and after["can_undo"]
    [(_, row)] = read_labels(out).rows
    assert row["event"] == "label" and row["annotator"] == "ana" and row["item_id"] == item["item_id"]
    assert (
        row["choice"] == 2 and row["chosen"] == item["answers"][1] and row["rejected"] == item["answers"][0]
    )
    assert row["shown_order"] == item["shown_order"] and row["seconds"] == 3.25 and row["ui"] == "web"
    assert row["item_position"] == 1
    with pytest.raises(Refused) as again:  # a retry, or a second tab: never a second row
        desk.judge("ana", request)
    assert again.value.status == 409
    for bad, status in (
        ({"action": "explode"}, 400),
        ({"action": "choose", "choice": 3}, 400),
        ({"action": "rank", "order": "1 2"}, 400),
        ({"action": "choose", "choice": 1, "shown_order": [9, 9]}, 409),
        ({"action": "tie", "item_id": "not-an-item"}, 409),
    ):
        current = desk.view("ana")["item"]["item_id"]
        with pytest.raises(Refused) as refused:
            desk.judge("ana", {"item_id": current, **bad})
        assert refused.value.status == status, bad
    current = desk.view("ana")["item"]
    desk.judge("ana", {"item_id": current["item_id"], "action": "cant_judge", "seconds": -1})
    cant = read_labels(out).rows[-1][1]
    assert cant["event"] == "skip" and cant["reason"] == "cant_judge" and cant["seconds"] is None
    back = desk.undo("ana")
    assert back["item"]["item_id"] == current["item_id"] and back["done"] == 1
    assert read_labels(out).rows[-1][1]["undoes"] == cant["id"]
    assert desk.view("ben")["done"] == 0  # ben's queue is his own
    store.close()

    desk, store = _desk(candidates, out)  # a restart resumes where each one stopped
    resumed = desk.view("ana")
    assert resumed["done"] == 1 and resumed["item"]["item_id"] != item["item_id"]
    store.close()


def test_terminal_and_web_write_the_same_file_in_turn(candidates, tmp_path):
    out = tmp_path / "labels.jsonl"
    desk, store = _desk(candidates, out)
    first = desk.view("ana")["item"]["item_id"]
    desk.judge("ana", {"item_id": first, "action": "choose", "choice": 1})
    store.close()
    cands = load_candidates(candidates)
    with LabelStore.open(out, cands.dataset, "pair") as store:  # the terminal UI, same annotator
        session = LabelSession(cands.items, store, "ana")
        assert first not in [i.item_id for i in session.queue]
        terminal_item = session.current.item_id
        session.press("2")
    rows = [row for _, row in read_labels(out).rows]
    assert [r["ui"] for r in rows] == ["web", "terminal"]
    assert set(rows[0]) - {"item_position"} == set(rows[1])  # the same fields, but the web's position
    desk, store = _desk(candidates, out)
    view = desk.view("ana")
    assert view["done"] == 2 and view["item"]["item_id"] not in (first, terminal_item)
    store.close()


# --------------------------------------------------------------------------------------------- HTTP
def test_requests_without_a_valid_token_get_no_data(candidates, tmp_path):
    out = tmp_path / "labels.jsonl"
    server = WebServer(web_config(candidates, out, "ana,ben", overlap=2))
    try:
        token = server.tokens["ana"]
        secret_text = "answer to question"
        for path, header in (
            ("/", None),
            ("/?token=", None),
            ("/api/state", None),
            (f"/api/state?token={token}", None),
        ):
            status, body = api(server.base, "GET", path, header)
            assert status == 401 and secret_text not in str(body), path
        for path in ("/?token=wrong", "/api/state"):
            status, body = api(server.base, "GET", path, "wrong" if path == "/api/state" else None)
            assert status == 403 and secret_text not in str(body)
        for path in ("/api/judge", "/api/undo"):
            assert api(server.base, "POST", path, None, {"action": "skip"})[0] == 401
            assert api(server.base, "POST", path, "nope", {"action": "skip"})[0] == 403
        assert out.read_bytes() == b""  # nothing was written
        status, page = api(server.base, "GET", f"/?token={token}")
        assert status == 200 and "app.js" in page and secret_text not in page  # the data comes from the API
        status, state = api(server.base, "GET", "/api/state", token)
        assert status == 200 and state["annotator"] == "ana" and state["total"] == 6
        assert api(server.base, "POST", "/api/judge", token, raw=b"[1, 2")[0] == 400
        assert api(server.base, "POST", "/api/judge", token, raw=b"x" * 70_000)[0] == 413
        assert api(server.base, "GET", "/static/app.js")[0] == 200  # no data in it
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", f"/?token={token}")
        headers = {k.lower(): v for k, v in connection.getresponse().getheaders()}
        connection.close()
        assert (
            "script-src 'self'" in headers["content-security-policy"]
            and headers["referrer-policy"] == "no-referrer"
        )
        assert headers["cache-control"] == "no-store" and "server" not in headers
    finally:
        server.close()


def _client(server: WebServer, who: str, start: threading.Barrier, confirmed: list, refused: list) -> None:
    """One annotator's page: judge every item with a random action, then send the last request again."""
    rng = random.Random(who)
    token = server.tokens[who]
    start.wait()
    status, view = api(server.base, "GET", "/api/state", token)
    assert status == 200
    while view["item"] is not None:
        action = rng.choice(["choose", "choose", "tie", "skip", "cant_judge"])
        body = {
            "item_id": view["item"]["item_id"],
            "action": action,
            "choice": rng.choice([1, 2]),
            "seconds": 1,
        }
        status, view = api(server.base, "POST", "/api/judge", token, body)
        assert status == 200, view
        confirmed.append((who, body["item_id"]))
        status, answer = api(server.base, "POST", "/api/judge", token, body)  # a retry of a confirmed request
        refused.append(status)


def test_twenty_clients_submit_a_thousand_judgements_at_once(tmp_path):
    data = write_jsonl(tmp_path / "candidates.jsonl", candidate_rows(500))
    out = tmp_path / "labels.jsonl"
    names = [f"annotator{i:02d}" for i in range(20)]
    server = WebServer(web_config(data, out, ",".join(names), overlap=2))
    confirmed: list[tuple[str, str]] = []
    refused: list[int] = []
    start = threading.Barrier(len(names))
    errors: list[BaseException] = []

    def run(who: str) -> None:
        try:
            _client(server, who, start, confirmed, refused)
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(who,)) for who in names]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    finally:
        server.close()
    assert not errors, errors[0]
    assert len(confirmed) == 1000 and set(refused) == {409}
    state = read_labels(out)
    keys = [(row["annotator"], row["item_id"]) for _, row in state.rows]
    assert len(keys) == 1000 and len(set(keys)) == 1000  # none duplicated
    assert set(keys) == set(confirmed)  # none lost
    assigned = server.web.team.assignment
    assert {who: sorted(i for w, i in keys if w == who) for who in names} == {
        w: sorted(i) for w, i in assigned.items()
    }
    assert Counter(item for _, item in keys) == dict.fromkeys({item for _, item in keys}, 2)  # overlap 2


# ----------------------------------------------------------------------------------------------- CLI
def test_web_options_are_checked(candidates, tmp_path, capsys):
    base = ["label", "--data", str(candidates), "--output", str(tmp_path / "l.jsonl")]
    for extra, why in (
        (["--web"], "--annotators"),
        (["--web", "--annotators", "ana,ben", "--overlap", "3"], "--overlap"),
        (["--web", "--annotators", "ana,ana"], "repeated"),
        (["--web", "--annotators", "ana,"], "not a name"),
        (["--annotators", "ana,ben"], "--web"),
        (["--web", "--annotators", "ana", "--annotator", "ana"], "--annotators"),
        (["--web", "--annotators", "ana", "--port", "70000"], "--port"),
    ):
        assert main(base + extra) == 2, extra
        assert why in capsys.readouterr().err, extra
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        with pytest.raises(UserError, match="in use"):
            bind("127.0.0.1", busy.getsockname()[1])
    finally:
        busy.close()
    with pytest.raises(UserError, match="--host"):
        bind("no-such-host.invalid", 0)


def test_public_host_prints_a_warning(capsys):
    from alignkit.reports.labels import show_web_start

    info = {
        "host": "0.0.0.0",
        "port": 8765,
        "public": True,
        "output": "l.jsonl",
        "mode": "pair",
        "items": 3,
        "overlap": 1,
        "tokens_file": "l.jsonl.web.json",
        "annotators": {"ana": {"url": "http://h:8765/?token=T", "done": 0, "total": 3}},
    }
    show_web_start(info)
    err = capsys.readouterr().err
    assert "warning" in err and "0.0.0.0" in err and "http://h:8765/?token=T" in err
    show_web_start({**info, "public": False, "host": "127.0.0.1"})
    assert "warning" not in capsys.readouterr().err


def test_label_help_lists_the_sub_commands(capsys):
    assert main(["label", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--web" in out and "--annotators" in out and "stats" in out and "aggregate" in out
    assert main(["label", "stats", "--help"]) == 0 and "Example" in capsys.readouterr().out
