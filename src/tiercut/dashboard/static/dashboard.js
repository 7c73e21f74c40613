// tiercut live: reads the server-sent events of /events and draws them on canvases
// (plain canvas, no plotting library). State is rebuilt from scratch on every (re)connect:
// the server sends the plans and the recent history first.
"use strict";

const TIER_COLORS = { device: "#4e79a7", edge: "#f28e2b", cloud: "#59a14f" };
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7",
  "#9c755f", "#e15759", "#bab0ac"];
const HOP_COLORS = ["#9aa5b1", "#616e7c", "#cbd2d9"];
const EXTRA = { codec: "#d4a6c8", queue: "#ffbe7d", fallback: "#e15759", other: "#e4e7eb" };
const RECENT = 40; // bars in the breakdown

let state;
function reset() {
  state = { plans: {}, order: [], requests: [], estimates: [], switches: [], current: null,
    fallbacks: 0 };
}
reset();

const $ = (id) => document.getElementById(id);
const ms = (s) => (s == null ? "-" : (s * 1e3 < 10 ? (s * 1e3).toFixed(2) : (s * 1e3).toFixed(1)) + " ms");
function bytes(n) {
  if (n == null) return "? B";
  if (n < 1024) return n + " B";
  if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
  return (n / (1 << 20)).toFixed(2) + " MiB";
}
function rate(bps) {
  if (bps == null) return "-";
  const [scale, unit] = bps >= 1e12 ? [1e12, "Tbit/s"] : bps >= 1e9 ? [1e9, "Gbit/s"]
    : bps >= 1e6 ? [1e6, "Mbit/s"] : [1e3, "kbit/s"];
  return +(bps / scale).toPrecision(3) + " " + unit;
}
const tierColor = (name, i) => TIER_COLORS[name] || PALETTE[(i + 3) % PALETTE.length];
const planColor = (id) => PALETTE[Math.max(0, state.order.indexOf(id)) % PALETTE.length];
const planName = (p) => (p ? p.label || p.tiers.filter((t) => t.nodes.length)
  .map((t) => t.name + ":" + t.nodes.length).join(" ") : "-");

function handle(ev) {
  if (ev.type === "plan") {
    if (!(ev.id in state.plans)) state.order.push(ev.id);
    state.plans[ev.id] = ev;
    if (!state.current) state.current = ev.id;
    $("model").textContent = ev.model;
  } else if (ev.type === "request") {
    state.requests.push(ev);
    if (state.requests.length > 600) state.requests.shift();
    state.current = ev.plan;
    if (ev.fallback) state.fallbacks += 1;
  } else if (ev.type === "estimate") {
    state.estimates.push(ev);
    if (state.estimates.length > 600) state.estimates.shift();
  } else if (ev.type === "switch") {
    state.switches.push(ev);
  }
  schedule();
}

let pending = false;
function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; render(); });
}

function render() {
  const last = state.requests[state.requests.length - 1];
  $("count").textContent = state.requests.length;
  $("last").textContent = last ? ms(last.total_s) : "-";
  $("current").textContent = planName(state.plans[state.current]);
  $("switches").textContent = state.switches.length;
  $("fallbacks").textContent = state.fallbacks;
  renderCut();
  drawBreakdown();
  drawBandwidth();
  drawTimeline();
}

function mean(values) {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}

function renderCut() {
  const plan = state.plans[state.current];
  const box = $("tiers");
  box.textContent = "";
  if (!plan) { box.textContent = "no plan published yet"; return; }
  const mine = state.requests.filter((r) => r.plan === plan.id).slice(-20);
  $("cut-note").textContent = `${plan.model}, plan ${planName(plan)}` +
    (plan.predicted_s != null ? `, predicted ${ms(plan.predicted_s)}` : "") +
    (mine.length ? `, measured ${ms(mean(mine.map((r) => r.total_s)))} (mean of ${mine.length})` : "");
  plan.tiers.forEach((tier, i) => {
    if (i > 0) box.appendChild(hopBox(plan.hops[i - 1], mine));
    const div = document.createElement("div");
    div.className = "tier" + (tier.nodes.length ? "" : " empty");
    div.dataset.tier = tier.name;
    div.style.borderColor = tierColor(tier.name, i);
    const measured = mean(mine.map((r) => r.compute_s[tier.name]).filter((v) => v != null));
    const names = tier.nodes.length > 6 ? [...tier.nodes.slice(0, 3), "…", ...tier.nodes.slice(-2)]
      : tier.nodes;
    div.innerHTML = `<div class="name" style="color:${tierColor(tier.name, i)}"></div>
      <div><b>${tier.nodes.length}</b> nodes; compute predicted ${ms(tier.predicted_s)},
      measured ${ms(measured)}</div><div class="nodes"></div>`;
    div.querySelector(".name").textContent = tier.name;
    div.querySelector(".nodes").textContent = names.join(" ");
    box.appendChild(div);
  });
  const plans = $("plans");
  plans.textContent = state.order.length > 1 ? "plans seen: " : "";
  if (state.order.length > 1) {
    for (const id of state.order) {
      const span = document.createElement("span");
      span.className = id === plan.id ? "on" : "";
      span.style.borderBottom = `3px solid ${planColor(id)}`;
      span.textContent = planName(state.plans[id]);
      plans.appendChild(span);
    }
  }
}

