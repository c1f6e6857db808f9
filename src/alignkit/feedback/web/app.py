"""The web page's HTTP side: a Starlette app over a `Desk`.

Routes:

* ``GET /?token=T``: the page (``static/index.html``); without a valid token 401 (none) or 403 (wrong),
  and a short text saying to open the URL the server printed: no data.
* ``GET /api/state``, ``POST /api/judge``, ``POST /api/undo``: JSON; the token comes in the
  ``Authorization: Bearer T`` header (the page reads it from its own URL), never in these URLs, so it is in
  no log line. 401/403 as above, 400 for a bad request, 409 when the item was already judged, 413 for a
  body over 64 KiB.
* ``GET /static/...``: the page's CSS and JS (package data; no data in them, so no token).

Every response carries a strict Content-Security-Policy (scripts and styles from this server only, no
inline script, no plugins, no framing), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``
and ``Cache-Control: no-store``. The page puts every text a model wrote into the document with
``textContent`` (never as HTML); the policy is a second wall, not the first.

The desk's methods block (an fsync per judgement), so they run in Starlette's thread pool.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from alignkit.feedback.web.desk import Desk, Refused
from alignkit.feedback.web.team import Team

MAX_BODY = 64 * 1024
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
NO_TOKEN = "open the URL that `alignkit label --web` printed for you (it carries your token)\n"


class SecurityHeaders:
    """ASGI middleware: `SECURITY_HEADERS` on every response."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in names
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _page() -> str:
    return resources.files("alignkit.feedback.web").joinpath("static/index.html").read_text(encoding="utf-8")


def make_app(desk: Desk, team: Team) -> Starlette:
    """The ASGI app serving ``desk`` to the annotators of ``team``."""
    page = _page()

    def annotator(token: str | None) -> str:
        if not token:
            raise Refused(401, "no token: " + NO_TOKEN.strip())
        who = team.who(token)
        if who is None:
            raise Refused(403, "this token is not valid: " + NO_TOKEN.strip())
        return who

    def bearer(request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None

    async def index(request: Request) -> Response:
        try:
            annotator(request.query_params.get("token"))
        except Refused as e:
            return PlainTextResponse(NO_TOKEN, status_code=e.status)
        return HTMLResponse(page)

    async def state(request: Request) -> Response:
        return await _answer(lambda: desk.view(annotator(bearer(request))))

    async def judge(request: Request) -> Response:
        who = _authorised(annotator, bearer(request))
        if isinstance(who, Response):
            return who
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        return await _answer(lambda: desk.judge(who, body))

    async def undo(request: Request) -> Response:
        return await _answer(lambda: desk.undo(annotator(bearer(request))))

    routes = [
        Route("/", index),
        Route("/api/state", state),
        Route("/api/judge", judge, methods=["POST"]),
        Route("/api/undo", undo, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("alignkit.feedback.web", "static")]), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(SecurityHeaders)
    return app


async def _answer(work: Any) -> Response:
    """Run ``work`` in the thread pool: its JSON, or the `Refused` status and message."""
    try:
        return JSONResponse(await run_in_threadpool(work))
    except Refused as e:
        return JSONResponse({"error": str(e)}, status_code=e.status)


def _authorised(annotator: Any, token: str | None) -> str | Response:
    try:
        return annotator(token)
    except Refused as e:
        return JSONResponse({"error": str(e)}, status_code=e.status)


async def _json_body(request: Request) -> dict[str, Any] | Response:
    """The request's JSON object, or the error response (413 when over `MAX_BODY`, 400 when not JSON)."""
    size = request.headers.get("content-length")
    if size is not None and (not size.isdigit() or int(size) > MAX_BODY):
        return JSONResponse({"error": "request too large"}, status_code=413)
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            return JSONResponse({"error": "request too large"}, status_code=413)
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
    return body
