// The gpuherd dashboard: polls the broker's API every two seconds and draws what it says.
// No framework, no build step, no CDN: this file is served as it is from the package.
"use strict";

const HOUR = 3600;
const POLL_MS = 2000;
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
  "#ff9da7", "#9c755f"];
const OTHER = "#bab0ac";

// The token comes in the URL's fragment (never sent to the server); keep it for this tab and
// take it out of the address bar.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  sessionStorage.setItem("gpuherd-token", fragment.get("token"));
  history.replaceState(null, "", location.pathname);
}
const token = sessionStorage.getItem("gpuherd-token");

async function api(path) {
  const response = await fetch(path, {
    headers: token ? { Authorization: "Bearer " + token } : {},
    cache: "no-store",
  });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i >= 3 ? 1 : 0)} ${units[i]}`;
}

function duration(s) {
  if (s == null) return "";
  if (s < 90) return `${s.toFixed(1)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function clock(at) {
  return new Date(at * 1000).toLocaleTimeString([], { hour12: false });
}

const colours = new Map();
function colour(key) {
  if (key === "other") return OTHER;
  if (!colours.has(key)) colours.set(key, PALETTE[colours.size % PALETTE.length]);
  return colours.get(key);
}

// --- memory chart: the last hour of samples, stacked by tenant and job ------------------------
const samples = [];
let lastSample = 0;

function drawGpus(now) {
  const host = document.getElementById("gpus");
  const byGpu = new Map();
  for (const s of samples) {
    for (const g of s.gpus) {
      if (!byGpu.has(g.index)) byGpu.set(g.index, []);
      byGpu.get(g.index).push({ at: s.at, ...g });
    }
  }
  host.replaceChildren();
  for (const [index, points] of [...byGpu.entries()].sort((a, b) => a[0] - b[0])) {
    const last = points[points.length - 1];
    const keys = [...new Set(points.flatMap((p) => Object.keys(p.by)))].sort();
    keys.push("other");
    const W = 1000, H = 180, total = Math.max(...points.map((p) => p.total)) || 1;
    // The last hour, or less while the broker has not been up that long: the chart starts at
    // the first sample so a young broker's history is not a sliver at the right edge.
    const start = Math.max(now - HOUR, samples[0].at);
    const span = Math.max(now - start, 1);
    const x = (at) => ((at - start) / span) * W;
    const y = (v) => H - (v / total) * H;
    // Hold each value to the next sample, so a lone sample still draws a band up to now.
    const series = [...points, { ...last, at: now }];
    const chart = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none",
      "data-gpu": index });
    const below = series.map(() => 0);
    for (const key of keys) {
      const above = series.map((p, i) => {
        const named = keys.filter((k) => k !== "other").reduce((sum, k) => sum + (p.by[k] || 0), 0);
        const v = key === "other" ? Math.max(0, p.used - named) : (p.by[key] || 0);
        return below[i] + v;
      });
      const top = series.map((p, i) => `${x(p.at).toFixed(1)},${y(above[i]).toFixed(1)}`);
      const bottom = series.map((p, i) => `${x(p.at).toFixed(1)},${y(below[i]).toFixed(1)}`).reverse();
      const band = svg("polygon", { points: [...top, ...bottom].join(" "), fill: colour(key),
        "fill-opacity": "0.85", "data-series": key });
      band.append(svg("title"));
      band.firstChild.textContent = `${key}: ${bytes(above.at(-1) - below.at(-1))}`;
      chart.append(band);
      above.forEach((v, i) => { below[i] = v; });
    }
    const legend = el("div", { class: "legend" },
      ...keys.map((k) => el("span", {}, el("i", { style: `background:${colour(k)}` }),
        `${k.replace(":", " ")} ${bytes(k === "other" ? null : last.by[k])}`)));
    const axis = el("div", { class: "axis" }, el("span", {}, clock(start)),
      el("span", {}, `${duration(now - start)} · top is ${bytes(total)}`), el("span", {}, "now"));
    host.append(el("div", { class: "gpu" },
      el("h3", {}, `GPU ${index} · ${last.name} · ${bytes(last.used)} of ${bytes(last.total)} used`),
      chart, axis, legend));
  }
  if (!byGpu.size) host.append(el("p", {}, "No GPU reading yet."));
}

