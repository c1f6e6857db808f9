"""`alignkit label --web` as a real process: kill -9 loses no confirmed judgement, a restart resumes with
the same URLs, Ctrl-C (SIGINT) stops it cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from alignkit.data.labels import read_labels
from alignkit.feedback.items import load_candidates
from alignkit.feedback.store import LabelStore
from label_web import api, candidate_rows, write_jsonl

URL_LINE = re.compile(r"^\s+(\S+) \((\d+)/(\d+) done\): (http://\S+)$")


class Served:
    """`alignkit label --web ...` in a subprocess; `urls` once it printed them (read from its stderr)."""

    def __init__(self, args: list[str], names: int):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "alignkit.cli", "label", "--web", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.urls: dict[str, str] = {}
        self.progress: dict[str, int] = {}
        self.err: list[str] = []
        ready = threading.Event()

        def read() -> None:
            for line in self.process.stderr:
                self.err.append(line)
                m = URL_LINE.match(line.rstrip("\n"))
                if m:
                    self.urls[m.group(1)] = m.group(4)
                    self.progress[m.group(1)] = int(m.group(2))
                    if len(self.urls) == names:
                        ready.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not ready.wait(60):
            self.process.kill()
            raise AssertionError("the server printed no URLs: " + "".join(self.err))

    def stop(self, sig: int = signal.SIGINT) -> str:
        """Send ``sig``, wait for the exit, and return what it printed on stdout (stderr is in ``err``)."""
        self.process.send_signal(sig)
        self.process.wait(30)
        self.reader.join(10)
        out = self.process.stdout.read()
        self.process.stdout.close()
        self.process.stderr.close()
        return out

    def base(self) -> str:
        return next(iter(self.urls.values())).split("/?")[0]

    def token(self, who: str) -> str:
        return self.urls[who].split("token=")[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kill_9_loses_no_confirmed_judgement_and_a_restart_resumes(tmp_path):
    data = write_jsonl(tmp_path / "candidates.jsonl", candidate_rows(200))
    out = tmp_path / "labels.jsonl"
    args = [
        "--data",
        str(data),
        "--output",
        str(out),
        "--annotators",
        "ana,ben,cleo,dev",
        "--port",
        str(_free_port()),
    ]
    served = Served(args, names=4)
    confirmed: list[tuple[str, str]] = []
    stop = threading.Event()

    def annotate(who: str) -> None:
        token = served.token(who)
        try:
            status, view = api(served.base(), "GET", "/api/state", token)
            while not stop.is_set() and status == 200 and view["item"]:
                body = {"item_id": view["item"]["item_id"], "action": "choose", "choice": 1}
                status, view = api(served.base(), "POST", "/api/judge", token, body)
                if status == 200:
                    confirmed.append((who, body["item_id"]))  # the page would move on now
        except OSError:  # the server died under us: whatever was confirmed must be on disk
            return

    clients = [threading.Thread(target=annotate, args=(who,)) for who in served.urls]
    for c in clients:
        c.start()
    deadline = time.monotonic() + 60
    while len(confirmed) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    served.stop(signal.SIGKILL)  # while the clients are still submitting
    stop.set()
    for c in clients:
        c.join(30)
    assert len(confirmed) >= 40
    state = read_labels(out)  # a torn last line (a write cut by the kill) is allowed, and ignored
    on_disk = {(row["annotator"], row["item_id"]) for _, row in state.rows}
    assert set(confirmed) <= on_disk

    again = Served(args, names=4)  # a restart: the same URLs, each annotator where they stopped
    try:
        assert again.urls == served.urls
        for who in again.urls:
            mine = {item for w, item in on_disk if w == who}
            status, view = api(again.base(), "GET", "/api/state", again.token(who))
            assert status == 200 and view["done"] == len(mine) == again.progress[who]
            assert view["item"]["item_id"] not in mine
    finally:
        again.stop(signal.SIGTERM)
    assert again.process.returncode == 0 and "stopped:" in "".join(again.err)  # SIGTERM stops it cleanly too


def test_ctrl_c_stops_the_server_cleanly(tmp_path):
    data = write_jsonl(tmp_path / "candidates.jsonl", candidate_rows(4))
    out = tmp_path / "labels.jsonl"
    served = Served(
        ["--data", str(data), "--output", str(out), "--annotators", "ana", "--port", "0", "--json"], names=1
    )
    status, view = api(served.base(), "GET", "/api/state", served.token("ana"))
    body = {"item_id": view["item"]["item_id"], "action": "tie"}
    assert api(served.base(), "POST", "/api/judge", served.token("ana"), body)[0] == 200
    stdout = served.stop(signal.SIGINT)
    assert served.process.returncode == 0
    err = "".join(served.err)
    assert "stopped: 1 judgements saved" in err and "Traceback" not in err and "KeyboardInterrupt" not in err
    summary = json.loads(stdout)
    assert summary["saved_this_session"] == 1 and summary["annotators"]["ana"]["done"] == 1
    assert not any(token in stdout for token in [served.token("ana")])  # the summary holds no secret
    cands = load_candidates(data)
    with LabelStore.open(out, cands.dataset, "pair") as store:  # the lock was released
        assert [row["event"] for _, row in store.state.rows] == ["tie"]
    assert os.stat(Path(f"{out}.web.json")).st_mode & 0o077 == 0
