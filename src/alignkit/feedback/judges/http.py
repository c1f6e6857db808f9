"""An OpenAI-compatible chat-completions endpoint as judge (urllib only: no new dependency).

One POST ``{base}/chat/completions`` per judge prompt: the template as the user message, ``max_tokens=1``,
``temperature=0`` and (unless turned off) ``logprobs`` with the top 5 alternatives. The decision comes from
the two names' log-probabilities when the reply carries them, else from the reply text, parsed leniently
("B", "**B**", "Answer: B"; a reply naming both or neither is *unparsed* and becomes a skip row).

Failures:

* 429, 5xx, a reply that is not the expected JSON, a timeout or a connection error: retried ``retries``
  times, waiting ``retry_wait`` seconds doubled each time (or what a Retry-After header says, at most 60 s),
  then `JudgeEndpointError` (exit status 1);
* 401/403 (the key), 404 (the URL or model), other 4xx (the request): `UserError` at once (exit status 2).

The key comes from ``ALIGNKIT_JUDGE_API_KEY``, else ``OPENAI_API_KEY`` (the variable every OpenAI-compatible
client reads); one info line names the variable used (never the value). It is only ever put in the
Authorization header: it is not stored in the config, and any error text that might echo it is redacted.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

from alignkit import console
from alignkit.errors import ConfigError, UserError
from alignkit.feedback.judges.base import JudgeEndpointError, JudgeInput, Verdict, verdict_from_logps
from alignkit.feedback.templates import Template

API_KEY_ENV = "ALIGNKIT_JUDGE_API_KEY"
API_KEY_ENVS = (API_KEY_ENV, "OPENAI_API_KEY")  # first one set wins
MAX_WAIT_S = 60.0
SNIPPET = 200
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def endpoint_url(base: str) -> str:
    """``http(s)://host[:port]/v1`` -> ``.../v1/chat/completions`` (a full endpoint URL is kept)."""
    text = base.strip()
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"--judge {base!r} is not a valid URL; expected http(s)://host:port/v1")
    try:
        parsed.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"--judge {base!r} has an invalid port") from None
    path = parsed.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions"
    return parsed._replace(path=path, params="", query=parsed.query, fragment="").geturl()


def api_key_from_env() -> tuple[str | None, str | None]:
    """(key, the variable it came from): the first non-empty of `API_KEY_ENVS`, else (None, None)."""
    for name in API_KEY_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            return value, name
    return None, None


class RateLimiter:
    """At most ``rate`` calls of `wait` return per second, across threads (0: no limit)."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


def _clean(token: str) -> str:
    return token.strip().strip("*_`'\".:()[]{}").strip()


def parse_choice(text: str, choices: list[str]) -> int | None:
    """Which of ``choices`` a reply names: the whole reply, else the only name standing alone in it."""
    core = _clean(text)
    for i, name in enumerate(choices):
        if core.upper() == name.upper():
            return i
    found = {
        i
        for i, name in enumerate(choices)
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", text)
    }
    return found.pop() if len(found) == 1 else None


def logps_from_reply(choice: dict[str, Any], names: list[str]) -> list[float] | None:
    """The two names' log-probabilities at the first generated token, when the reply carries both."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict) or not logprobs.get("content"):
        return None
    first = logprobs["content"][0]
    if not isinstance(first, dict):
        return None
    alternatives = list(first.get("top_logprobs") or []) + [first]
    found: list[list[float]] = [[], []]
    seen: set[str] = set()
    for alt in alternatives:
        if not isinstance(alt, dict) or not isinstance(alt.get("token"), str) or alt["token"] in seen:
            continue
        seen.add(alt["token"])
        for i, name in enumerate(names):
            if _clean(alt["token"]).upper() == name.upper() and isinstance(alt.get("logprob"), (int, float)):
                found[i].append(float(alt["logprob"]))
    if not found[0] or not found[1]:
        return None
    return [math.log(sum(math.exp(lp) for lp in group)) for group in found]


class BadReply(Exception):
    pass


def parse_reply(body: bytes, names: list[str]) -> Verdict:
    """A `Verdict` from a chat-completions response body; `BadReply` when it is not one."""
    try:
        data = json.loads(body.decode("utf-8"))
        choice = data["choices"][0]
        message = choice.get("message") or {}
        text = message.get("content") or ""
        if not isinstance(text, str):
            raise TypeError("content is not text")
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as e:
        snippet = body[:80].decode("utf-8", "replace")
        raise BadReply(f"the reply is not a chat completion ({type(e).__name__}: {snippet!r})") from None
    logps = logps_from_reply(choice, names)
    if logps is not None:
        return verdict_from_logps(logps[0], logps[1], reply=text)
    winner = parse_choice(text, names)
    if winner is None:
        return Verdict(None, reply=text, problem=f"unparsed reply {text[:60]!r}")
    return Verdict(winner, first=None, reply=text)


