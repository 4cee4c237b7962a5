// The console's page: renders the public snapshot and, with an admin session, the executions,
// from the server-sent event stream at /telemetry/stream. Every value goes into the page as text
// (textContent, attributes), never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    return node;
  }

  function setText(id, text, cls) {
    const node = $(id);
    node.textContent = text;
    if (cls !== undefined) node.className = cls;
  }

  function link(href, text, cls) {
    if (!href) return el("span", { class: cls }, text);
    return el("a", { href, target: "_blank", rel: "noopener noreferrer", class: cls }, text);
  }

  // ---- Formatting ----

  const number = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = n;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "–";
    if (ms < 1000) return `${ms} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${m % 60} min`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }

  function ago(ms) {
    if (!ms) return "never";
    const delta = Math.max(0, Date.now() - ms);
    return delta < 1500 ? "just now" : `${duration(Math.round(delta / 1000) * 1000)} ago`;
  }

  const clock = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").replace("Z", " UTC") : "–");
  const short = (text, n = 10) => (text && text.length > 2 * n + 1 ? `${text.slice(0, n)}…${text.slice(-6)}` : text || "");

  // ---- The public part ----

  let lastState = null;

  function renderState(state) {
    lastState = state;
    setText("version", `v${state.version}`);
    setText("chain", state.chain.name ? `${state.chain.name} (${state.chain.id})` : `chain ${state.chain.id}`);
    setText("uptime", duration(Date.now() - state.started_at_ms));

    const store = state.store;
    if (store.poisoned) setText("store-state", `refused: ${store.poisoned}`, "bad");
    else setText("store-state", "accepted", "ok");
    const lag = store.projection_lag;
    setText("store-lag", lag === null ? "unknown" : `${number(lag)} events`, lag ? "warn" : "");
    setText("store-disk", bytes(store.disk_bytes));
    setText("store-durability", store.durability);

    const log = state.log;
    setText("log-events", number(log.events));
    setText("log-head", log.head ? log.head.id : "empty");
    setText("log-head-at", log.head ? ago(log.head.at_ms) : "–");
    setText("log-hash", log.head ? short(log.head.hash, 8) : "–");
    const checkpoint = log.checkpoint;
    if (checkpoint.latest) {
      const c = checkpoint.latest;
      const cosigned = c.cosigners.length;
      setText(
        "log-checkpoint",
        `${number(c.size)} events, ${cosigned ? `cosigned by ${cosigned} operators` : "no quorum of cosigners yet"}`,
        cosigned ? "ok" : "warn",
      );
      setText(
        "log-note",
        `Checkpoint root ${c.root}${checkpoint.behind ? `; ${number(checkpoint.behind)} newer events not in it yet` : ""}.`,
      );
    } else {
      setText("log-checkpoint", "none issued yet", "hint-inline");
      setText("log-note", "");
    }

    $("tasks").replaceChildren(
      ...state.tasks.flatMap((t) => [el("dt", {}, t.status), el("dd", {}, number(t.count))]),
    );

    renderLatency(state.pulse.latency);
    renderActivity(state.pulse);
    renderOperators(state);
  }

  function renderLatency(latency) {
    const cells = [
      ["p50", latency.p50_ms],
      ["p90", latency.p90_ms],
      ["p99", latency.p99_ms],
      ["max", latency.max_ms],
    ].map(([name, ms]) => el("div", { class: "quantile" }, el("b", {}, duration(ms)), el("span", {}, name)));
    $("latency").replaceChildren(...cells);
    setText("latency-note", `${number(latency.count)} executions in the last hour, from the trigger to the end`);
  }

  function renderActivity(pulse) {
    const totals = pulse.last_hour;
    const minutes = pulse.minutes;
    const current = minutes.length ? minutes[minutes.length - 1] : {};
    const total = (n, what) => el("div", { class: "total" }, el("b", {}, number(n)), el("span", {}, what));
    $("activity-totals").replaceChildren(
      total(totals.firings, "firings"),
      total(totals.executions, "executions"),
      total(totals.failures, "failures"),
      total(current.executions || 0, "executions this minute"),
      total(pulse.awaiting_quorum, "firings waiting on a quorum"),
    );

    const chart = $("chart");
    const width = 600;
    const height = 140;
    const top = Math.max(1, ...minutes.map((m) => Math.max(m.executions, m.firings)));
    const slot = width / Math.max(1, minutes.length);
    const y = (n) => height - 6 - (n / top) * (height - 16);
    const nodes = [];
    for (const fraction of [0.25, 0.5, 0.75]) {
      const gy = height - 6 - fraction * (height - 16);
      nodes.push(svg("line", { x1: 0, x2: width, y1: gy, y2: gy, class: "grid-line" }));
    }
    minutes.forEach((m, i) => {
      const x = i * slot + 1;
      const w = Math.max(1, slot - 2);
      const ok = m.executions - m.failures;
      if (ok > 0) nodes.push(svg("rect", { x, width: w, y: y(ok), height: height - 6 - y(ok), class: "bar-ok" }));
      if (m.failures > 0) {
        nodes.push(svg("rect", { x, width: w, y: y(m.executions), height: y(ok) - y(m.executions), class: "bar-failed" }));
      }
    });
    const points = minutes.map((m, i) => `${(i + 0.5) * slot},${y(m.firings)}`).join(" ");
    nodes.push(svg("polyline", { points, class: "firings" }));
    chart.replaceChildren(...nodes);
    setText("chart-peak", `top of the chart: ${top} per minute`);
  }

  function reasons(map) {
    const entries = Object.entries(map || {}).filter(([, n]) => n > 0);
    return entries.length ? entries.map(([reason, n]) => `${reason} ${n}`).join(", ") : "none";
  }

  function renderOperators(state) {
    const operators = state.operators;
    const connected = operators.filter((o) => o.connected).length;
    setText("operators-summary", `${connected} of ${operators.length} connected`);
    const cards = operators.map((o) => {
      const dot = el("span", { class: `dot ${o.connected ? "dot-on" : "dot-off"}` });
      const fact = (name, value, cls) => [el("dt", {}, name), el("dd", { class: cls }, value)];
      const seen = o.connected
        ? `connected ${duration((o.connected_for_seconds || 0) * 1000)}`
        : o.gone_for_seconds !== null && o.gone_for_seconds !== undefined
          ? `gone ${duration(o.gone_for_seconds * 1000)}`
          : "not connected";
      return el(
        "div",
        {
          class: "operator",
          "data-operator": o.address,
          "data-connected": String(o.connected),
          "data-cosigned": String(o.cosigned.checkpoints),
        },
        el(
          "div",
          { class: "operator-head" },
          dot,
          link(o.explorer_url, o.address, "mono"),
        ),
        el(
          "dl",
          { class: "facts" },
          fact("Status", seen, o.connected ? "ok" : "bad"),
          fact("Registered", `${o.active ? "" : "deregistered, "}weight ${o.weight}, ${ago(o.registered_at_ms)}`),
          fact("Last ping", ago(o.last_ping_ms)),
          fact("Block seen", o.block_number ? number(o.block_number) : "–"),
          fact("Version", o.version || "–"),
          fact("Tasks", `${number(o.tasks_assigned)} assigned, ${number(o.watching)} watched${o.unacknowledged ? `, ${o.unacknowledged} unacknowledged` : ""}`),
          fact("Last hour", `${number(o.reports_last_hour)} reports, ${number(o.attestations_last_hour)} attestations`),
          fact("Refused", reasons(o.refused), Object.keys(o.refused || {}).length ? "warn" : ""),
          fact(
            "Cosigned",
            o.cosigned.of_latest
              ? `${o.cosigned.checkpoints} of the last ${o.cosigned.of_latest} checkpoints`
              : "no checkpoint yet",
            o.cosigned.of_latest && !o.cosigned.checkpoints ? "warn" : "",
          ),
        ),
      );
    });
    if (cards.length === 0) cards.push(el("p", { class: "hint" }, "No operator is registered."));
    $("operators").replaceChildren(...cards);
    setText("refused-other", `Refused requests naming no registered operator: ${reasons(state.refused_unattributed)}`);
  }

  // ---- The admin part ----

  let admin = false;
  let search = "";
  const open = new Set();

  function showAdmin(status) {
    admin = Boolean(status && status.admin);
    $("signin").hidden = admin;
    $("admin-panel").hidden = !admin;
    setText("admin-who", admin ? `signed in with an admin key of ${short(status.subject, 8)}` : "admin only");
    if (!admin) $("executions").replaceChildren();
  }

  async function call(method, url, body) {
    const options = { method, headers: {}, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      options.headers["content-type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let data = {};
    try {
      data = await response.json();
    } catch (_) {
      data = { error: `${response.status} ${response.statusText}` };
    }
    if (!response.ok) throw Object.assign(new Error(data.error || response.statusText), { status: response.status });
    return data;
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $("key");
    const key = input.value;
    // The key is sent once and leaves the page: only the HttpOnly cookie stays.
    input.value = "";
    setText("signin-error", "");
    try {
      const status = await call("POST", "/telemetry/session", { key });
      showAdmin(status);
      connect();
      await refreshExecutions();
    } catch (error) {
      setText("signin-error", error.message);
    }
  }

  async function signOut() {
    try {
      await call("DELETE", "/telemetry/session");
    } catch (_) {
      // Signed out either way.
    }
    showAdmin(null);
    connect();
  }

  function badge(status) {
    return el("span", { class: `badge badge-${status}` }, status);
  }

  function renderStep(step) {
    return el(
      "tr",
      { "data-step": step.id },
      el("td", {}, badge(step.status)),
      el("td", {}, step.name, el("div", { class: "sub" }, step.step_type.replace(/^(NODE|TRIGGER)_TYPE_/, "").toLowerCase())),
      el("td", {}, duration(step.duration_ms)),
      el("td", { class: "preview" }, step.error ? el("span", { class: "bad" }, step.error) : step.output || ""),
      el("td", { class: "preview" }, step.log || ""),
    );
  }

  function renderExecution(x) {
    const details = el("details", { class: "execution", "data-execution": x.id, "data-status": x.status });
    if (open.has(x.id)) details.open = true;
    details.addEventListener("toggle", () => (details.open ? open.add(x.id) : open.delete(x.id)));
    const trigger = x.trigger;
    const source = trigger ? `${trigger.kind} · ${trigger.source}` : "";
    details.append(
      el(
        "summary",
        {},
        badge(x.status),
        el("div", { class: "cell" }, x.task_name || "(unnamed)", el("div", { class: "sub mono" }, x.id)),
        el("div", { class: "cell wide-only" }, source, el("div", { class: "sub" }, `run #${x.index + 1}`)),
        el("div", { class: "cell wide-only mono sub" }, short(x.owner, 8)),
        el("div", { class: "cell" }, duration(x.duration_ms), el("div", { class: "sub" }, ago(x.end_at || x.queued_at))),
      ),
    );
    const facts = el(
      "div",
      { class: "kv" },
      el("span", {}, el("b", {}, "task"), el("code", {}, x.task_id)),
      el("span", {}, el("b", {}, "owner"), link(x.owner_url, x.owner, "mono")),
      el("span", {}, el("b", {}, "queued"), clock(x.queued_at)),
      el("span", {}, el("b", {}, "started"), clock(x.start_at)),
      el("span", {}, el("b", {}, "ended"), clock(x.end_at)),
    );
    const body = el("div", { class: "body" }, facts);
    if (trigger) {
      body.append(
        el(
          "div",
          { class: "kv" },
          el("span", {}, el("b", {}, "trigger"), source),
          trigger.attestation ? el("span", {}, el("b", {}, "attestation"), el("code", {}, trigger.attestation)) : null,
          trigger.block_number !== null && trigger.block_number !== undefined
            ? el("span", {}, el("b", {}, "block"), link(trigger.block_url, number(trigger.block_number)))
            : null,
          trigger.transaction_hash
            ? el("span", {}, el("b", {}, "tx"), link(trigger.transaction_url, short(trigger.transaction_hash), "mono"))
            : null,
        ),
        el("div", { class: "sub preview mono" }, `trigger output ${trigger.output}`),
      );
    }
    if (x.error) body.append(el("p", { class: "bad" }, x.error));
    body.append(
      el(
        "div",
        { class: "scroll" },
        el(
          "table",
          {},
          el("thead", {}, el("tr", {}, ["", "step", "took", "output or error", "log"].map((h) => el("th", {}, h)))),
          el("tbody", {}, x.steps.map(renderStep)),
        ),
      ),
    );
    const timelineLink = el("a", { href: `#timeline-${x.task_id}` }, "task timeline");
    timelineLink.addEventListener("click", (e) => {
      e.preventDefault();
      showTimeline(x.task_id);
    });
    const ownerLink = el("a", { href: `#owner-${x.owner}` }, "this owner's executions");
    ownerLink.addEventListener("click", (e) => {
      e.preventDefault();
      $("q").value = x.owner;
      runSearch(x.owner);
    });
    const taskLink = el("a", { href: `#task-${x.task_id}` }, "this task's executions");
    taskLink.addEventListener("click", (e) => {
      e.preventDefault();
      $("q").value = x.task_id;
      runSearch(x.task_id);
    });
    body.append(el("div", { class: "links" }, timelineLink, taskLink, ownerLink));
    details.append(body);
    return details;
  }

  function renderExecutions(listing) {
    if (listing.error) {
      setText("search-note", listing.error, "error");
      return;
    }
    const what = {
      latest: "latest executions, every owner",
      owner: `executions of owner ${listing.query}`,
      task: `executions of task ${listing.query}`,
      execution: `execution ${listing.query}`,
    }[listing.kind];
    setText("search-note", `${listing.executions.length} ${what}`, "hint");
    const items = listing.executions.map(renderExecution);
    if (items.length === 0) items.push(el("p", { class: "hint" }, "No execution."));
    $("executions").replaceChildren(...items);
  }

  async function refreshExecutions() {
    if (!admin) return;
    try {
      renderExecutions(await call("GET", `/telemetry/admin/executions?q=${encodeURIComponent(search)}`));
    } catch (error) {
      if (error.status === 401) showAdmin(null);
      setText("search-note", error.message, "error");
    }
  }

  function runSearch(q) {
    search = q.trim();
    $("timeline").hidden = true;
    refreshExecutions();
  }

  async function showTimeline(task) {
    const panel = $("timeline");
    panel.hidden = false;
    panel.replaceChildren(el("p", { class: "hint" }, "loading…"));
    try {
      const t = await call("GET", `/telemetry/admin/timeline?task=${encodeURIComponent(task)}`);
      const close = el("button", { type: "button", class: "quiet" }, "Close");
      close.addEventListener("click", () => (panel.hidden = true));
      const rows = t.events.map((e) =>
        el(
          "tr",
          { "data-event": e.id },
          el("td", { class: "mono" }, clock(e.at_ms)),
          el("td", {}, e.type, el("div", { class: "sub mono" }, `${e.stream}#${e.seq}`)),
          el("td", { class: "mono sub" }, short(e.actor, 8)),
          el("td", { class: "preview" }, e.payload),
        ),
      );
      panel.replaceChildren(
        el(
          "div",
          { class: "card-head" },
          el("h3", {}, `Timeline of ${t.task_name || t.task_id}`),
          close,
        ),
        el(
          "p",
          { class: "hint" },
          `${t.total} events of the task, its firings and executions${t.total > t.events.length ? `, the latest ${t.events.length} shown (replay timeline prints all)` : ""}.`,
        ),
        el(
          "div",
          { class: "scroll" },
          el(
            "table",
            {},
            el("thead", {}, el("tr", {}, ["at", "event", "by", "payload"].map((h) => el("th", {}, h)))),
            el("tbody", {}, rows),
          ),
        ),
      );
      panel.scrollIntoView({ behavior: "smooth", block: "start" });
    } catch (error) {
      panel.replaceChildren(el("p", { class: "error" }, error.message));
    }
  }

  // ---- The stream ----

  let source = null;
  let lastHead = null;

  function live(text, cls) {
    setText("live", text, `pill ${cls}`);
  }

  function connect() {
    if (source) source.close();
    source = new EventSource("/telemetry/stream");
    source.addEventListener("open", () => live("live", "pill-live"));
    source.addEventListener("error", () => live("reconnecting…", "pill-wait"));
    source.addEventListener("state", (event) => {
      const state = JSON.parse(event.data);
      renderState(state);
      const head = state.log.head ? state.log.head.id : null;
      // A search is not what the stream carries: read it again when the log moved.
      if (admin && search && head !== lastHead) refreshExecutions();
      lastHead = head;
    });
    source.addEventListener("executions", (event) => {
      if (admin && !search) renderExecutions(JSON.parse(event.data));
    });
    source.addEventListener("session", (event) => {
      showAdmin(JSON.parse(event.data));
      setText("signin-error", "The admin session ended: sign in again.");
    });
  }

  async function start() {
    $("signin").addEventListener("submit", signIn);
    $("search").addEventListener("submit", (e) => {
      e.preventDefault();
      runSearch($("q").value);
    });
    $("latest").addEventListener("click", () => {
      $("q").value = "";
      runSearch("");
    });
    $("signout").addEventListener("click", signOut);
    try {
      showAdmin(await call("GET", "/telemetry/session"));
    } catch (_) {
      showAdmin(null);
    }
    connect();
    // Ages ("3 s ago") move between events too.
    setInterval(() => {
      if (lastState) {
        setText("uptime", duration(Date.now() - lastState.started_at_ms));
        setText("log-head-at", lastState.log.head ? ago(lastState.log.head.at_ms) : "–");
      }
    }, 1000);
  }

  start();
})();
