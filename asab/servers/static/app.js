// asab live bench page: draws the tubing network once (/live/graph), then renders every
// snapshot the server sends on /live/events (server-sent events). No other host is named;
// text from the server is only ever set as textContent (never parsed as HTML).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const SCALE = 62;           // px per layout unit
const PAD = 40;             // px above and below the drawing
const SIDE = 130;           // px left and right of it (room for the names)
const PALETTE = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
                 "#d62728", "#7f7f7f", "#ff9896", "#98df8a", "#c5b0d5"];
const FIXED = { gas: "#d9dde3", solvent: "#6baed6", unknown: "#000000", mixture: "#b8860b" };  // not the active channel's orange
const KIND_COLOR = { reservoir: "#1f77b4", solvent: "#17becf", pump: "#e377c2", mixer: "#bcbd22",
                     instrument: "#9467bd", vial: "#2ca02c", waste: "#8c564b", gas: "#7f7f7f",
                     other: "#404040" };

const live = { graph: null, state: null, updates: 0, colors: {}, tubes: {}, channels: {}, pumps: {} };
window.asabLive = live;  // for tests and the benchmark: the last snapshot, the update count

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function svg(tag, attrs, parent) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function fmt(x, digits) {
  return (x === null || x === undefined) ? "?" : Number(x).toFixed(digits);
}

function colorOf(origin) {
  if (!origin) return FIXED.gas;
  if (FIXED[origin]) return FIXED[origin];
  if (!live.colors[origin]) {
    live.colors[origin] = PALETTE[Object.keys(live.colors).length % PALETTE.length];
  }
  return live.colors[origin];
}

function drawGraph(g) {
  const root = document.getElementById("bench-svg");
  const xs = g.nodes.map(n => n.x), ys = g.nodes.map(n => n.y);
  const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
  const w = (maxX - minX) * SCALE + 2 * SIDE, h = (maxY - minY) * SCALE + 2 * PAD;
  root.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const pos = {};
  for (const n of g.nodes) pos[n.name] = [(n.x - minX) * SCALE + SIDE, (maxY - n.y) * SCALE + PAD];
  const valves = svg("g", { id: "valves" }, root);
  const tubes = svg("g", { id: "tubes" }, root);
  const channels = svg("g", { id: "channels" }, root);
  const nodes = svg("g", { id: "nodes" }, root);
  const labels = svg("g", { id: "labels" }, root);
  const taken = [];  // label boxes placed so far: [x0, y0, x1, y1]
  const free = box => !taken.some(t => box[0] < t[2] && box[2] > t[0] && box[1] < t[3] && box[3] > t[1]);
  function label(x, y, text, id) {
    // right of the node, else left, else below, else above; left out (tooltip only) when all collide
    const w = text.length * 5.4 + 2, h = 10;
    const tries = [[x + 8, y + 3, "start"], [x - 8, y + 3, "end"], [x, y + 16, "middle"], [x, y - 9, "middle"]];
    for (const [tx, ty, anchor] of tries) {
      const x0 = anchor === "start" ? tx : anchor === "end" ? tx - w : tx - w / 2;
      const box = [x0, ty - h + 1, x0 + w, ty + 2];
      if (free(box)) {
        taken.push(box);
        const t = svg("text", { x: tx, y: ty, "text-anchor": anchor }, labels);
        if (id) t.setAttribute("id", id);
        t.textContent = text;
        return t;
      }
    }
    return null;
  }
  for (const [name, v] of Object.entries(g.valves)) {
    const c = pos[v.common];
    let r = 0;
    for (const p of Object.keys(v.ports)) r = Math.max(r, Math.hypot(pos[p][0] - c[0], pos[p][1] - c[1]));
    r = Math.min(Math.max(r * 1.3, 8), 24);
    svg("circle", { cx: c[0], cy: c[1], r: r, class: "valve-disc" }, valves);
    const w = (name.length + 2) * 5.4;
    taken.push([c[0] - w / 2, c[1] - r - 13, c[0] + w / 2, c[1] - r]);
    const t = svg("text", { x: c[0], y: c[1] - r - 3, "text-anchor": "middle", id: `valve-label-${name}`,
                            class: "valve-label" }, labels);
    t.textContent = name;
    live.channels[name] = {};
    for (const [port, index] of Object.entries(v.ports)) {
      live.channels[name][index] = svg("line", { x1: c[0], y1: c[1], x2: pos[port][0], y2: pos[port][1],
                                                 class: "channel", "data-valve": name, "data-position": index }, channels);
    }
  }
  for (const t of g.tubes) {
    const a = pos[t.from], b = pos[t.to];
    const line = svg("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], class: "tube", stroke: FIXED.gas,
                               "data-segment": t.segment }, tubes);
    const title = svg("title", {}, line);
    title.textContent = t.segment;
    (live.tubes[t.segment] = live.tubes[t.segment] || []).push(line);
  }
  for (const n of g.nodes) {
    const [x, y] = pos[n.name];
    if (n.kind === "port") {
      svg("circle", { cx: x, cy: y, r: 1.6, fill: "#606060" }, nodes);
      continue;
    }
    const mark = svg("circle", { cx: x, cy: y, r: n.kind === "other" ? 4 : 6,
                                 fill: KIND_COLOR[n.kind] || KIND_COLOR.other, "data-node": n.name }, nodes);
    svg("title", {}, mark).textContent = `${n.name} (${n.kind})`;
    if (n.kind === "pump") live.pumps[n.name] = mark;
  }
  for (const n of g.nodes) {
    if (n.kind !== "port") taken.push([pos[n.name][0] - 6, pos[n.name][1] - 6, pos[n.name][0] + 6, pos[n.name][1] + 6]);
  }
  // vessels first (their names matter most), then the other nodes where room is left
  const order = g.nodes.filter(n => n.kind !== "port")
    .sort((a, b) => (a.kind === "other") - (b.kind === "other") || a.name.localeCompare(b.name));
  for (const n of order) label(pos[n.name][0], pos[n.name][1], n.name);
}

