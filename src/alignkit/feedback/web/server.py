"""`alignkit label --web`: load the candidates, open the label file, hand out the items, serve the page.

`run_label_web` does it all and blocks until Ctrl-C (SIGINT) or SIGTERM: uvicorn then stops taking
connections, lets the requests in flight finish (each judgement is fsync-ed before its answer), and the
label file is closed (its lock released). It returns a summary; exit status 0. `open_web` is the same set-up
without the serving, for tests and for another server.

It listens on 127.0.0.1 unless ``--host`` names another interface (the caller warns then: the tokens are
the only guard, and the traffic is plain HTTP). ``--port 0`` takes any free port; the port is bound here,
before anything is printed, so the URLs name the real one and a port in use is a one-line error.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from alignkit import console
from alignkit.errors import UserError
from alignkit.feedback.config import LabelConfig, require_paths
from alignkit.feedback.items import Candidates, load_candidates
from alignkit.feedback.store import LabelStore
from alignkit.feedback.web.app import make_app
from alignkit.feedback.web.desk import Desk
from alignkit.feedback.web.team import Team, open_team


def is_local(host: str) -> bool:
    """Does ``host`` serve this machine only (localhost, 127.0.0.0/8, ::1)?"""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip()).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


@dataclass
class WebLabelling:
    """An open labelling round: the candidates, the label file, the team, the desk and its app."""

    candidates: Candidates
    store: LabelStore
    team: Team
    desk: Desk
    app: Any


@contextlib.contextmanager
def open_web(cfg: LabelConfig) -> Iterator[WebLabelling]:
    """Everything `run_label_web` serves, set up (the label file stays locked until the block ends)."""
    require_paths(cfg.data, cfg.output, " (or `alignkit label stats LABELS`)")
    assert cfg.data and cfg.output
    names = cfg.annotator_names()
    candidates = load_candidates(cfg.data, cfg.skip_invalid, cfg.format)
    for note in candidates.notes:
        console.warn(note)
    with LabelStore.open(cfg.output, candidates.dataset, cfg.mode, cfg.append) as store:
        settings = {"dataset": candidates.dataset, "mode": cfg.mode, "overlap": cfg.overlap, "seed": cfg.seed}
        team = open_team(cfg.output, names, [item.item_id for item in candidates.items], settings)
        desk = Desk(candidates.items, store, team.assignment, cfg.mode, cfg.seed, cfg.revisit_skipped)
        yield WebLabelling(candidates, store, team, desk, make_app(desk, team))


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port); `UserError` when that cannot be."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UserError(f"--host {host}: not a name or address of this machine ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(
                f"--port {port} is in use on {host}; choose another (--port 0 takes any free one)"
            ) from None
        if e.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
            raise UserError(
                f"cannot listen on {host}:{port} ({e.strerror}); choose another --host or --port"
            ) from None
        raise
    return sock


def page_urls(team: Team, host: str, port: int) -> dict[str, str]:
    """Each annotator's URL (``http://HOST:PORT/?token=...``)."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return {name: f"http://{shown}:{port}/?token={quote(token)}" for name, token in team.tokens.items()}


def run_label_web(cfg: LabelConfig, on_ready: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Serve the labelling page until Ctrl-C; ``on_ready`` gets the URLs before the first request."""
    with open_web(cfg) as web:
        sock = bind(cfg.host, cfg.port)
        port = int(sock.getsockname()[1])
        desk = web.desk
        progress = desk.summary()
        on_ready(
            {
                "host": cfg.host,
                "port": port,
                "public": not is_local(cfg.host),
                "output": str(cfg.output),
                "mode": cfg.mode,
                "items": len(web.candidates.items),
                "overlap": cfg.overlap,
                "tokens_file": str(web.team.path),
                "annotators": {
                    who: {"url": url, **progress[who]}
                    for who, url in page_urls(web.team, cfg.host, port).items()
                },
            }
        )
        serve(web.app, sock)
        per_annotator = desk.summary()
    return {
        "output": str(cfg.output),
        "mode": cfg.mode,
        "saved_this_session": sum(a["saved_this_session"] for a in per_annotator.values()),
        "annotators": per_annotator,
    }


def uvicorn_server(app: Any) -> Any:
    """The uvicorn server `serve` runs (``.run(sockets=[sock])``; ``should_exit = True`` stops it)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,  # the page's URL carries a token: no request line is ever logged
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


def serve(app: Any, sock: socket.socket) -> None:
    """Run uvicorn on ``sock`` until SIGINT/SIGTERM, then shut down cleanly (no KeyboardInterrupt after)."""
    server = uvicorn_server(app)
    # uvicorn catches SIGINT/SIGTERM while it serves, shuts down, then raises the signal again against the
    # handlers it found: these, which only take note, so Ctrl-C ends in a summary instead of a traceback.
    handlers: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, _stopped)
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        sock.close()


def _stopped(signum: int, frame: Any) -> None:
    """The signal that stopped the server, raised again by uvicorn after its shutdown: nothing left to do."""
