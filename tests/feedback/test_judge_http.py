"""The HTTP judge against a fake OpenAI-compatible server on 127.0.0.1 that can fail on purpose."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import alignkit.feedback.judges.http as judge_http
from alignkit.cli import main
from alignkit.data.labels import read_labels
from alignkit.errors import ConfigError
from alignkit.feedback.judges.http import (
    RateLimiter,
    endpoint_url,
    logps_from_reply,
    parse_choice,
    parse_reply,
)

KEY = "sk-test-SECRET-0123456789"


class FakeJudge:
    """Answers like a judge that always prefers the answer containing GOOD, unless told to fail.

    ``script`` holds what the next requests get, in order: ("status", code, body, headers) tuples or
    "garbage"/"unparsed"/"drop"; when it is empty, a good reply. ``fail_after`` switches every request
    from then on to HTTP 500.
    """

    def __init__(self, logprobs: bool = True):
        self.script: list = []
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.logprobs = logprobs
        self.fail_after: int | None = None
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append(body)
                    fake.headers.append(dict(self.headers))
                    n = len(fake.requests)
                    step = fake.script.pop(0) if fake.script else None
                if fake.fail_after is not None and n > fake.fail_after:
                    step = ("status", 500, b"overloaded", {})
                if step == "slow":  # answer after the client gave up
                    time.sleep(1.0)
                if step == "drop":
                    self.connection.close()
                    return
                if step == "garbage":
                    return self._send(200, b"<html>proxy error</html>", {})
                if isinstance(step, tuple):
                    return self._send(step[1], step[2], step[3])
                self._send(200, json.dumps(fake.reply(body, step == "unparsed")).encode(), {})

            def _send(self, code, data, headers):
                try:
                    self.send_response(code)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client timed out and closed the connection
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reply(self, body: dict, unparsed: bool) -> dict:
        text = body["messages"][0]["content"]
        a, b = text.index("[Answer A]"), text.index("[Answer B]")
        good_is_b = text.find("GOOD", b) != -1
        name = "B" if good_is_b else "A"
        choice: dict = {
            "index": 0,
            "message": {"role": "assistant", "content": "I cannot decide" if unparsed else name},
        }
        if self.logprobs and body.get("logprobs") and not unparsed:
            top = [
                {"token": name, "logprob": -0.1},
                {"token": "A" if good_is_b else "B", "logprob": -2.5},
                {"token": "The", "logprob": -4.0},
            ]
            choice["logprobs"] = {"content": [{"token": name, "logprob": -0.1, "top_logprobs": top}]}
        assert a < b
        return {"id": "x", "object": "chat.completion", "choices": [choice]}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    fake = FakeJudge()
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def no_key_from_the_outside(monkeypatch):
    """The keys of whoever runs the tests never reach the fake server."""
    monkeypatch.delenv("ALIGNKIT_JUDGE_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("ALIGNKIT_JUDGE_API_KEY", KEY)


def _args(data: Path, out: Path, url: str, *extra: str) -> list[str]:
    return [
        "judge",
        "--data",
        str(data),
        "--output",
        str(out),
        "--judge",
        url,
        "--judge-model",
        "fake-judge",
        "--retry-wait",
        "0.001",
        "--retries",
        "3",
        "--json",
        *extra,
    ]


def _no_key_anywhere(tmp_path: Path, *texts: str) -> None:
    for text in texts:
        assert KEY not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_judges_every_pair_with_swap_and_never_logs_the_key(server, candidates, tmp_path, key_env, capsys):
    out = tmp_path / "ai.jsonl"
    assert main(_args(candidates, out, server.url, "--swap")) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["judged"] == 6 and summary["labels"] == 6 and summary["swap_consistency"] == 1.0
    assert len(server.requests) == 12  # both orders
    assert all(h["Authorization"] == f"Bearer {KEY}" for h in server.headers)
    body = server.requests[0]
    assert body["model"] == "fake-judge" and body["max_tokens"] == 1 and body["logprobs"] is True
    rows = [r for _, r in read_labels(out).rows]
    assert all(r["chosen"][0]["content"].startswith("GOOD") for r in rows)
    assert all(r["judge"]["p_chosen"] > 0.9 for r in rows)  # from the returned log-probabilities
    _no_key_anywhere(tmp_path, captured.out, captured.err)


def test_openai_api_key_alone_is_sent_and_named(server, candidates, tmp_path, monkeypatch, capsys):
    """Issue 24: with only OPENAI_API_KEY set, requests went out without Authorization and without a word."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "ai.jsonl"
    assert main(_args(candidates, out, server.url)) == 0
    captured = capsys.readouterr()
    assert server.headers and all(h.get("Authorization") == f"Bearer {KEY}" for h in server.headers)
    assert "API key from OPENAI_API_KEY" in captured.err  # which variable, never its value
    _no_key_anywhere(tmp_path, captured.out, captured.err)