function renderGraph(s) {
  for (const [segment, lines] of Object.entries(live.tubes)) {
    const content = s.lines[segment];
    const main = content ? content.main : null;
    for (const line of lines) {
      line.setAttribute("stroke", colorOf(main));
      line.setAttribute("data-liquid", main || "");
    }
  }
  for (const [valve, byIndex] of Object.entries(live.channels)) {
    const at = s.valves[valve];
    for (const [index, line] of Object.entries(byIndex)) {
      line.classList.toggle("active", Number(index) === at);
    }
    const label = document.getElementById(`valve-label-${valve}`);
    if (label) label.textContent = at === null || at === undefined ? `${valve}=?` : `${valve}=${at}`;
  }
  const nodeOfPump = {};
  for (const p of s.pumps) nodeOfPump[p.node] = p;
  for (const [node, mark] of Object.entries(live.pumps)) {
    const p = nodeOfPump[node];
    mark.classList.toggle("pumping", !!(p && p.pumping));
  }
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  const seen = new Set(Object.values(s.lines).map(l => l.main));
  for (const origin of [...seen].sort()) {
    const item = el("span", {});
    const swatch = el("i", {});
    swatch.style.background = colorOf(origin);
    item.append(swatch, document.createTextNode(origin));
    legend.append(item);
  }
}

function bar(value, capacity) {
  const outer = el("div", { class: "bar" });
  const inner = el("div", {});
  const f = capacity ? Math.max(0, Math.min(1, (value || 0) / capacity)) : 0;
  inner.style.width = `${(100 * f).toFixed(1)}%`;
  outer.append(inner);
  return outer;
}

function rows(tbodyParent, items, make) {
  const tbody = document.querySelector(`${tbodyParent} tbody`);
  tbody.replaceChildren(...items.map(make));
}

function clock(iso) {  // "2026-12-07T14:46:23.265+00:00" → "14:46:23" (UTC, as the records)
  return iso ? iso.slice(11, 19) : "";
}

function td(text, cls) { return el("td", cls ? { class: cls } : {}, text); }

function renderPumps(s) {
  rows("#pumps", s.pumps, p => {
    const tr = el("tr", { "data-pump": p.name, "data-pumping": String(!!p.pumping) });
    const cell = el("td", {}); cell.append(bar(p.fill, p.capacity));
    tr.append(td(p.name), td(`${fmt(p.fill, 3)} / ${fmt(p.capacity, 1)}`), cell,
              td(p.pumping ? "moving" : "stopped", "motion"), td(p.content || "—"));
    return tr;
  });
}

function renderLevels(s) {
  rows("#levels", s.vessels, v => {
    const tr = el("tr", { "data-vessel": v.node });
    const cell = el("td", {}); cell.append(bar(v.volume, v.capacity));
    tr.append(td(v.node), td(v.kind),
              td(`${fmt(v.volume, 2)}${v.capacity === null ? "" : " / " + fmt(v.capacity, 1)}`), cell);
    return tr;
  });
  const b = s.balance;
  document.getElementById("balance").textContent = b
    ? `balance: ${b.vessel} holds ${fmt(b.load, 3)} g of ${fmt(b.capacity, 0)} g` : "no balance";
  document.getElementById("waiting").textContent = s.waiting ? `waits for the operator: ${s.waiting}` : "";
}