// --- tables ------------------------------------------------------------------------------------
function state(text) {
  return el("span", { class: `pill state-${text}` }, text);
}

function drawTenants(tenants, now) {
  const body = document.querySelector("#tenants tbody");
  body.replaceChildren(...tenants.map((t) => {
    let down = "";
    let over = false;
    if (t.down_since != null) {
      const s = now - t.down_since;
      down = `down ${duration(s)}`;
      over = t.max_downtime_s != null && s > t.max_downtime_s;
    } else if (t.last_down_s != null) {
      down = `last down ${duration(t.last_down_s)}`;
      over = t.max_downtime_s != null && t.last_down_s > t.max_downtime_s;
    }
    if (t.max_downtime_s != null && down) down += ` (max ${duration(t.max_downtime_s)})`;
    return el("tr", { "data-tenant": t.name, "data-state": t.state },
      el("td", {}, t.name), el("td", {}, t.gpu ?? ""), el("td", {}, state(t.state)),
      el("td", { class: "num" }, bytes(t.held)), el("td", over ? { class: "over" } : {}, down),
      el("td", { class: "num" }, t.releases));
  }));
}

function drawJobs(jobs) {
  const body = document.querySelector("#jobs tbody");
  const shown = [...jobs].sort((a, b) => b.submitted_at - a.submitted_at).slice(0, 30);
  body.replaceChildren(...shown.map((j) => el("tr", { "data-job": j.name, "data-state": j.state },
    el("td", {}, j.name), el("td", {}, j.id),
    el("td", {}, j.owner_uid == null ? "-" : `uid ${j.owner_uid}`),
    el("td", {}, state(j.state)), el("td", {}, j.reason ?? ""))));
}

const events = [];
const seen = new Set();
let lastEvent = 0;
function drawEvents() {
  const body = document.querySelector("#events tbody");
  body.replaceChildren(...events.slice(-200).reverse().map((e) => el("tr", { "data-kind": e.kind },
    el("td", {}, clock(e.at)), el("td", {}, e.kind), el("td", {}, e.tenant || e.job || ""),
    el("td", {}, e.message))));
}

// --- the loop ------------------------------------------------------------------------------------
async function poll() {
  const pill = document.getElementById("engine");
  try {
    const [status, history, tenants, jobs, news] = await Promise.all([
      api("/v1/status"),
      api(`/v1/history?since=${lastSample}`),
      api("/v1/tenants"),
      api("/v1/jobs?all=true"),
      api(`/v1/events?since=${lastEvent}`),
    ]);
    const now = Date.now() / 1000;
    for (const s of history) if (s.at > lastSample) { samples.push(s); lastSample = s.at; }
    while (samples.length && samples[0].at < now - HOUR) samples.shift();
    for (const e of news) {
      const key = `${e.at}|${e.kind}|${e.job}|${e.tenant}|${e.message}`;
      if (seen.has(key)) continue;  // "since" is inclusive: the last one comes back
      seen.add(key);
      events.push(e);
      lastEvent = Math.max(lastEvent, e.at);
    }
    drawGpus(now);
    drawTenants(tenants, now);
    drawJobs(jobs);
    drawEvents();
    pill.textContent = status.engine.ok ? "engine ok" : `engine error: ${status.engine.error}`;
    pill.className = status.engine.ok ? "pill ok" : "pill bad";
    document.getElementById("updated").textContent = `updated ${clock(now)}`;
    document.body.dataset.ready = "1";
  } catch (err) {
    pill.textContent = String(err.message || err);
    pill.className = "pill bad";
  }
  setTimeout(poll, POLL_MS);
}

poll();
