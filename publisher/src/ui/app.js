// The fleet view (DESIGN.md §14). No framework and no external assets:
// the page polls GET /api/v1/fleet with the publisher token and renders
// with DOM APIs and textContent only (names come from users).
"use strict";

(() => {
  const POLL_MS = 500;
  const BACKOFF_MS = 5000;
  const REQUEST_TIMEOUT_MS = 4000;
  const DETAIL_REFRESH_MS = 5000;
  const TOKEN_KEY = "artisync.publisherToken";
  const STATES = ["in-sync", "behind", "failed", "absent"];

  // ---- small DOM helpers -------------------------------------------------

  const $ = (id) => document.getElementById(id);

  /** An element with a class, text and attributes (never HTML). */
  function el(tag, options, ...children) {
    const e = document.createElement(tag);
    const o = options || {};
    if (o.className) e.className = o.className;
    if (o.text !== undefined && o.text !== null) e.textContent = String(o.text);
    if (o.attrs) {
      for (const [name, value] of Object.entries(o.attrs)) {
        if (value !== undefined && value !== null) e.setAttribute(name, String(value));
      }
    }
    for (const child of children) {
      if (child !== null && child !== undefined) e.append(child);
    }
    return e;
  }

  function setText(e, text) {
    const t = String(text);
    if (e.textContent !== t) e.textContent = t;
  }

  function setAttr(e, name, value) {
    if (value === null || value === undefined) {
      if (e.hasAttribute(name)) e.removeAttribute(name);
    } else if (e.getAttribute(name) !== String(value)) {
      e.setAttribute(name, String(value));
    }
  }

  function setClass(e, className) {
    if (e.className !== className) e.className = className;
  }

  function dash(value) {
    return value === null || value === undefined || value === "" ? "–" : String(value);
  }

  function byNumericText(a, b) {
    return a.localeCompare(b, undefined, { numeric: true });
  }

  const two = (n) => String(n).padStart(2, "0");

  /** Local time: HH:MM:SS today, else YYYY-MM-DD HH:MM:SS (full time in the title). */
  function timeEl(iso) {
    if (!iso) return el("span", { className: "muted", text: "–" });
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return el("span", { text: iso });
    const time = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
    const day = `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}`;
    const today = new Date().toDateString() === d.toDateString();
    return el("time", { text: today ? time : `${day} ${time}`, attrs: { datetime: iso, title: iso } });
  }

  function millis(n) {
    return typeof n === "number" ? String(Math.round(n)) : dash(n);
  }

  function bytes(n) {
    if (typeof n !== "number") return dash(n);
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }

  function chips(labels) {
    const span = el("span", { className: "chips" });
    for (const label of labels || []) span.append(el("span", { className: "chip", text: label }));
    return span;
  }

  /**
   * Keeps tbody's rows equal to items, in order, reusing the row of each
   * key (so that focus, selection and element references survive a poll).
   */
  function syncRows(tbody, items, keyOf, create, update) {
    const existing = new Map();
    for (const row of Array.from(tbody.children)) existing.set(row.dataset.key, row);
    let previous = null;
    for (const item of items) {
      const key = keyOf(item);
      let row = existing.get(key);
      if (row) {
        existing.delete(key);
      } else {
        row = create(item);
        row.dataset.key = key;
      }
      update(row, item);
      const wanted = previous ? previous.nextSibling : tbody.firstChild;
      if (row !== wanted) tbody.insertBefore(row, wanted);
      previous = row;
    }
    for (const row of existing.values()) row.remove();
  }

  // ---- the publisher API -------------------------------------------------

  class AuthError extends Error {}
  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }
  class NetworkError extends Error {}

  let token = sessionStorage.getItem(TOKEN_KEY);

  /** GET a JSON document with the token; a 401 asks for the token again. */
  async function getJson(path) {
    const used = token;
    if (!used) throw new AuthError("no token");
    const controller = new AbortController();
    const timeout = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    let response;
    let text;
    try {
      response = await fetch(path, {
        headers: { Authorization: `Bearer ${used}`, Accept: "application/json" },
        cache: "no-store",
        signal: controller.signal,
      });
      text = await response.text();
    } catch (e) {
      throw new NetworkError(
        e && e.name === "AbortError"
          ? `the publisher did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`
          : "the publisher cannot be reached",
      );
    } finally {
      clearTimeout(timeout);
    }
    let body = null;
    try {
      body = JSON.parse(text);
    } catch (_) {
      body = null;
    }
    if (response.status === 401) {
      // Only when the refused token is still the one in use.
      if (token === used) askForToken("The publisher refused the token (401). Enter it again.");
      throw new AuthError("unauthorized");
    }
    if (!response.ok) {
      const message = body && typeof body.message === "string" ? body.message : response.statusText;
      throw new HttpError(response.status, `${response.status}: ${message || "error"}`);
    }
    if (body === null) throw new HttpError(response.status, "the answer is not JSON");
    return body;
  }

  // ---- the token ---------------------------------------------------------

  function askForToken(message) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    stopPolling();
    clearFleet();
    closeDetail();
    $("fleet").hidden = true;
    $("forget").hidden = true;
    $("banner").hidden = true;
    $("login").hidden = false;
    $("token-form").querySelector("button").disabled = false;
    setText($("login-error"), message || "");
    setText($("status"), "Waiting for the publisher token");
    setText($("updated"), "");
    const input = $("token");
    input.value = "";
    input.focus();
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    token = value;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    $("token-form").querySelector("button").disabled = true;
    setText($("login-error"), "");
    setText($("status"), "Checking the token…");
    startPolling();
  });

  $("forget").addEventListener("click", () => askForToken(""));

  // ---- polling -----------------------------------------------------------

  let timer = null;
  let inFlight = false;
  let nextPollAt = 0;

  function startPolling() {
    nextPollAt = 0;
    if (timer === null) timer = setInterval(tick, POLL_MS);
    tick();
  }

  function stopPolling() {
    if (timer !== null) clearInterval(timer);
    timer = null;
  }

  async function tick() {
    // One request at a time: a tick while one is in flight is skipped.
    if (!token || inFlight || Date.now() < nextPollAt) return;
    inFlight = true;
    const used = token;
    try {
      const data = await getJson("/api/v1/fleet");
      if (token !== used) return;
      connected();
      render(data);
    } catch (e) {
      if (e instanceof AuthError || token !== used) return;
      nextPollAt = Date.now() + BACKOFF_MS;
      disconnected(e);
    } finally {
      inFlight = false;
    }
  }

  function connected() {
    $("banner").hidden = true;
    $("login").hidden = true;
    $("fleet").hidden = false;
    $("forget").hidden = false;
  }

  function disconnected(error) {
    const banner = $("banner");
    const what =
      error instanceof NetworkError
        ? `Disconnected: ${error.message}.`
        : `The publisher answered ${error.message}.`;
    setText(banner, `${what} Retrying every ${BACKOFF_MS / 1000} s.`);
    banner.hidden = false;
    setText($("status"), "Disconnected");
    if (!$("login").hidden) {
      $("token-form").querySelector("button").disabled = false;
      setText($("login-error"), what);
    }
  }

  // ---- rendering the fleet -----------------------------------------------

  let fleet = null;

  function clearFleet() {
    fleet = null;
    $("nodes").tBodies[0].replaceChildren();
    $("grid").tHead.rows[0].replaceChildren();
    $("grid").tBodies[0].replaceChildren();
    $("grid").dataset.columns = "";
  }

  function render(data) {
    fleet = data;
    const nodes = (Array.isArray(data.nodes) ? data.nodes : [])
      .slice()
      .sort((a, b) => byNumericText(String(a.nodeId), String(b.nodeId)));
    const apis = (Array.isArray(data.apis) ? data.apis : [])
      .slice()
      .sort((a, b) => byNumericText(`${a.name}:${a.version}`, `${b.name}:${b.version}`));
    renderNodes(nodes, data.generatedAt);
    renderGrid(apis, nodes);
    renderStatus(nodes, apis, data.generatedAt);
    renderSelected(apis);
  }

  function heartbeatAge(generatedAt, lastHeartbeat) {
    const now = Date.parse(generatedAt);
    const then = Date.parse(lastHeartbeat);
    if (Number.isNaN(now) || Number.isNaN(then)) return "–";
    const seconds = Math.max(0, (now - then) / 1000);
    return seconds < 10 ? seconds.toFixed(1) : String(Math.round(seconds));
  }

  function renderNodes(nodes, generatedAt) {
    const tbody = $("nodes").tBodies[0];
    syncRows(
      tbody,
      nodes,
      (n) => String(n.nodeId),
      () => {
        const row = el("tr");
        row.append(el("th", { attrs: { scope: "row" } }));
        for (let i = 0; i < 8; i += 1) row.append(el("td"));
        for (const i of [3, 5, 6, 7, 8]) row.cells[i].className = "num";
        return row;
      },
      (row, n) => {
        const c = row.cells;
        setAttr(row, "data-node-id", n.nodeId);
        setClass(row, n.stale ? "stale" : "");
        setText(c[0], n.nodeId);
        const labels = JSON.stringify(n.labels || []);
        if (c[1].dataset.labels !== labels) {
          c[1].dataset.labels = labels;
          c[1].replaceChildren(chips(n.labels));
        }
        setText(c[2], n.ready ? "ready" : "not ready");
        setClass(c[2], n.ready ? "ok" : "bad");
        setText(c[3], heartbeatAge(generatedAt, n.lastHeartbeat));
        setAttr(c[3], "title", n.lastHeartbeat ? `last heartbeat ${n.lastHeartbeat}` : null);
        setText(c[4], n.stale ? "stale" : "no");
        setClass(c[4], n.stale ? "bad" : "muted");
        setText(c[5], dash(n.apisInSync));
        setText(c[6], dash(n.apisBehind));
        setClass(c[6], n.apisBehind > 0 ? "num warn" : "num");
        setText(c[7], dash(n.apisFailed));
        setClass(c[7], n.apisFailed > 0 ? "num bad" : "num");
        const details = n.details && typeof n.details === "object" ? n.details : {};
        setText(c[8], dash(details.queueBacklog));
      },
    );
    $("nodes-empty").hidden = nodes.length > 0;
  }

  function cellText(entry, state) {
    if (state === "absent") return "·";
    return `${dash(entry.appliedRevision)}/${dash(entry.desiredRevision)}`;
  }

  function cellTitle(api, nodeId, entry, state) {
    const name = `${api.name}:${api.version} on ${nodeId}`;
    if (!entry) return `${name}: not deployed there`;
    const parts = [`${name}: ${state}`, entry.status ? entry.status.toLowerCase() : null];
    parts.push(`applied ${dash(entry.appliedRevision)} of ${dash(entry.desiredRevision)}`);
    if (entry.error) parts.push(entry.error);
    return parts.filter(Boolean).join("; ");
  }

  function renderGrid(apis, nodes) {
    const table = $("grid");
    const nodeIds = nodes.map((n) => String(n.nodeId));
    const columns = JSON.stringify(nodeIds);
    const tbody = table.tBodies[0];
    if (table.dataset.columns !== columns) {
      // Other nodes: new columns, so every row is built again.
      table.dataset.columns = columns;
      const head = table.tHead.rows[0];
      head.replaceChildren(el("th", { text: "API", attrs: { scope: "col" } }));
      for (const id of nodeIds) head.append(el("th", { text: id, attrs: { scope: "col" } }));
      tbody.replaceChildren();
    }
    syncRows(
      tbody,
      apis,
      (a) => String(a.id),
      (a) => {
        const row = el("tr");
        const button = el("button", {
          className: "api-link",
          attrs: { type: "button", "data-api-id": a.id },
        });
        button.append(el("span", { className: "api-name" }), el("span", { className: "api-context muted" }));
        row.append(el("th", { attrs: { scope: "row" } }, button));
        for (const id of nodeIds) row.append(el("td", { attrs: { "data-api": a.id, "data-node": id } }));
        return row;
      },
      (row, a) => {
        const button = row.cells[0].firstChild;
        setText(button.children[0], `${a.name}:${a.version}`);
        setText(button.children[1], dash(a.context));
        setAttr(button, "aria-pressed", a.id === selected ? "true" : "false");
        setClass(row, a.id === selected ? "selected" : "");
        const byNode = new Map((a.nodes || []).map((n) => [String(n.nodeId), n]));
        nodeIds.forEach((id, i) => {
          const cell = row.cells[i + 1];
          const entry = byNode.get(id) || null;
          let state = entry ? entry.state : "absent";
          if (!STATES.includes(state)) state = "absent";
          setAttr(cell, "data-state", state);
          setClass(cell, `cell state-${state}`);
          setText(cell, cellText(entry, state));
          setAttr(cell, "title", cellTitle(a, id, entry, state));
        });
      },
    );
    $("grid-empty").hidden = apis.length > 0;
  }

  function renderStatus(nodes, apis, generatedAt) {
    let failed = 0;
    let behind = 0;
    for (const a of apis) {
      for (const n of a.nodes || []) {
        if (n.state === "failed") failed += 1;
        if (n.state === "behind") behind += 1;
      }
    }
    const stale = nodes.filter((n) => n.stale).length;
    const parts = [
      `${nodes.length} node${nodes.length === 1 ? "" : "s"}${stale ? ` (${stale} stale)` : ""}`,
      `${apis.length} API${apis.length === 1 ? "" : "s"}`,
    ];
    if (failed) parts.push(`${failed} failed`);
    if (behind) parts.push(`${behind} behind`);
    if (!failed && !behind) parts.push("all in sync");
    // The live region changes only when the summary does, not every poll.
    setText($("status"), parts.join(" · "));
    const at = Date.parse(generatedAt);
    const d = new Date(at);
    setText(
      $("updated"),
      Number.isNaN(at) ? "" : `updated ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`,
    );
  }

  // ---- one API -----------------------------------------------------------

  let selected = null;
  // What the panel shows: the API's detail and the receipts of its deployments.
  let detail = null;

  $("grid").addEventListener("click", (event) => {
    const target = event.target.closest("[data-api-id], [data-api]");
    if (!target) return;
    const id = target.getAttribute("data-api-id") || target.getAttribute("data-api");
    if (id) select(id);
  });

  $("detail-close").addEventListener("click", () => closeDetail());
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && selected) closeDetail();
  });

  function select(id) {
    if (selected === id) return;
    selected = id;
    detail = { apiId: id, signature: null, data: null, receipts: new Map(), loadedAt: 0, inFlight: false, error: null };
    history.replaceState(null, "", `#api=${encodeURIComponent(id)}`);
    $("detail").hidden = false;
    $("detail-revisions").tBodies[0].replaceChildren();
    $("detail-receipts").replaceChildren(el("p", { className: "muted", text: "Loading…" }));
    setText($("detail-error"), "");
    if (fleet) render(fleet);
  }

  function closeDetail() {
    const wasSelected = selected;
    selected = null;
    detail = null;
    $("detail").hidden = true;
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
    if (wasSelected && fleet) render(fleet);
  }

  /** What of the API in the fleet, when it changes, calls for a reload. */
  function signature(api) {
    return JSON.stringify([
      api.revision,
      api.updatedAt,
      api.deployments,
      (api.nodes || []).map((n) => [n.nodeId, n.status, n.appliedRevision, n.desiredRevision]),
    ]);
  }

  function renderSelected(apis) {
    if (!selected || !detail) return;
    const api = apis.find((a) => a.id === selected) || null;
    renderFacts(api);
    renderErrors(api);
    if (!api) {
      setText($("detail-error"), "This API is not published (any more).");
      return;
    }
    const sig = signature(api);
    const now = Date.now();
    if (sig !== detail.signature) {
      // While a load is in flight, the next poll tries again.
      if (!detail.inFlight) {
        detail.signature = sig;
        loadDetail(true);
      }
    } else if (detail.loadedAt && now - detail.loadedAt > DETAIL_REFRESH_MS) {
      loadDetail(true);
    } else if (detail.data && hasIncompleteReceipt(detail)) {
      loadDetail(false);
    }
  }

  function hasIncompleteReceipt(d) {
    for (const r of d.receipts.values()) {
      if (r.body && !(r.body.summary && r.body.summary.complete)) return true;
    }
    return false;
  }

  function sequencesOf(data) {
    const seqs = new Set();
    for (const d of data.deployments || []) {
      if (typeof d.sequence === "number") seqs.add(d.sequence);
    }
    return Array.from(seqs).sort((a, b) => b - a);
  }

  async function loadDetail(full) {
    const d = detail;
    if (!d || d.inFlight) return;
    d.inFlight = true;
    try {
      if (full || !d.data) d.data = await getJson(`/api/v1/apis/${encodeURIComponent(d.apiId)}`);
      const seqs = sequencesOf(d.data);
      for (const s of Array.from(d.receipts.keys())) if (!seqs.includes(s)) d.receipts.delete(s);
      const wanted = seqs.filter((s) => {
        const r = d.receipts.get(s);
        return full || !r || (r.body && !(r.body.summary && r.body.summary.complete));
      });
      await Promise.all(
        wanted.map(async (s) => {
          try {
            d.receipts.set(s, { body: await getJson(`/api/v1/changes/${s}`) });
          } catch (e) {
            if (!(e instanceof HttpError)) throw e;
            d.receipts.set(s, { error: e.message });
          }
        }),
      );
      d.error = null;
    } catch (e) {
      if (e instanceof AuthError) return;
      d.error = e.message;
    } finally {
      d.inFlight = false;
      d.loadedAt = Date.now();
    }
    if (detail === d) renderDetail(d);
  }

  function renderFacts(api) {
    setText($("detail-title"), api ? `${api.name}:${api.version}` : selected);
    const facts = $("detail-facts");
    const key = api ? JSON.stringify([api.id, api.context, api.revision, api.sha256, api.updatedAt]) : "";
    if (facts.dataset.key === key) return;
    facts.dataset.key = key;
    facts.replaceChildren();
    if (!api) return;
    const add = (term, value) => facts.append(el("dt", { text: term }), el("dd", {}, value));
    add("Id", el("code", { text: api.id }));
    add("Context", el("code", { text: dash(api.context) }));
    add("Latest revision", String(api.revision));
    add("SHA-256", el("code", { text: dash(api.sha256), attrs: { title: api.sha256 } }));
    add("Updated", timeEl(api.updatedAt));
  }

  function renderErrors(api) {
    const list = $("detail-errors");
    const failing = api ? (api.nodes || []).filter((n) => n.state === "failed" || n.error) : [];
    const key = JSON.stringify(failing.map((n) => [n.nodeId, n.status, n.desiredRevision, n.error]));
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    list.replaceChildren();
    if (failing.length === 0) {
      list.append(el("li", { className: "muted", text: "No node reports an error." }));
      return;
    }
    for (const n of failing) {
      const item = el("li", { attrs: { "data-error-node": n.nodeId } });
      item.append(
        el("strong", { text: n.nodeId }),
        el("span", {
          className: "muted",
          text: ` ${dash(n.status)}, revision ${dash(n.desiredRevision)}: `,
        }),
        el("span", { className: "error-text", text: n.error || "failed without a message" }),
      );
      list.append(item);
    }
  }

  function renderDetail(d) {
    setText($("detail-error"), d.error ? `Could not load the API: ${d.error}` : "");
    if (!d.data) return;
    const deployments = d.data.deployments || [];
    const revisions = (d.data.revisions || []).slice().sort((a, b) => b.revision - a.revision);
    syncRows(
      $("detail-revisions").tBodies[0],
      revisions,
      (r) => String(r.revision),
      () => {
        const row = el("tr");
        row.append(el("th", { className: "num", attrs: { scope: "row" } }));
        for (let i = 0; i < 4; i += 1) row.append(el("td"));
        row.cells[2].className = "num";
        return row;
      },
      (row, r) => {
        const c = row.cells;
        setAttr(row, "data-revision", r.revision);
        setText(c[0], r.revision);
        const sha = String(r.sha256 || "");
        c[1].replaceChildren(el("code", { text: sha.slice(0, 12) || "–", attrs: { title: sha } }));
        setText(c[2], bytes(r.sizeBytes));
        c[3].replaceChildren(timeEl(r.createdAt));
        const on = deployments.filter((x) => x.revision === r.revision).map((x) => x.label);
        c[4].replaceChildren(on.length ? chips(on) : el("span", { className: "muted", text: "–" }));
      },
    );

    const container = $("detail-receipts");
    const seqs = sequencesOf(d.data);
    if (seqs.length === 0) {
      container.replaceChildren(el("p", { className: "muted", text: "Not deployed anywhere." }));
      return;
    }
    container.replaceChildren(...seqs.map((s) => receiptEl(s, d.receipts.get(s), deployments)));
  }

  function receiptEl(sequence, receipt, deployments) {
    const box = el("article", { className: "receipt", attrs: { "data-sequence": sequence } });
    const labels = deployments.filter((x) => x.sequence === sequence);
    const deployedAt = labels.length ? labels[0].deployedAt : null;
    if (!receipt || receipt.error || !receipt.body) {
      box.append(
        el("h4", { text: `Change #${sequence}` }),
        el("p", {
          className: receipt && receipt.error ? "error" : "muted",
          text: receipt && receipt.error ? `No receipt: ${receipt.error}` : "Loading…",
        }),
      );
      return box;
    }
    const r = receipt.body;
    const s = r.summary || {};
    box.setAttribute("data-complete", s.complete ? "true" : "false");
    const heading = el("h4", {
      text: `Change #${r.sequence} · ${dash(r.kind)} revision ${dash(r.revision)} → ${(r.labels || []).join(", ")}`,
    });
    const when = el("p", { className: "muted" });
    when.append("committed ", timeEl(r.committedAt));
    // The deployment time, when it is not the commit time.
    if (deployedAt && Math.abs(Date.parse(deployedAt) - Date.parse(r.committedAt)) >= 1000) {
      when.append(" · deployed ", timeEl(deployedAt));
    }
    const summary = [`${dash(s.applied)} of ${dash(s.targets)} applied`];
    if (s.failed) summary.push(`${s.failed} failed`);
    if (s.pending) summary.push(`${s.pending} pending`);
    if (s.offline) summary.push(`${s.offline} offline`);
    if (s.slowestNode) summary.push(`slowest ${s.slowestNode} (${millis(s.slowestMs)} ms)`);
    summary.push(s.complete ? "complete" : "in progress");
    const summaryEl = el("p", {
      className: `summary ${s.failed ? "bad" : s.complete ? "ok" : "warn"}`,
      text: summary.join(" · "),
    });

    const table = el("table", { className: "data receipt-nodes" });
    const head = el("tr");
    for (const [title, cls] of [
      ["Node", ""],
      ["State", ""],
      ["Applied", "num"],
      ["Applied at", ""],
      ["Latency (ms)", "num"],
      ["Error", ""],
    ]) {
      head.append(el("th", { className: cls, text: title, attrs: { scope: "col" } }));
    }
    table.append(el("thead", {}, head));
    const body = el("tbody");
    const nodes = (r.nodes || []).slice().sort((a, b) => byNumericText(String(a.nodeId), String(b.nodeId)));
    for (const n of nodes) {
      const state = String(n.state || "");
      const row = el("tr", { attrs: { "data-receipt-node": n.nodeId, "data-receipt-state": state } });
      row.append(
        el("th", { text: n.nodeId, attrs: { scope: "row" } }),
        el("td", {}, el("span", { className: `badge receipt-${state.toLowerCase()}`, text: dash(state) })),
        el("td", { className: "num", text: dash(n.appliedRevision) }),
        el("td", {}, timeEl(n.appliedAt)),
        el("td", { className: "num", text: millis(n.latencyMs) }),
        el("td", { className: n.error ? "error-text" : "muted", text: dash(n.error) }),
      );
      body.append(row);
    }
    if (nodes.length === 0) {
      body.append(el("tr", {}, el("td", { className: "muted", text: "No node serves these labels.", attrs: { colspan: 6 } })));
    }
    table.append(body);
    box.append(heading, when, summaryEl, el("div", { className: "scroll" }, table));
    return box;
  }

  // ---- start -------------------------------------------------------------

  if (token) {
    const fromHash = /^#api=(.+)$/.exec(location.hash);
    if (fromHash) {
      try {
        select(decodeURIComponent(fromHash[1]));
      } catch (_) {
        history.replaceState(null, "", location.pathname);
      }
    }
    setText($("status"), "Connecting…");
    startPolling();
  } else {
    askForToken("");
  }
})();