def test_alignkit_key_wins_over_openai_api_key(server, candidates, tmp_path, key_env, monkeypatch, capsys):
    """Issue 24: ALIGNKIT_JUDGE_API_KEY is the judge's own variable and wins over OPENAI_API_KEY."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-other-OPENAI-9876543210")
    assert main(_args(candidates, tmp_path / "ai.jsonl", server.url)) == 0
    captured = capsys.readouterr()
    assert all(h.get("Authorization") == f"Bearer {KEY}" for h in server.headers)
    assert "API key from ALIGNKIT_JUDGE_API_KEY" in captured.err
    assert "sk-other-OPENAI" not in captured.out + captured.err
    _no_key_anywhere(tmp_path, captured.out, captured.err)


def test_no_key_sends_no_authorization_and_says_so(server, candidates, tmp_path, capsys):
    """Without either variable, requests carry no Authorization header, and one info line says so."""
    assert main(_args(candidates, tmp_path / "ai.jsonl", server.url)) == 0
    assert all("Authorization" not in h for h in server.headers)
    assert "no API key (ALIGNKIT_JUDGE_API_KEY or OPENAI_API_KEY not set)" in capsys.readouterr().err


def test_parses_the_reply_text_without_logprobs(candidates, tmp_path, capsys):
    fake = FakeJudge(logprobs=False)
    try:
        out = tmp_path / "ai.jsonl"
        assert main(_args(candidates, out, fake.url, "--no-http-logprobs")) == 0
        assert "logprobs" not in fake.requests[0]
    finally:
        fake.close()
    rows = [r for _, r in read_labels(out).rows]
    assert len(rows) == 6 and all(r["chosen"][0]["content"].startswith("GOOD") for r in rows)
    assert all(r["judge"]["p_chosen"] is None for r in rows)


def test_retries_500_429_garbage_and_dropped_connections(server, candidates, tmp_path, capsys):
    server.script = [
        ("status", 500, b"oops", {}),
        ("status", 429, b"slow down", {"Retry-After": "0"}),
        "garbage",
        "drop",
    ]
    out = tmp_path / "ai.jsonl"
    # four failures in a row, then success
    assert main(_args(candidates, out, server.url, "--retries", "4")) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == 6
    assert len(server.requests) == 6 + 4  # every failure was retried


def test_a_slow_reply_times_out_and_is_retried(server, candidates, tmp_path, capsys):
    server.script = ["slow"]
    out = tmp_path / "ai.jsonl"
    assert main(_args(candidates, out, server.url, "--timeout", "0.2")) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == 6
    assert len(server.requests) == 7


def test_timeouts_every_time_exit_1_with_a_clear_message(server, candidates, tmp_path, capsys):
    server.script = ["slow"] * 2
    assert (
        main(_args(candidates, tmp_path / "ai.jsonl", server.url, "--timeout", "0.2", "--retries", "1")) == 1
    )
    assert "no reply from http://127.0.0.1" in capsys.readouterr().err


def test_persistent_failure_exits_1_and_keeps_what_was_judged(server, candidates, tmp_path, key_env, capsys):
    out = tmp_path / "ai.jsonl"
    server.fail_after = 3
    assert main(_args(candidates, out, server.url)) == 1
    err = capsys.readouterr().err
    assert "keeps failing: HTTP 500" in err and "gave up after 4 tries" in err and "3 judgements" in err
    assert len(read_labels(out).rows) == 3
    server.fail_after = None  # the server recovers: the same command finishes the job
    assert main(_args(candidates, out, server.url)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["already_done"] == 3 and summary["judged"] == 3
    items = [r["item_id"] for _, r in read_labels(out).effective()]
    assert len(items) == len(set(items)) == 6


def test_auth_failure_exits_2_without_showing_the_key(server, candidates, tmp_path, key_env, capsys):
    server.script = [("status", 401, json.dumps({"error": f"invalid key {KEY}"}).encode(), {})]
    out = tmp_path / "ai.jsonl"
    assert main(_args(candidates, out, server.url)) == 2
    captured = capsys.readouterr()
    assert "ALIGNKIT_JUDGE_API_KEY" in captured.err and "HTTP 401" in captured.err
    assert len(server.requests) == 1  # not retried
    _no_key_anywhere(tmp_path, captured.out, captured.err)


def test_not_found_and_bad_request_exit_2(server, candidates, tmp_path, capsys):
    server.script = [("status", 404, b"no such route", {})]
    assert main(_args(candidates, tmp_path / "a.jsonl", server.url)) == 2
    assert "HTTP 404" in capsys.readouterr().err
    server.script = [("status", 400, b"logprobs not supported", {})]
    assert main(_args(candidates, tmp_path / "b.jsonl", server.url)) == 2
    assert "--no-http-logprobs" in capsys.readouterr().err


def test_unreachable_endpoint_exits_1(candidates, tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(_args(candidates, tmp_path / "a.jsonl", f"http://127.0.0.1:{port}/v1", "--retries", "2")) == 1
    assert re.search(r"cannot reach http://127\.0\.0\.1:\d+/v1/chat/completions", capsys.readouterr().err)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("htp://host/v1", "only http:// and https://"),
        ("http:///v1", "not a valid URL"),
        ("http://host:99999/v1", "invalid port"),
    ],
)
def test_bad_url_exits_2(candidates, tmp_path, url, why, capsys):
    assert main(_args(candidates, tmp_path / "a.jsonl", url)) == 2
    assert why in capsys.readouterr().err


def test_http_judge_needs_a_model_name(candidates, tmp_path, capsys):
    assert (
        main(
            [
                "judge",
                "--data",
                str(candidates),
                "--output",
                str(tmp_path / "a.jsonl"),
                "--judge",
                "http://127.0.0.1:1/v1",
            ]
        )
        == 2
    )
    assert "--judge-model" in capsys.readouterr().err


def test_unparsed_replies_become_skips(server, candidates, tmp_path, capsys):
    server.script = ["unparsed"]
    out = tmp_path / "ai.jsonl"
    assert main(_args(candidates, out, server.url)) == 0
    assert json.loads(capsys.readouterr().out)["unparsed"] == 1
    skips = [r for _, r in read_labels(out).rows if r["event"] == "skip"]
    assert (
        len(skips) == 1
        and skips[0]["reason"] == "unparsed"
        and skips[0]["judge"]["replies"] == ["I cannot decide"]
    )


def test_workers_in_parallel_give_the_same_labels(server, candidates, tmp_path, capsys):
    out = tmp_path / "ai.jsonl"
    assert main(_args(candidates, out, server.url, "--workers", "3", "--swap")) == 0
    rows = [r for _, r in read_labels(out).rows]
    assert len(rows) == 6 and all(
        r["event"] == "label" and r["chosen"][0]["content"].startswith("GOOD") for r in rows
    )


# ------------------------------------------------------------------------------------------- units
def test_endpoint_url():
    assert endpoint_url("http://h:8000/v1") == "http://h:8000/v1/chat/completions"
    assert endpoint_url("https://h/v1/") == "https://h/v1/chat/completions"
    assert endpoint_url("http://h/v1/chat/completions") == "http://h/v1/chat/completions"
    with pytest.raises(ConfigError):
        endpoint_url("ftp://h/v1")


@pytest.mark.parametrize(
    ("text", "winner"),
    [
        ("A", 0),
        (" b", 1),
        ("**B**", 1),
        ("Answer: A.", 0),
        ("B is better", 1),
        ("A or B", None),
        ("neither", None),
        ("", None),
    ],
)
def test_parse_choice(text, winner):
    assert parse_choice(text, ["A", "B"]) == winner


def test_logps_from_reply_sums_spellings_and_needs_both():
    top = [{"token": "A", "logprob": -1.0}, {"token": " A", "logprob": -1.0}, {"token": "B", "logprob": -0.5}]
    choice = {"logprobs": {"content": [{"token": "B", "logprob": -0.5, "top_logprobs": top}]}}
    lp = logps_from_reply(choice, ["A", "B"])
    assert lp == pytest.approx([-1.0 + 0.6931472, -0.5], abs=1e-6)
    assert (
        logps_from_reply(
            {"logprobs": {"content": [{"token": "A", "logprob": -0.1, "top_logprobs": []}]}}, ["A", "B"]
        )
        is None
    )
    assert parse_reply(b'{"choices": [{"message": {"content": "B"}}]}', ["A", "B"]).winner == 1
    with pytest.raises(judge_http.BadReply):
        parse_reply(b'{"choices": []}', ["A", "B"])


def test_rate_limiter_spaces_requests(monkeypatch):
    clock = {"t": 100.0}
    sleeps = []
    monkeypatch.setattr(judge_http.time, "monotonic", lambda: clock["t"])
    monkeypatch.setattr(judge_http.time, "sleep", lambda s: sleeps.append(s))
    limiter = RateLimiter(4.0)  # one request every 0.25 s
    for _ in range(3):
        limiter.wait()
    assert sleeps == pytest.approx([0.25, 0.5])
    RateLimiter(0).wait()  # no limit: never sleeps
    assert len(sleeps) == 2