class HttpJudge:
    """``judge(inputs)`` sends one request per input (``workers`` at a time) and returns their verdicts."""

    def __init__(
        self,
        base_url: str,
        model: str,
        template: Template,
        choices: list[str],
        timeout: float = 60.0,
        retries: int = 5,
        retry_wait: float = 1.0,
        rate: float = 0.0,
        workers: int = 1,
        max_tokens: int = 1,
        logprobs: bool = True,
        api_key: str | None = None,
    ):
        self.endpoint = endpoint_url(base_url)
        self.name, self.model, self.template, self.choices = model, model, template, choices
        self.timeout, self.retries, self.retry_wait, self.workers = timeout, retries, retry_wait, workers
        self.max_tokens, self.logprobs = max_tokens, logprobs
        self._key_source = "the caller" if api_key is not None else None
        self._key = api_key or None
        if api_key is None:
            self._key, self._key_source = api_key_from_env()
            if self._key_source:  # the name only: the value is never printed or logged
                console.info(f"judge endpoint: API key from {self._key_source}")
            else:
                console.info(
                    f"judge endpoint: no API key ({' or '.join(API_KEY_ENVS)} not set); requests carry no "
                    "Authorization header"
                )
        self.limiter = RateLimiter(rate)
        handlers: list[Any] = []
        if urlparse(self.endpoint).hostname in _LOOPBACK:
            handlers.append(urllib.request.ProxyHandler({}))  # a local server is never behind a proxy
        self._opener = urllib.request.build_opener(*handlers)
        self.requests = 0  # requests sent, retries included

    # --------------------------------------------------------------- helpers
    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def payload(self, inp: JudgeInput) -> dict[str, Any]:
        text = self.template.render(inp.prompt, inp.answer_a, inp.answer_b, *self.choices)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }
        if self.logprobs:
            body.update(logprobs=True, top_logprobs=5)
        return body

    def _post(self, body: dict[str, Any]) -> tuple[int, bytes, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(
            self.endpoint, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        self.requests += 1
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.read() or b"", e.headers

    def _wait_s(self, attempt: int, retry_after: Any) -> float:
        try:
            if retry_after is not None:
                return min(MAX_WAIT_S, max(0.0, float(retry_after)))
        except (TypeError, ValueError):
            pass  # an HTTP date: fall back to the exponential wait
        return min(MAX_WAIT_S, self.retry_wait * 2**attempt) * (1 + 0.1 * random.random())

    def _snippet(self, body: bytes) -> str:
        return self._redact(body[:SNIPPET].decode("utf-8", "replace").strip())

    # --------------------------------------------------------------- requests
    def request(self, inp: JudgeInput) -> Verdict:
        """One judgement, with retries; raises `UserError` (bad request / key / URL) or `JudgeEndpointError`."""
        body = self.payload(inp)
        problem = ""
        for attempt in range(self.retries + 1):
            self.limiter.wait()
            retry_after = None
            try:
                status, data, headers = self._post(body)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                reason = getattr(e, "reason", e)
                if isinstance(reason, TimeoutError):
                    problem = f"no reply from {self.endpoint} within --timeout {self.timeout:g} s"
                else:
                    problem = f"cannot reach {self.endpoint}: {self._redact(str(reason))}"
            else:
                if status == 200:
                    try:
                        return parse_reply(data, self.choices)
                    except BadReply as e:
                        problem = self._redact(str(e))
                elif status in (401, 403):
                    raise UserError(
                        f"the judge endpoint {self.endpoint} refused the request (HTTP {status}): "
                        + (
                            f"the key from {self._key_source} was not accepted"
                            if self._key
                            else f"no key is set: set {API_KEY_ENV} (or OPENAI_API_KEY)"
                        )
                        + f"; server said: {self._snippet(data)}"
                    )
                elif status == 404:
                    raise UserError(
                        f"HTTP 404 from {self.endpoint}: no chat-completions endpoint there or no model "
                        f"{self.model!r}; --judge should be the API base (ending in /v1); server said: "
                        f"{self._snippet(data)}"
                    )
                elif status == 429 or status >= 500:
                    problem = f"HTTP {status} from {self.endpoint}: {self._snippet(data)}"
                    retry_after = headers.get("Retry-After") if headers is not None else None
                else:
                    raise UserError(
                        f"the judge endpoint rejected the request (HTTP {status}): {self._snippet(data)}; check "
                        "--judge-model (and try --no-http-logprobs if it does not support log-probabilities)"
                    )
            if attempt < self.retries:
                time.sleep(self._wait_s(attempt, retry_after))
        raise JudgeEndpointError(
            f"the judge endpoint keeps failing: {problem} (gave up after {self.retries + 1} tries)"
        )

    def judge(self, inputs: list[JudgeInput]) -> list[Verdict]:
        if self.workers <= 1 or len(inputs) <= 1:
            return [self.request(inp) for inp in inputs]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(self.request, inp) for inp in inputs]
            error: BaseException | None = None
            results: list[Verdict] = []
            for future in futures:
                try:
                    results.append(future.result())
                except BaseException as e:  # keep the first failure; let the others finish
                    error = error or e
                    for other in futures:
                        other.cancel()
            if error is not None:
                raise error
            return results
