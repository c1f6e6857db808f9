// alignkit label --web: the annotator's page.
//
// Safety: every text a model (or a data file) wrote reaches the document through textContent or
// createTextNode, never innerHTML: a <script> or an <img onerror> in an answer is shown as text and never
// runs. The small markdown reader below only splits text into blocks (code fences, paragraphs, `code`,
// **bold**) and builds elements for them; it never parses HTML.
//
// The page moves on only when the server answered that the judgement was written (fsync-ed).
"use strict";

(function () {
  const token = new URLSearchParams(window.location.search).get("token") || "";
  const $ = (id) => document.getElementById(id);
  let state = null;      // the server's view: annotator, mode, done, total, item, ...
  let busy = false;      // a request is in flight: keys and buttons wait
  let shownAt = 0;       // when the current item appeared (performance.now())
  let order = "";        // rank mode: what was typed or clicked so far

  // ------------------------------------------------------------------------------ server
  async function call(method, path, body) {
    const response = await fetch(path, {
      method: method,
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { ok: response.ok, status: response.status, data: data };
  }

  async function send(method, path, body) {
    if (busy) return;
    busy = true;
    setBusy(true);
    try {
      const r = await call(method, path, body);
      if (r.ok) {
        show(r.data);
      } else if (r.status === 409) {
        const fresh = await call("GET", "/api/state");
        if (fresh.ok) show(fresh.data);
        status((r.data && r.data.error) || "conflict", true);
      } else {
        status((r.data && r.data.error) || ("the server answered " + r.status + "; nothing was saved"), true);
      }
    } catch (e) {
      status("could not reach the server; nothing was saved: try again", true);
    } finally {
      busy = false;
      setBusy(false);
    }
  }

  // ------------------------------------------------------------------------------ text
  function inline(parent, text) {
    // `code` and **bold** inside a paragraph; everything else as plain text.
    const pattern = /(`[^`\n]+`|\*\*[^*\n]+\*\*)/g;
    let last = 0;
    let match;
    while ((match = pattern.exec(text)) !== null) {
      if (match.index > last) parent.appendChild(document.createTextNode(text.slice(last, match.index)));
      const piece = match[0];
      const el = document.createElement(piece.startsWith("`") ? "code" : "strong");
      el.textContent = piece.startsWith("`") ? piece.slice(1, -1) : piece.slice(2, -2);
      parent.appendChild(el);
      last = match.index + piece.length;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function paragraphs(box, text) {
    for (const para of text.split(/\n{2,}/)) {
      if (!para.trim()) continue;
      const p = document.createElement("p");
      inline(p, para.replace(/^\n+|\n+$/g, ""));
      box.appendChild(p);
    }
  }

  function renderText(parent, text) {
    // Paragraphs, and ``` fenced code blocks (an unclosed fence runs to the end), as elements.
    const box = document.createElement("div");
    box.className = "text";
    const opening = /(^|\n)```([^\n`]*)\n/;
    let rest = String(text);
    for (;;) {
      const m = opening.exec(rest);
      if (!m) { paragraphs(box, rest); break; }
      paragraphs(box, rest.slice(0, m.index));
      const start = m.index + m[0].length;
      const close = rest.indexOf("\n```", start - 1);
      const end = close < 0 ? rest.length : close;
      const pre = document.createElement("pre");
      if (m[2].trim()) {
        const lang = document.createElement("span");
        lang.className = "lang";
        lang.textContent = m[2].trim();
        pre.appendChild(lang);
      }
      const code = document.createElement("code");
      code.textContent = rest.slice(start, Math.max(start, end));
      pre.appendChild(code);
      box.appendChild(pre);
      if (close < 0) break;
      const after = rest.indexOf("\n", close + 4);
      rest = after < 0 ? "" : rest.slice(after + 1);
    }
    parent.appendChild(box);
  }

  function renderTurns(parent, conversation, showRoles) {
    for (const message of conversation) {
      const turn = document.createElement("div");
      const plain = !showRoles && parent.classList.contains("answer");  // one answer: no box in the card
      turn.className = (plain ? "turn plain" : "turn") + " role-" + String(message.role).replace(/[^a-z]/g, "");
      if (showRoles) {
        const role = document.createElement("div");
        role.className = "role";
        role.textContent = String(message.role);
        turn.appendChild(role);
      }
      renderText(turn, message.content);
      parent.appendChild(turn);
    }
  }

  // ------------------------------------------------------------------------------ page
  function status(text, isError) {
    const el = $("status");
    el.textContent = text || "";
    el.className = isError ? "error" : "";
  }

  function setBusy(on) {
    document.body.dataset.busy = on ? "1" : "0";
    for (const b of document.querySelectorAll("button")) b.disabled = on || b.dataset.off === "1";
  }

  function show(view) {
    state = view;
    $("annotator").textContent = view.annotator;
    $("progress").textContent = view.done + " / " + view.total + " done · " + view.remaining + " left";
    $("bar").max = Math.max(1, view.total);
    $("bar").value = view.done;
    document.body.dataset.mode = view.mode;
    document.body.dataset.itemId = view.item ? view.item.item_id : "";
    document.body.dataset.done = String(view.done);
    const item = view.item;
    $("task").hidden = !item;
    $("finished").hidden = !!item;
    for (const b of document.querySelectorAll("#actions button")) {
      const off = (b.classList.contains("pair-only") && (view.mode !== "pair" || !item)) ||
        (b.classList.contains("item-only") && !item) ||
        (b.dataset.action === "undo" && !view.can_undo);
      b.dataset.off = off ? "1" : "0";
      b.hidden = b.classList.contains("pair-only") && view.mode !== "pair";
      b.disabled = off || busy;
    }
    $("help").textContent = view.mode === "pair"
      ? "Keys: 1 / 2 the better answer · t tie · c can't judge · s skip · u undo"
      : "Keys: the answers' numbers best first (3 1 2, = ties: 1=2), Enter saves · Esc clears · t all equal · c can't judge · s skip · u undo";
    order = "";
    $("order").textContent = "";
    $("rank-entry").hidden = !item || view.mode !== "rank";
    if (item) drawItem(item, view.mode);
    status(view.message || "");
    shownAt = performance.now();
  }

  function drawItem(item, mode) {
    const prompt = $("prompt");
    prompt.replaceChildren();
    renderTurns(prompt, item.prompt, item.prompt.length > 1 || item.prompt[0].role !== "user");
    const answers = $("answers");
    answers.replaceChildren();
    item.answers.forEach(function (answer, index) {
      const card = document.createElement("article");
      card.className = "answer" + (mode === "rank" ? " rankable" : "");
      card.dataset.shown = String(index + 1);
      const title = document.createElement("h3");
      title.textContent = "[" + (index + 1) + "]";
      if (mode === "rank") {
        const place = document.createElement("span");
        place.className = "rank";
        title.appendChild(place);
      }
      card.appendChild(title);
      renderTurns(card, answer, answer.length > 1);
      if (mode === "rank") card.addEventListener("click", function () { typeOrder(String(index + 1), true); });
      answers.appendChild(card);
    });
    $("answers-title").textContent = mode === "pair" ? "Which answer is better?" : "Order the answers, best first";
  }

  // ------------------------------------------------------------------------------ actions
  function judge(action, extra) {
    if (!state || !state.item) return;
    const body = Object.assign({
      item_id: state.item.item_id,
      action: action,
      shown_order: state.item.shown_order,
      seconds: (performance.now() - shownAt) / 1000,
    }, extra || {});
    send("POST", "/api/judge", body);
  }

  function act(action, choice) {
    if (action === "undo") send("POST", "/api/undo", {});
    else if (action === "choose") judge("choose", { choice: Number(choice) });
    else judge(action);
  }

  function setOrder(text) {
    // What was typed so far, and each answer's place in it on its card ("1st", "2nd", ...).
    order = text;
    $("order").textContent = order;
    status("");
    const place = {};
    order.replace(/,/g, " ").split(/\s+/).filter(Boolean).forEach(function (group, rank) {
      for (const n of group.split("=")) if (n && !(n in place)) place[n] = rank + 1;
    });
    for (const card of document.querySelectorAll("#answers .answer")) {
      const span = card.querySelector(".rank");
      const rank = place[card.dataset.shown];
      if (span) span.textContent = rank ? (rank === 1 ? "best" : "#" + rank) : "";
    }
  }

  function typeOrder(text, clicked) {
    const sep = clicked && order && !order.endsWith(" ") && !order.endsWith("=") ? " " : "";
    setOrder(order + sep + text);
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-action]");
    if (!button || button.disabled) return;
    button.blur();  // so that Space or Enter next does not press it again for the next item
    act(button.dataset.action, button.dataset.choice);
  });
  $("rank-save").addEventListener("click", function () { $("rank-save").blur(); judge("rank", { order: order }); });
  $("rank-clear").addEventListener("click", function () { setOrder(""); });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || busy || !state) return;
    const key = event.key;
    const rank = state.mode === "rank" && state.item;
    if (rank && /^[0-9 =,]$/.test(key)) { typeOrder(key, false); event.preventDefault(); return; }
    if (rank && key === "Backspace") { setOrder(order.slice(0, -1)); event.preventDefault(); return; }
    if (rank && key === "Escape") { setOrder(""); return; }
    if (rank && key === "Enter") { judge("rank", { order: order }); event.preventDefault(); return; }
    const actions = { t: "tie", s: "skip", c: "cant_judge", u: "undo" };
    if (state.mode === "pair" && (key === "1" || key === "2") && state.item) { act("choose", key); event.preventDefault(); }
    else if (actions[key] && (key === "u" || state.item)) { act(actions[key]); event.preventDefault(); }
  });

  (async function start() {
    setBusy(true);
    busy = true;
    try {
      const r = await call("GET", "/api/state");
      if (r.ok) show(r.data);
      else status((r.data && r.data.error) || ("the server answered " + r.status), true);
    } catch (e) {
      status("could not reach the server", true);
    } finally {
      busy = false;
      setBusy(false);
    }
  })();
})();