function hopBox(hop, mine) {
  const div = document.createElement("div");
  div.className = "hop";
  if (!hop) { div.innerHTML = '<div class="arrow">→</div>'; return div; }
  const key = hop.src + "-" + hop.dst;
  const measured = mean(mine.map((r) => r.transfer_s[key]).filter((v) => v != null));
  div.innerHTML = `<div class="bytes"></div><div class="arrow">⟶</div>
    <div class="what"></div><div>transfer predicted ${ms(hop.predicted_s)}, measured ${ms(measured)}</div>`;
  div.querySelector(".bytes").textContent = bytes(hop.bytes);
  div.querySelector(".what").textContent =
    `${hop.tensors.length} tensor${hop.tensors.length === 1 ? "" : "s"}, codec ${hop.codec}`;
  return div;
}

function canvas(id, left = 56) {
  const c = $(id);
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth, h = c.clientHeight;
  c.width = w * dpr; c.height = h * dpr;
  const ctx = c.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "12px system-ui, sans-serif";
  return { ctx, w, h, x0: left, y0: 10, x1: w - 12, y1: h - 26 };
}

function message(g, text) {
  g.ctx.fillStyle = "#8a94a0";
  g.ctx.fillText(text, g.x0, (g.y0 + g.y1) / 2);
}

// y axis with about five ticks, linear or log10; returns value -> pixel
function yAxis(g, lo, hi, log, fmt) {
  const { ctx } = g;
  const f = log ? Math.log10 : (v) => v;
  const a = f(lo), b = f(hi);
  const y = (v) => g.y1 - (f(v) - a) / (b - a || 1) * (g.y1 - g.y0);
  const ticks = [];
  if (log) {  // 1, 2, 5 per decade over a short range, every k-th decade over a long one
    const decades = b - a, every = Math.max(1, Math.ceil(decades / 6));
    const steps = decades < 2.5 ? [1, 2, 5] : [1];
    for (let e = Math.floor(a); e <= Math.ceil(b); e += every) for (const m of steps) ticks.push(m * 10 ** e);
    if (ticks.filter((v) => v >= lo && v <= hi).length < 2) ticks.push(lo * 1.1, hi / 1.1);
  } else {
    const step = niceStep((hi - lo) / 5);
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) ticks.push(v);
  }
  ctx.strokeStyle = "#e4e7eb"; ctx.fillStyle = "#52606d"; ctx.textAlign = "right";
  for (const v of ticks) {
    if (v < lo * 0.999 || v > hi * 1.001) continue;
    ctx.beginPath(); ctx.moveTo(g.x0, y(v)); ctx.lineTo(g.x1, y(v)); ctx.stroke();
    ctx.fillText(fmt(v), g.x0 - 6, y(v) + 4);
  }
  ctx.textAlign = "left";
  return y;
}

function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(raw || 1));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

function xTimeAxis(g, t0, t1) {
  const x = (t) => g.x0 + (t - t0) / (t1 - t0 || 1) * (g.x1 - g.x0);
  const step = niceStep((t1 - t0) / 6 || 1);
  g.ctx.fillStyle = "#52606d"; g.ctx.textAlign = "center";
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    g.ctx.fillText(`${+t.toFixed(3)} s`, x(t), g.y1 + 16);
  }
  g.ctx.textAlign = "left";
  return x;
}

function parts(r) {
  const out = [];
  const hops = Object.keys(r.transfer_s);
  Object.keys(r.compute_s).forEach((tier, i) => {
    out.push(["compute " + tier, r.compute_s[tier], tierColor(tier, i)]);
    if (i < hops.length) out.push(["hop " + hops[i], r.transfer_s[hops[i]], HOP_COLORS[i % 3]]);
  });
  out.push(["codecs", r.codec_s || 0, EXTRA.codec], ["queue", r.queue_s || 0, EXTRA.queue],
    ["fallback (local)", r.fallback_s || 0, EXTRA.fallback]);
  const known = out.reduce((a, p) => a + Math.max(p[1], 0), 0);
  out.push(["other", Math.max(r.total_s - known, 0), EXTRA.other]);
  return out;
}

