// quorumgate dashboard: plain JS, no build step, no external resources.
//
// Data: GET /v1/stream (Server-Sent Events read with fetch, so that the bearer token
// travels in the Authorization header and never in a URL), falling back to polling
// GET /v1/dashboard every second while the stream cannot be had.
// Token: from the URL fragment (#token=...), else sessionStorage, else the sign-in form.
"use strict";

(() => {
  const TOKEN_KEY = "quorumgate.token";
  const STATES = [
    ["up", "●", "up"],
    ["draining", "◐", "draining"],
    ["drain_failed", "✖", "drain failed"],
    ["drained", "○", "drained"],
    ["rebooting", "↻", "rebooting"],
    ["restoring", "↺", "restoring"],
    ["lost", "?", "lost"],
  ];
  const STATE = Object.fromEntries(STATES.map(([key, sym, label]) => [key, { sym, label }]));
  const STREAM_SILENCE_MS = 30000; // the server pings every 10 s: silence means trouble

  const $ = (id) => document.getElementById(id);
  let token = "";
  let generation = 0; // bumped to stop every running loop
  let current = null; // AbortController of the open request
  const rendered = {}; // section -> JSON last drawn
  const openTimelines = new Set();

  // ---------------------------------------------------------------- DOM helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function replace(id, ...children) {
    $(id).replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
  }

  function short(id) {
    return id && id.length > 12 ? id.slice(0, 8) : id || "";
  }

  function duration(seconds) {
    const s = Math.round(Math.abs(seconds));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  function relative(at, now) {
    if (at === null || at === undefined) return "—";
    const diff = at - now;
    if (Math.abs(diff) < 1) return "now";
    return diff > 0 ? `in ${duration(diff)}` : `${duration(diff)} ago`;
  }

  function absolute(at) {
    if (at === null || at === undefined) return "";
    return new Date(at * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function timeEl(at, now) {
    return el("time", { datetime: new Date(at * 1000).toISOString(), title: absolute(at) },
      relative(at, now));
  }

  // The cluster's maintenance domain, as the grid's columns and the audit name it.
  const UNITS = {
    update_domain: { short: "UD", plural: "update domains", one: "update domain" },
    zone: { short: "zone", plural: "zones", one: "zone" },
    fault_domain: { short: "FD", plural: "fault domains", one: "fault domain" },
  };
  const MIXED_UNIT = { short: "domain", plural: "maintenance domains", one: "maintenance domain" };
  let places = {}; // VM name -> "zone 2 · FD 1": shown in every chip's title

  function unitOf(mode) {
    return UNITS[mode] || MIXED_UNIT;
  }

  function placeOf(vm) {
    const parts = [vm.maintenance_domain || "domain unknown"];
    if (vm.fd !== null && vm.fd !== undefined && vm.maintenance_domain !== `FD ${vm.fd}`) parts.push(`FD ${vm.fd}`);
    if (vm.kind) parts.push(vm.kind);
    return parts.join(" · ");
  }

  function vmChip(name, state, reservedBy) {
    const info = STATE[state] || { sym: "·", label: state };
    const title = `${name}: ${info.label}` + (places[name] ? ` · ${places[name]}` : "") +
      (reservedBy ? ` (event ${reservedBy})` : "");
    return el("span", { class: `vm st-${state}`, title },
      el("span", { class: "sym", "aria-hidden": "true" }, info.sym),
      el("span", { class: "name" }, name),
      el("span", { class: "state" }, info.label));
  }

  function badge(state) {
    return el("span", { class: `badge ds-${state}` }, state);
  }

  // What must stay visible whatever the state: forced (kept after the event is restored),
  // dry-run, at risk (will reach NotBefore unless someone acts), a pending operator retry.
  function marks(e) {
    const out = [];
    if (e.forced && e.state !== "forced") {
      out.push(el("span", { class: "mark mark-forced", title: "the platform started it without our acknowledgement" }, "forced"));
    }
    if (e.dry_run) out.push(el("span", { class: "mark mark-dry-run", title: "decided in dry-run: nothing drained or acknowledged" }, "dry-run"));
    if (e.at_risk) out.push(el("span", { class: "mark mark-at-risk", title: "cannot finish before its NotBefore without help" }, "at risk"));
    if (e.retry_pending) out.push(el("span", { class: "mark mark-retry" }, "retry asked"));
    return out;
  }

  // ---------------------------------------------------------------- token and sign-in

  function takeToken() {
    const params = new URLSearchParams(location.hash.slice(1));
    const given = params.get("token");
    if (given) {
      sessionStorage.setItem(TOKEN_KEY, given);
      // keep the token out of the address bar, the history and screenshots
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function authHeaders(extra) {
    return Object.assign(token ? { Authorization: `Bearer ${token}` } : {}, extra || {});
  }

  function showLogin(message) {
    stop();
    $("main").hidden = true;
    $("login").hidden = false;
    $("signout").hidden = true;
    $("login-error").textContent = message || "";
    setConn("idle", "signed out");
    $("token-input").focus();
  }

  async function authFailed(response) {
    let detail = "";
    try {
      detail = (await response.json()).detail || "";
    } catch (_) {
      /* not JSON */
    }
    if (response.status === 401) {
      const hadToken = Boolean(token);
      sessionStorage.removeItem(TOKEN_KEY);
      token = "";
      showLogin(hadToken ? `The coordinator refused this token: ${detail}` : "");
    } else {
      showLogin(`This token may not read the dashboard: ${detail}`);
    }
  }

  // ---------------------------------------------------------------- connection

  function setConn(kind, text) {
    const node = $("conn");
    node.className = `conn conn-${kind}`;
    if (node.textContent !== text) node.textContent = text;
  }

  function stop() {
    generation += 1;
    if (current) current.abort();
    current = null;
  }

  function start() {
    stop();
    const gen = generation;
    run(gen);
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function run(gen) {
    let failures = 0;
    while (gen === generation) {
      let outcome;
      try {
        outcome = await streamOnce(gen);
      } catch (err) {
        outcome = { kind: "error", detail: err && err.name === "AbortError" ? "stream stalled" : "coordinator unreachable" };
      }
      if (gen !== generation || outcome.kind === "auth") return;
      if (outcome.kind === "ended") {
        failures = 0;
        continue; // the server closed the stream at its lifetime: reconnect at once
      }
      failures += 1;
      if (outcome.kind === "busy") setConn("poll", "polling (server has too many streams)");
      else setConn("down", `reconnecting: ${outcome.detail || "stream failed"}`);
      // meanwhile keep the page fresh by polling, then try the stream again
      await poll(gen, outcome.kind === "busy" ? 30000 : Math.min(1000 * 2 ** failures, 15000));
    }
  }

  async function streamOnce(gen) {
    const ctrl = new AbortController();
    current = ctrl;
    let watchdog = null;
    const kick = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => ctrl.abort(), STREAM_SILENCE_MS);
    };
    kick();
    try {
      const response = await fetch("/v1/stream", {
        headers: authHeaders({ Accept: "text/event-stream" }),
        cache: "no-store",
        signal: ctrl.signal,
      });
      if (response.status === 401 || response.status === 403) {
        await authFailed(response);
        return { kind: "auth" };
      }
      if (response.status === 503) return { kind: "busy" };
      if (!response.ok || !response.body) return { kind: "error", detail: `HTTP ${response.status}` };
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done || gen !== generation) return { kind: "ended" };
        kick();
        buffer += value;
        let cut;
        while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
          const outcome = handleBlock(block);
          if (outcome) return outcome;
        }
      }
    } finally {
      clearTimeout(watchdog);
      ctrl.abort();
      if (current === ctrl) current = null;
    }
  }

  function handleBlock(block) {
    let event = "message";
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    const text = data.join("\n");
    if (event === "snapshot") {
      render(JSON.parse(text));
      setConn("live", "live");
    } else if (event === "unavailable") {
      setConn("down", `coordinator: ${JSON.parse(text).detail}`);
    } else if (event === "busy") {
      return { kind: "busy" };
    } else if (event === "bye") {
      return { kind: "ended" };
    }
    return null;
  }

  async function poll(gen, forMs) {
    const until = Date.now() + forMs;
    while (gen === generation && Date.now() < until) {
      const ctrl = new AbortController();
      current = ctrl;
      const timer = setTimeout(() => ctrl.abort(), 5000);
      try {
        const response = await fetch("/v1/dashboard", {
          headers: authHeaders(), cache: "no-store", signal: ctrl.signal,
        });
        if (response.status === 401 || response.status === 403) {
          await authFailed(response);
          return;
        }
        if (response.ok) {
          render(await response.json());
          if ($("conn").classList.contains("conn-down")) setConn("poll", "polling every second");
        } else {
          setConn("down", `coordinator answered ${response.status}`);
        }
      } catch (_) {
        if (gen === generation) setConn("down", "coordinator unreachable");
      } finally {
        clearTimeout(timer);
        if (current === ctrl) current = null;
      }
      await sleep(1000);
    }
  }

  // ---------------------------------------------------------------- rendering

  function section(name, data, draw) {
    const json = JSON.stringify(data);
    if (rendered[name] === json) return;
    rendered[name] = json;
    draw(data);
  }

  function render(d) {
    $("login").hidden = true;
    $("main").hidden = false;
    $("signout").hidden = !token;
    $("cluster").textContent = d.status.cluster;
    document.title = `quorumgate · ${d.status.cluster}`;
    places = Object.fromEntries(d.vms.map((vm) => [vm.name, placeOf(vm)]));
    section("banner", { s: d.status, z: d.zookeeper }, renderBanner);
    section("cards", { s: d.status, z: d.zookeeper, v: d.vms.map((v) => v.state),
      p: d.placement.filter((a) => !a.ud_safe).length, pp: d.placement_problem || "",
      t: Math.round(d.now) }, () => renderCards(d));
    section("grid", { t: d.topology, v: d.vms.map((v) => [v.name, v.reserved_by, places[v.name]]),
      h: d.events.filter((e) => e.active && e.state === "held").map((e) => [e.event_id, e.resources]) },
    () => renderGrid(d));
    section("vms", { v: d.vms, m: d.topology.maintenance_domain }, () => renderVms(d));
    section("events", { e: d.events, n: d.events_total, t: Math.round(d.now) }, () => renderEvents(d));
    section("groups", d.groups, renderGroups);
    section("placement", { a: d.placement, p: d.placement_problem || "", m: d.topology.maintenance_domain },
      () => renderPlacement(d.placement, d.placement_problem || "", d.topology.maintenance_domain));
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()} · replica ` +
      `${d.status.identity} · coordinator clock ${absolute(d.now)}`;
  }

  function renderBanner({ s, z }) {
    const lines = [];
    let bad = false;
    if (!z.connected) {
      lines.push("This replica is not connected to ZooKeeper: the page shows the last known state.");
      bad = true;
    }
    if (s.paused) lines.push("Approvals are paused: new events are held until an operator resumes.");
    if (s.dry_run) lines.push("Dry run: the leader decides but does not drain or approve.");
    if (!s.leader) lines.push("No leader is known: nothing is being decided.");
    if (s.problem) {
      lines.push(`This replica is misconfigured: ${s.problem}`);
      bad = true;
    }
    if (s.maintenance_domain_problem) {
      lines.push(`No maintenance domain: ${s.maintenance_domain_problem}. Every maintenance is held meanwhile.`);
      bad = true;
    }
    const node = $("banner");
    node.hidden = lines.length === 0;
    node.className = bad ? "banner bad" : "banner";
    node.textContent = lines.join(" ");
  }

  function card(title, value, note, tone) {
    return el("div", { class: `card ${tone || ""}` },
      el("dt", {}, title), el("dd", {}, value, note ? el("small", {}, note) : null));
  }

  function renderCards(d) {
    const s = d.status;
    const z = d.zookeeper;
    const tally = {};
    for (const vm of d.vms) tally[vm.state] = (tally[vm.state] || 0) + 1;
    const notUp = STATES.filter(([k]) => k !== "up" && tally[k])
      .map(([k]) => `${tally[k]} ${STATE[k].label}`).join(" · ");
    const states = Object.entries(s.counts).filter(([, n]) => n > 0);
    const activeStates = d.events.filter((e) => e.active).map((e) => e.state);
    const byState = {};
    for (const st of activeStates) byState[st] = (byState[st] || 0) + 1;
    const eventNote = Object.entries(byState).map(([k, n]) => `${n} ${k}`).join(" · ") ||
      (states.length ? "none active" : "none seen");
    const eventTone = byState.failed || byState.forced ? "bad" : byState.held ? "warn" : "good";
    const unsafe = d.placement.filter((a) => !a.ud_safe).length;
    const unit = unitOf(s.maintenance_domain);
    const lastPass = s.last_pass.at === null ? "—" : relative(s.last_pass.at, d.now);
    replace("cards",
      card("Leader", s.leader || "unknown",
        s.is_leader ? "this replica leads" : `this replica (${s.identity}) follows`,
        s.leader ? "good" : "bad"),
      card("ZooKeeper", z.connected ? "connected" : z.state.toLowerCase(),
        `${z.hosts}${z.mirror_ready ? "" : " · mirror not loaded"}`,
        z.connected && z.mirror_ready ? "good" : "bad"),
      card("Approvals", s.paused ? "paused" : s.dry_run ? "dry run" : "running",
        `policy version ${s.policy_version}`, s.paused || s.dry_run ? "warn" : "good"),
      card("VMs live", `${s.live_vms} / ${s.vms}`, notUp || "all up",
        tally.lost || tally.drain_failed ? "bad" : notUp ? "warn" : "good"),
      card("Events active", String(s.active_events), eventNote, eventTone),
      card("Groups at minimum", `${s.groups - s.groups_below_min} / ${s.groups}`,
        s.groups_below_min ? `${s.groups_below_min} below min_available` : "all at or above min_available",
        s.groups_below_min ? "bad" : "good"),
      card("Maintenance domain", s.maintenance_domain ? unit.plural : "mixed cluster",
        s.maintenance_domain ? `the unit a rollout takes down${s.maintenance_domain === "update_domain" ? "" : " (no update domains)"}`
          : "set policy maintenance_domain", s.maintenance_domain ? "good" : "bad"),
      d.placement_problem ? card("Placement", "not judged", "the cluster mixes deployments", "bad")
        : card("Placement", unsafe ? `${unsafe} would block` : "all spread",
          unsafe ? "see the placement audit" : "no group blocks a rollout", unsafe ? "warn" : "good"),
      card("Last decision pass", lastPass, s.last_pass.summary || (s.is_leader ? "" : "the leader decides")));
  }

  function renderLegend(vms) {
    const tally = {};
    for (const vm of vms) tally[vm.state] = (tally[vm.state] || 0) + 1;
    replace("legend", STATES.map(([key, sym, label]) =>
      el("li", {}, el("span", { class: `vm st-${key}${tally[key] ? "" : " zero"}` },
        el("span", { class: "sym", "aria-hidden": "true" }, sym),
        el("span", { class: "state" }, `${label} ${tally[key] || 0}`)))));
  }

  function renderGrid(d) {
    renderLegend(d.vms);
    const t = d.topology;
    const unit = unitOf(t.maintenance_domain);
    const rowWord = t.maintenance_domain === "fault_domain" ? "scale set" : "FD";
    $("h-grid").textContent = t.maintenance_domain === "fault_domain"
      ? "Scale sets × fault domains" : `Fault domains × ${unit.plural}`;
    if (!t.grid.length && !t.grid_unplaced.length) {
      replace("grid", el("p", { class: "empty" }, "No VM has registered yet."));
      return;
    }
    const columnOf = {}; // VM -> its column (its maintenance domain)
    const cells = {};
    const busy = {}; // column -> events holding VMs there: maintenance in progress
    for (const cell of t.grid) {
      cells[`${cell.row}\u0000${cell.column}`] = cell.vms;
      for (const vm of cell.vms) {
        columnOf[vm.name] = cell.column;
        if (vm.reserved_by) {
          busy[cell.column] = busy[cell.column] || new Set();
          busy[cell.column].add(short(vm.reserved_by));
        }
      }
    }
    const held = {}; // column -> held events that want VMs there: the maintenance we hold back
    for (const e of d.events) {
      if (!e.active || e.state !== "held") continue;
      for (const name of e.resources) {
        const column = columnOf[name];
        if (column === undefined) continue;
        held[column] = held[column] || new Set();
        held[column].add(short(e.event_id));
      }
    }
    const columnClass = (c) => [busy[c] ? "busy" : "", held[c] ? "held" : ""].join(" ").trim() || null;
    const head = el("tr", {}, el("th", { scope: "col", class: "corner" }, `${rowWord} \\ ${unit.short}`),
      t.columns.map((column) => {
        const events = busy[column] ? [...busy[column]] : [];
        const holds = held[column] ? [...held[column]] : [];
        const ud = column.startsWith("UD ") ? column.slice(3) : null;
        return el("th", { scope: "col", class: columnClass(column), "data-domain": column, "data-ud": ud }, column,
          events.length ? el("span", { class: "ud-note" }, `event ${events.join(", ")}`) : null,
          holds.length ? el("span", { class: "held-note" }, `held: ${holds.join(", ")}`) : null);
      }));
    const body = t.rows.map((row) => el("tr", {}, el("th", { scope: "row" }, row),
      t.columns.map((column) => {
        const vms = cells[`${row}\u0000${column}`] || [];
        return el("td", { class: columnClass(column), "data-domain": column },
          vms.length ? el("ul", {}, vms.map((vm) => el("li", {}, vmChip(vm.name, vm.state, vm.reserved_by))))
            : el("span", { class: "empty" }, "—", el("span", { class: "sr-only" }, "no VMs")));
      })));
    const rowsText = t.maintenance_domain === "fault_domain" ? `${t.rows.length} scale sets (rows)`
      : t.maintenance_domain === "zone" ? `${t.rows.length} fault domains within each zone (rows)`
        : `${t.rows.length} fault domains (rows)`;
    const caption = el("caption", {},
      `${d.vms.length} VMs over ${rowsText} and ${t.columns.length} ${unit.plural} (columns, ` +
      `the unit a rollout takes down). Shaded columns have maintenance in progress; orange ones, a maintenance we hold.`);
    const out = [];
    if (t.maintenance_domain_problem) {
      out.push(el("p", { class: "notok", "data-problem": "mixed" },
        `Each VM is shown under its own unit: ${t.maintenance_domain_problem}.`));
    }
    out.push(el("table", { class: "grid" }, caption, el("thead", {}, head), el("tbody", {}, body)));
    if (t.grid_unplaced.length) {
      out.push(el("p", {}, `Without a known ${unit.one}: `,
        t.grid_unplaced.map((vm) => [vmChip(vm.name, vm.state, vm.reserved_by), " "])));
    }
    replace("grid", out);
  }

  function renderVms(d) {
    $("vms-count").textContent = `${d.vms.length} VM${d.vms.length === 1 ? "" : "s"}`;
    if (!d.vms.length) {
      replace("vms", el("p", { class: "empty" }, "No VM has registered yet."));
      return;
    }
    const dash = (v) => (v === null || v === undefined || v === "" ? "—" : String(v));
    replace("vms", el("table", { class: "rows" },
      el("thead", {}, el("tr", {}, ["VM", "State", "Maintenance domain", "FD", "UD", "Zone", "Deployment",
        "Groups", "Event"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, d.vms.map((vm) => el("tr", { "data-vm": vm.name },
        el("td", {}, vmChip(vm.name, vm.state, vm.reserved_by)),
        el("td", {}, STATE[vm.state] ? STATE[vm.state].label : vm.state),
        el("td", { class: "domain" }, vm.maintenance_domain ? el("strong", {}, vm.maintenance_domain)
          : el("span", { class: "empty", title: "the VM did not report it, or the cluster has no single unit" }, "unknown")),
        el("td", { class: "num" }, dash(vm.fd)),
        el("td", { class: "num" }, dash(vm.ud)),
        el("td", {}, dash(vm.zone)),
        el("td", {}, vm.kind + (vm.scale_set ? ` (${vm.scale_set})` : "")),
        el("td", {}, vm.groups.join(", ") || "—"),
        el("td", {}, vm.reserved_by ? el("code", { title: vm.reserved_by }, short(vm.reserved_by)) : "—"))))));
  }

  function timeline(e, now) {
    const history = e.decision ? e.decision.history : [];
    if (!history.length) return el("span", { class: "empty" }, "no decision yet");
    const details = el("details", { "data-event": e.event_id },
      el("summary", {}, `${history.length} step${history.length === 1 ? "" : "s"}`),
      el("ol", { class: "timeline" }, history.map((t) => el("li", {},
        timeEl(t.at, now), " ", badge(t.to), " ", t.reason || "", t.by && t.by !== "coordinator" ? ` (by ${t.by})` : ""))));
    details.open = openTimelines.has(e.event_id);
    details.addEventListener("toggle", () => {
      if (details.open) openTimelines.add(e.event_id);
      else openTimelines.delete(e.event_id);
    });
    return details;
  }

  function renderEvents(d) {
    const active = d.events.filter((e) => e.active);
    const done = d.events.filter((e) => !e.active).reverse();
    $("events-note").textContent = `${active.length} active · ${d.events_total} known` +
      (d.events_total > d.events.length ? ` (showing the latest ${d.events.length})` : "");
    if (!d.events.length) {
      replace("events", el("p", { class: "empty" }, "No scheduled events."));
      return;
    }
    const rows = [...active, ...done].map((e) => {
      const decision = e.decision;
      const reasonCell = el("td", { class: "reason" },
        e.code ? el("code", { class: "code", title: "decision code" }, e.code) : null, e.reason || "");
      const reason = e.reason || "";
      if (e.operator_hold) {
        const by = e.hold_by ? ` (by ${e.hold_by}${e.hold_at ? ", " + relative(e.hold_at, d.now) : ""})` : "";
        // a held event's reason already is the hold: say who, not the reason twice
        reasonCell.append(el("span", { class: "op" },
          reason.includes(e.operator_hold) ? `held by an operator${by}` : `operator hold: ${e.operator_hold}${by}`));
      }
      if (e.force_reason && !reason.includes(e.force_reason)) {
        reasonCell.append(el("span", { class: "op" },
          `operator force: ${e.force_reason}${e.force_skip_drain ? " (without draining)" : ""}`));
      }
      if (decision && decision.acker) {
        const ack = e.ack ? `, ack ${e.ack.state}` : "";
        reasonCell.append(el("span", { class: "note" }, `acker ${decision.acker}, approval ${decision.approval}${ack}`));
      }
      const reserved = decision ? decision.reserved : [];
      return el("tr", { class: e.active ? "active" : "done", "data-event": e.event_id },
        el("td", {}, el("code", { title: e.event_id }, short(e.event_id))),
        el("td", {}, e.event_type || "—"),
        el("td", {}, e.status || "—"),
        el("td", {}, badge(e.state), marks(e)),
        reasonCell,
        el("td", {}, e.resources.join(", "),
          reserved.length ? el("span", { class: "note" }, ` (${reserved.length} reserved)`) : null),
        el("td", {}, e.not_before ? timeEl(e.not_before, d.now) : "—"),
        el("td", {}, timeline(e, d.now)));
    });
    replace("events", el("table", { class: "rows" },
      el("caption", { class: "sr-only" }, "Events, active first"),
      el("thead", {}, el("tr", {}, ["Event", "Type", "Platform", "Decision", "Reason", "VMs",
        "Not before", "Timeline"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows)));
  }

  function renderGroups(groups) {
    if (!groups.length) {
      replace("groups", el("p", { class: "empty" }, "No replica groups."));
      return;
    }
    replace("groups", el("table", { class: "rows" },
      el("thead", {}, el("tr", {}, ["Group", "Members", "Live", "Available", "Min", "Status"]
        .map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, groups.map((g) => el("tr", { "data-group": g.name },
        el("td", {}, el("strong", {}, g.name), g.source && g.source !== "api" ?
          el("span", { class: "note" }, ` ${g.source}`) : null),
        el("td", {}, g.members.map((m, i) => [i ? ", " : "",
          g.unavailable.includes(m) ? el("span", { class: "notok", title: `${m} is unavailable` }, `${m} (out)`) : m])),
        el("td", { class: "num" }, `${g.live}`),
        el("td", { class: "num" }, `${g.available}`),
        el("td", { class: "num" }, `${g.required}`),
        el("td", {}, g.ok ? el("span", { class: "ok" }, "✓ ok") : el("span", { class: "notok" }, "✖ below min")))))));
  }

  function downNow(a, unit) {
    if (!a.down_now || !a.down_now.length) return el("span", { class: "ok" }, "all up");
    return el("span", { class: "down-now" }, `${a.down_now.join(", ")} down` +
      (a.now_ud_safe ? "" : `: the next ${unit.short}'s maintenance will be held`));
  }

  function renderPlacement(audits, problem, mode) {
    const unit = unitOf(mode);
    if (problem) {
      replace("placement", el("p", { class: "notok" },
        `Placement cannot be judged: ${problem}.`));
      return;
    }
    if (!audits.length) {
      replace("placement", el("p", { class: "empty" }, "No replica groups to audit."));
      return;
    }
    // the verdict is about placement (every known VM up); VMs down right now (a
    // maintenance in progress, a lost VM) are shown apart and never turn it red
    const unsafe = audits.filter((a) => !a.ud_safe || !a.fd_safe);
    const down = audits.filter((a) => a.ud_safe && a.fd_safe && a.down_now && a.down_now.length);
    const shown = [...unsafe, ...down];
    if (!shown.length) {
      replace("placement", el("p", { class: "ok" },
        mode === "fault_domain" ? `✓ All ${audits.length} groups survive the loss of any one fault domain.`
          : `✓ All ${audits.length} groups survive the loss of any one ${unit.one} or fault domain.`));
      return;
    }
    replace("placement",
      el("table", { class: "rows" },
        el("thead", {}, el("tr", {}, ["Group", `One ${unit.short} lost`, "One FD lost", "Why", "Fix", "Right now"]
          .map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, shown.map((a) => el("tr", { "data-group": a.group },
          el("td", {}, el("strong", {}, a.group)),
          el("td", {}, a.ud_safe ? el("span", { class: "ok" }, "✓ safe") : el("span", { class: "notok" }, "✖ blocks rollout")),
          el("td", {}, a.fd_safe ? el("span", { class: "ok" }, "✓ safe") : el("span", { class: "notok" }, "✖ loses quorum")),
          el("td", {}, a.ud_safe && a.fd_safe ? "placement is safe" : a.verdict),
          el("td", { class: "fix" }, a.fix ? [el("strong", {}, `move ${a.fix.vm} → ${a.fix.to}`), el("br"), a.fix.reason]
            : a.ud_safe && a.fd_safe ? "—" : "no single move fixes it"),
          el("td", { class: "now" }, downNow(a, unit)))))),
      audits.length > shown.length ?
        el("p", { class: "note" }, audits.length - shown.length === 1 ? "1 other group is safe and all up." :
          `${audits.length - shown.length} other groups are safe and all up.`) : null);
  }

  // ---------------------------------------------------------------- start

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token-input").value.trim();
      if (!value) return;
      token = value;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token-input").value = "";
      $("login-error").textContent = "";
      $("login").hidden = true;
      setConn("idle", "connecting…");
      start();
    });
    $("signout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      token = "";
      showLogin("Token forgotten.");
    });
    window.addEventListener("hashchange", () => {
      if (new URLSearchParams(location.hash.slice(1)).get("token")) {
        token = takeToken();
        start();
      }
    });
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) stop(); // a hidden tab holds no stream open
      else if ($("login").hidden) start();
    });
    token = takeToken();
    setConn("idle", "connecting…");
    start();
  });
})();
