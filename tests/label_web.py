"""Helpers for the tests of `alignkit label --web`: a real server in a thread, requests, candidate files.

Imported as ``from label_web import ...`` (tests/conftest.py puts this folder on ``sys.path``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def candidate_rows(n: int, k: int = 2) -> list[dict]:
    """`alignkit sample`-style rows: n prompts with k answers each."""
    return [
        {"prompt": f"Question number {i}?", "candidates": [f"answer {j} to question {i}" for j in range(k)]}
        for i in range(n)
    ]


class WebServer:
    """`alignkit label --web`'s app on a real uvicorn in a thread, on a free port of 127.0.0.1.

    The same set-up as the command (`open_web`), so the label file is locked while it runs; `close` stops
    uvicorn the way Ctrl-C does (``should_exit``) and closes the label file.
    """

    def __init__(self, cfg):
        import threading

        from alignkit.feedback.web.server import bind, open_web, page_urls, uvicorn_server

        self.cfg = cfg
        self._context = open_web(cfg)
        self.web = self._context.__enter__()
        self.sock = bind("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.urls = page_urls(self.web.team, "127.0.0.1", self.port)
        self.tokens = dict(self.web.team.tokens)
        self.server = uvicorn_server(self.web.app)  # configured as `alignkit label --web` runs it
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            threading.Event().wait(0.01)
        assert self.server.started, "uvicorn did not start"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
        self._context.__exit__(None, None, None)


def api(base: str, method: str, path: str, token: str | None = None, body=None, raw: bytes | None = None):
    """(status, JSON or text) of one request to the label server; the token goes in the bearer header."""
    import urllib.error
    import urllib.request

    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, payload, kind = response.status, response.read(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        status, payload, kind = e.code, e.read(), e.headers.get("content-type", "")
    return status, json.loads(payload) if "json" in kind else payload.decode()


def web_config(data: Path, output: Path, annotators: str, **options):
    from alignkit.feedback.config import LabelConfig

    cfg = LabelConfig(data=str(data), output=str(output), web=True, annotators=annotators, port=0, **options)
    cfg.validate()
    return cfg


# ------------------------------------------------------------------------------------------ browser
CHROMIUM = os.environ.get("ALIGNKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here (a sentence), or None: they need Playwright and a Chromium."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set ALIGNKIT_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright; its own browser download is not needed)"
    return None


def browser_report_line() -> str:
    """The line `make test` prints about the browser tests of `label --web`."""
    why = chromium_missing()
    if why is None:
        return f"browser tests (label --web): run, headless Chromium at {CHROMIUM}"
    required = (
        " (ALIGNKIT_REQUIRE_CHROMIUM=1: they fail)" if os.environ.get("ALIGNKIT_REQUIRE_CHROMIUM") else ""
    )
    return f"browser tests (label --web): SKIPPED, {why}{required}"