function drawBreakdown() {
  const g = canvas("breakdown");
  const recent = state.requests.slice(-RECENT);
  const legend = {};
  if (!recent.length) { message(g, "waiting for requests"); $("breakdown-legend").textContent = ""; return; }
  const top = Math.max(...recent.map((r) => Math.max(r.total_s, 1e-6))) * 1e3 * 1.05;
  const y = yAxis(g, 0, top, false, (v) => `${+v.toFixed(2)}`);
  const slot = (g.x1 - g.x0) / RECENT, width = Math.max(2, slot * 0.75);
  recent.forEach((r, i) => {
    let acc = 0;
    const x = g.x0 + i * slot + (slot - width) / 2;
    for (const [name, s, color] of parts(r)) {
      if (!(s > 0)) continue;
      legend[name] = color;
      const v = s * 1e3;
      g.ctx.fillStyle = color;
      g.ctx.fillRect(x, y(acc + v), width, y(acc) - y(acc + v));
      acc += v;
    }
    if (r.fallback) { g.ctx.fillStyle = EXTRA.fallback; g.ctx.fillRect(x, g.y1 + 2, width, 3); }
  });
  g.ctx.fillStyle = "#52606d";
  g.ctx.fillText(`last ${recent.length} requests, oldest left`, g.x0, g.y1 + 18);
  legendInto($("breakdown-legend"), Object.entries(legend));
}

// [text, colour] pairs as legend entries (names come from the user's plan: text, not HTML)
function legendInto(box, entries) {
  box.textContent = "";
  for (const [text, color] of entries) {
    const span = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = color;
    span.append(swatch, text);
    box.appendChild(span);
  }
}

function drawBandwidth() {
  const g = canvas("bandwidth", 88);
  const plan = state.plans[state.current];
  const est = state.estimates;
  if (!est.length) { message(g, "no bandwidth estimate published (adaptive runs publish their policy's)"); return; }
  const lines = [];
  if (plan && plan.break_even_bps) lines.push([plan.break_even_bps, "#e15759", []]);
  for (const b of (plan && plan.breakpoints_bps) || []) lines.push([b, "#bab0ac", [5, 4]]);
  const values = [...est.map((e) => e.bps), ...lines.map((l) => l[0])];
  const lo = Math.min(...values) / 1.6, hi = Math.max(...values) * 1.6;
  const y = yAxis(g, lo, hi, true, rate);
  const t0 = est[0].t, t1 = Math.max(est[est.length - 1].t, t0 + 1e-3);
  const x = xTimeAxis(g, t0, t1);
  const { ctx } = g;
  for (const [v, color, dash] of lines) {
    ctx.strokeStyle = color; ctx.setLineDash(dash); ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.moveTo(g.x0, y(v)); ctx.lineTo(g.x1, y(v)); ctx.stroke();
  }
  ctx.setLineDash([]); ctx.strokeStyle = "#4e79a7"; ctx.lineWidth = 2;
  ctx.beginPath();
  // a step: an estimate holds until the next one
  est.forEach((e, i) => {
    if (i) ctx.lineTo(x(e.t), y(est[i - 1].bps)); else ctx.moveTo(x(e.t), y(e.bps));
    ctx.lineTo(x(e.t), y(e.bps));
  });
  ctx.lineTo(g.x1, y(est[est.length - 1].bps));
  ctx.stroke();
  ctx.lineWidth = 1;
  const now = est[est.length - 1];
  ctx.fillStyle = "#1f2933";
  ctx.fillText(`now ${rate(now.bps)} (${now.source}); ` + (plan && plan.break_even_bps
    ? `break-even ${rate(plan.break_even_bps)}` : "no break-even rate: the plan is not from a " +
    "decision table, or sends nothing"), g.x0 + 6, g.y0 + 12);
}

function drawTimeline() {
  const g = canvas("timeline");
  const reqs = state.requests;
  if (!reqs.length) { message(g, "waiting for requests"); return; }
  const t0 = reqs[0].t, t1 = Math.max(reqs[reqs.length - 1].t, t0 + 1e-3);
  const top = Math.max(...reqs.map((r) => r.total_s)) * 1e3 * 1.08;
  const y = yAxis(g, 0, top, false, (v) => `${+v.toFixed(2)}`);
  const x = xTimeAxis(g, t0, t1);
  const { ctx } = g;
  ctx.strokeStyle = "#7b8794"; ctx.setLineDash([4, 4]);
  for (const s of state.switches) {
    if (s.t < t0) continue;
    ctx.beginPath(); ctx.moveTo(x(s.t), g.y0); ctx.lineTo(x(s.t), g.y1); ctx.stroke();
  }
  ctx.setLineDash([]);
  for (const r of reqs) {
    ctx.fillStyle = planColor(r.plan);
    ctx.beginPath(); ctx.arc(x(r.t), y(r.total_s * 1e3), 3, 0, 2 * Math.PI); ctx.fill();
    if (r.fallback) {
      ctx.strokeStyle = EXTRA.fallback; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(x(r.t), y(r.total_s * 1e3), 6, 0, 2 * Math.PI); ctx.stroke();
      ctx.lineWidth = 1;
    }
  }
  const seen = [...new Set(reqs.map((r) => r.plan))];
  legendInto($("timeline-legend"), seen.map((id) => [planName(state.plans[id]), planColor(id)]));
}

const source = new EventSource("/events");
source.onopen = () => { reset(); $("status").textContent = "live"; $("status").className = "status live"; schedule(); };
source.onerror = () => { $("status").textContent = "reconnecting"; $("status").className = "status"; };
source.onmessage = (e) => handle(JSON.parse(e.data));
window.addEventListener("resize", schedule);