function renderJobs(s) {
  const box = document.getElementById("current-job");
  box.replaceChildren();
  if (!s.running.length) {
    box.textContent = "no job running";
    box.setAttribute("data-job", "");
  }
  for (const j of s.running) {
    const line = el("div", { "data-job": j.id, class: "job" },
                    `${j.kind} — step ${j.step || "–"} — ${(100 * j.progress).toFixed(0)} %${j.cancel_requested ? " (cancelling)" : ""}`);
    const p = el("div", { class: "progress" }); const fill = el("div", {});
    fill.style.width = `${(100 * j.progress).toFixed(1)}%`;
    p.append(fill);
    box.append(line, p);
    box.setAttribute("data-job", j.id);
  }
  const queue = document.getElementById("queue");
  queue.textContent = s.queue.length ? s.queue.map(q => q.kind).join(", ")
    : "empty (the actions server starts a job at once or answers 409)";
  rows("#history", s.history, j => {
    const tr = el("tr", { "data-job": j.id, "data-state": j.state });
    const why = j.error ? ` (${j.error.message || j.error.type})` : "";
    const record = td(j.record ? j.record.split("/").pop() : "", "path");
    if (j.record) record.title = j.record;
    tr.append(td(j.kind), td(j.state + why, `state-${j.state}`), td(clock(j.created)),
              td(clock(j.finished)), record);
    return tr;
  });
}

function renderResults(s) {
  rows("#results", s.results, r => {
    const comp = r.composition
      ? Object.entries(r.composition).map(([k, v]) => `${k} ${fmt(v, 3)}`).join(", ") : "?";
    const tr = el("tr", { "data-job": r.job });
    tr.append(td(r.job.slice(0, 8)), td(r.sample), td(comp), td(fmt(r.density, 5)),
              td(fmt(r.viscosity, 3)), td(clock(r.finished)));
    return tr;
  });
}

function renderSafety(s) {
  const box = document.getElementById("safety");
  box.setAttribute("data-estop", String(!!s.estop));
  box.setAttribute("data-oos", String(!!s.out_of_service));
  document.getElementById("estop-state").textContent =
    s.estop ? `E-STOP LATCHED: ${s.estop}` : "e-stop: not latched";
  document.getElementById("oos-state").textContent =
    s.out_of_service ? ` — OUT OF SERVICE: ${s.out_of_service}` : " — in service";
  document.getElementById("estop-button").disabled = false;
}

function render(s) {
  live.state = s;
  document.getElementById("bench-time").textContent = fmt(s.bench_time, 1);
  renderSafety(s);
  if (live.graph) renderGraph(s);
  renderPumps(s);
  renderLevels(s);
  renderJobs(s);
  renderResults(s);
  live.updates += 1;
  if (live.updates === 1) live.firstRenderMs = performance.now();  // ms since navigation
  document.body.setAttribute("data-updates", String(live.updates));
}

function setConn(state, text) {
  const c = document.getElementById("conn");
  c.setAttribute("data-state", state);
  c.textContent = text;
}

async function estop() {
  const button = document.getElementById("estop-button");
  button.disabled = true;
  try {
    const r = await fetch("/estop", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Asab-Page": "1" },
      body: JSON.stringify({ reason: "e-stop button on the live page" }),
    });
    if (r.status === 401) setConn("lost", "e-stop refused: this page's session ended (the server restarted?): " +
      "reopen the page with ?token=…, and use asab estop or the hardware button now");
    else if (!r.ok) setConn("lost", `e-stop answered ${r.status}: use asab estop or the hardware button`);
  } catch (e) {
    setConn("lost", "e-stop request failed: use asab estop or the hardware button");
  }
}

async function start() {
  document.getElementById("estop-button").addEventListener("click", estop);
  try {
    const r = await fetch("/live/graph", { credentials: "same-origin" });
    if (r.ok) {
      live.graph = await r.json();
      for (const name of live.graph.liquids || []) colorOf(name);  // stable colours per stock
      drawGraph(live.graph);
    }
  } catch (e) {
    setConn("lost", "could not load the tubing network");
  }
  const source = new EventSource("/live/events");
  source.addEventListener("state", ev => { setConn("live", "live"); render(JSON.parse(ev.data)); });
  source.addEventListener("heartbeat", () => setConn("live", "live"));
  source.onerror = async () => {
    // EventSource retries by itself, except after a refusal: ask why the stream ended
    try {
      const r = await fetch("/live/state", { credentials: "same-origin" });
      if (r.status === 401) {
        source.close();
        setConn("lost", "session ended (the server restarted?): reopen this page with ?token=…");
        return;
      }
    } catch (e) { /* the server is away: keep retrying */ }
    setConn("lost", "connection lost, retrying…");
  };
}

document.addEventListener("DOMContentLoaded", start);
