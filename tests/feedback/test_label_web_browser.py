"""`alignkit label --web` in a real browser: headless Chromium (Debian's package) driven by Playwright.

One server per mode and one browser for the module. The tests open an annotator's URL, judge with keys and
with clicks, undo, reload, and read the label file after each step; they check that a model's `<script>`
or `<img onerror>` is shown as text and never runs, and that markdown and code come out readable.

Skipped, with the reason, where Playwright or a Chromium is missing (`make test` prints which); with
ALIGNKIT_REQUIRE_CHROMIUM=1 (set by .ci/run) they fail instead. ALIGNKIT_UPDATE_SCREENSHOTS=1 also writes
the screenshots that docs/label.md shows to docs/images/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alignkit.data.labels import read_labels
from label_web import CHROMIUM, CHROMIUM_ARGS, WebServer, chromium_missing, web_config, write_jsonl

MISSING = chromium_missing()
if MISSING and os.environ.get("ALIGNKIT_REQUIRE_CHROMIUM"):
    raise RuntimeError(f"ALIGNKIT_REQUIRE_CHROMIUM is set, but the browser tests cannot run: {MISSING}")
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"browser tests of label --web: {MISSING}")

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
XSS = '<script>window.__xss = 1</script><img src="x" onerror="window.__xss = 2"> and <b>not bold</b>'
CODE_ANSWER = (
    "Use a list comprehension:\n\n```python\nsquares = [n * n for n in range(10)]\nprint(squares)\n```\n\n"
    "It is **shorter** than a loop; `range(10)` stops at 9."
)
PAIR_ROWS = [
    {
        "prompt": [
            {"role": "system", "content": "You are a concise Python tutor."},
            {"role": "user", "content": "How do I make a list of squares?"},
            {"role": "assistant", "content": "Of which numbers?"},
            {"role": "user", "content": "0 to 9, in Python."},
        ],
        "candidates": [CODE_ANSWER, "Write a for loop that appends n * n to a list, for n from 0 to 9."],
    },
    {"prompt": "Say hello.", "candidates": [XSS, "Hello!"]},
    {"prompt": "What is 2 + 2?", "candidates": ["4", "22"]},
    {"prompt": "Name a prime number.", "candidates": ["7", "9"]},
    {"prompt": "Capital of France?", "candidates": ["Paris", "Lyon"]},
]
RANK_ROWS = [
    {
        "prompt": f"Rank these answers to question {i}.",
        "candidates": [f"first {i}", f"second {i}", f"third {i}"],
    }
    for i in range(3)
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def pair_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    data = write_jsonl(folder / "candidates.jsonl", PAIR_ROWS)
    server = WebServer(web_config(data, folder / "labels.jsonl", "ana,ben", overlap=2))
    yield server
    server.close()


@pytest.fixture(scope="module")
def rank_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rank")
    data = write_jsonl(folder / "candidates.jsonl", RANK_ROWS)
    server = WebServer(web_config(data, folder / "labels.jsonl", "ana", mode="rank"))
    yield server
    server.close()


@pytest.fixture
def page(browser):
    """A fresh page; the test fails on any script error or dialog (an alert() from an answer).

    The page's Content-Security-Policy is bypassed here: it would stop an injected script too, and these
    tests are about the escaping itself (and Playwright's string predicates need eval).
    """
    context = browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    yield page
    context.close()
    assert not problems, problems


def wait_done(page, n: int) -> None:
    """Wait until the page shows ``n`` items done and no request is in flight (the server confirmed)."""
    page.wait_for_function(
        "n => document.body.dataset.done === String(n) && document.body.dataset.busy === '0'",
        arg=n,
        timeout=10_000,
    )


def rows(server: WebServer, who: str) -> list[dict]:
    return [row for _, row in read_labels(server.cfg.output).rows if row["annotator"] == who]


def screenshot(page, name: str, tmp_path: Path) -> None:
    """A PNG of the page (kept in tmp_path; also in docs/images/ with ALIGNKIT_UPDATE_SCREENSHOTS=1)."""
    data = page.screenshot(full_page=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    (tmp_path / name).write_bytes(data)
    if os.environ.get("ALIGNKIT_UPDATE_SCREENSHOTS"):
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        (DOCS_IMAGES / name).write_bytes(data)


def current(page) -> str:
    return page.get_attribute("body", "data-item-id")


def test_judge_with_keys_and_clicks_undo_and_reload(page, pair_server):
    page.goto(pair_server.urls["ana"])
    wait_done(page, 0)
    assert page.text_content("#annotator") == "ana"
    assert page.text_content("#progress") == "0 / 5 done · 5 left"
    assert page.locator("#answers .answer").count() == 2

    first, shown = current(page), page.locator("#answers .answer").nth(0).inner_text()
    page.keyboard.press("1")
    wait_done(page, 1)
    row = rows(pair_server, "ana")[-1]
    assert (row["event"], row["item_id"], row["choice"], row["ui"]) == ("label", first, 1, "web")
    assert row["chosen"][-1]["content"].splitlines()[0] in shown and row["seconds"] >= 0
    assert page.text_content("#progress") == "1 / 5 done · 4 left"

    second = current(page)
    page.click("button[data-choice='2']")
    wait_done(page, 2)
    assert (rows(pair_server, "ana")[-1]["item_id"], rows(pair_server, "ana")[-1]["choice"]) == (second, 2)

    page.keyboard.press("t")
    wait_done(page, 3)
    assert rows(pair_server, "ana")[-1]["event"] == "tie"
    unsure = current(page)
    page.keyboard.press("c")
    wait_done(page, 4)
    assert rows(pair_server, "ana")[-1]["reason"] == "cant_judge"

    page.keyboard.press("u")  # the can't-judge comes back
    wait_done(page, 3)
    assert current(page) == unsure and rows(pair_server, "ana")[-1]["event"] == "undo"
    page.reload()  # the server remembers: same item, same progress
    wait_done(page, 3)
    assert current(page) == unsure and page.text_content("#progress") == "3 / 5 done · 2 left"
    page.click("button[data-action='skip']")
    wait_done(page, 4)
    last = rows(pair_server, "ana")[-1]
    assert last["event"] == "skip" and "reason" not in last and last["item_id"] == unsure
    assert len({r["item_id"] for r in rows(pair_server, "ana") if r["event"] != "undo"}) == 4


def test_model_text_is_shown_as_text_and_markdown_is_readable(page, pair_server, tmp_path):
    page.goto(pair_server.urls["ben"])
    wait_done(page, 0)
    seen = set()
    for done in range(len(PAIR_ROWS)):
        wait_done(page, done)
        answers = page.locator("#answers")
        texts = [answers.locator(".answer").nth(i).inner_text() for i in range(2)]
        assert page.evaluate("window.__xss") is None
        assert answers.locator("script, img").count() == 0
        if any("<script>" in t for t in texts):
            seen.add("xss")
            assert any('<img src="x" onerror="window.__xss = 2">' in t for t in texts)
            assert answers.locator("b").count() == 0
            screenshot(page, "label-web-escaped.png", tmp_path)
        if any("list comprehension" in t for t in texts):
            seen.add("code")
            code = answers.locator("pre code")
            assert (
                code.count() == 1
                and code.inner_text() == "squares = [n * n for n in range(10)]\nprint(squares)"
            )
            assert answers.locator("strong").inner_text() == "shorter"
            assert answers.locator("p code").inner_text() == "range(10)"
            turns = page.locator("#prompt .turn")
            assert turns.count() == 4 and turns.nth(2).locator(".role").inner_text().lower() == "assistant"
            screenshot(page, "label-web-pair.png", tmp_path)
        page.keyboard.press("s")
    wait_done(page, len(PAIR_ROWS))
    assert seen == {"xss", "code"}
    assert page.locator("#finished").is_visible() and not page.locator("#task").is_visible()
    assert page.locator("button[data-action='undo']").is_enabled()
    assert page.evaluate("window.__xss") is None


def test_rank_mode_by_typing_and_clicking(page, rank_server, tmp_path):
    page.goto(rank_server.urls["ana"])
    wait_done(page, 0)
    assert page.locator("#answers .answer").count() == 3
    assert not page.locator("button[data-choice='1']").is_visible()  # no pair buttons in rank mode
    for key in "1 1":
        page.keyboard.press("Space" if key == " " else key)
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('status').className === 'error'")
    assert "once" in page.text_content("#status") and rows(rank_server, "ana") == []
    page.keyboard.press("Escape")
    for key in "2 1 3":
        page.keyboard.press("Space" if key == " " else key)
    assert page.text_content("#order") == "2 1 3"
    places = [page.inner_text(f"#answers .answer[data-shown='{n}'] .rank") for n in (1, 2, 3)]
    assert places == ["#2", "best", "#3"] and page.text_content("#status") == ""
    screenshot(page, "label-web-rank.png", tmp_path)
    page.keyboard.press("Enter")
    wait_done(page, 1)
    row = rows(rank_server, "ana")[-1]
    assert (row["event"], row["order"], row["ranks"], row["ui"]) == ("label", "2 1 3", [1, 0, 2], "web")
    for card in (3, 1, 2):
        page.click(f"#answers .answer[data-shown='{card}']")
    assert page.text_content("#order") == "3 1 2"
    page.click("#rank-save")
    wait_done(page, 2)
    assert rows(rank_server, "ana")[-1]["ranks"] == [1, 2, 0]
