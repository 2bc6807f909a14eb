/**
 * The status page: one HTML document with its style and script inline (no
 * build step, no external assets), served at `/` and `/ui` by a metadata
 * server or a Store master. The script reads `status.json` every second and
 * redraws: the throughput chart (an inline SVG), the segments with their
 * buffers, files and peers, the recent errors and, on a master, the store.
 * Every value from the cluster is set as text (textContent), never parsed as
 * HTML: segment names and error messages come from whoever writes metadata.
 */
export const STATUS_PAGE_TYPE = 'text/html; charset=utf-8';

export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>transfer-engine status</title>
<style>
  :root { font: 14px/1.4 system-ui, sans-serif; color: #1d2330; background: #f6f7f9; }
  body { margin: 0 auto; max-width: 1200px; padding: 16px 24px; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  h2 { font-size: 16px; margin: 24px 0 8px; }
  .sub { color: #5b6477; }
  .bad { color: #b42318; }
  .ok { color: #1a7f37; }
  .cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 12px 0; }
  .card { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
  .card b { display: block; font-size: 20px; }
  table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #dde1e8; }
  th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #edf0f4; vertical-align: top; }
  th { background: #eef1f5; font-weight: 600; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  ul { margin: 0; padding-left: 16px; }
  #chart { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; width: 100%; height: 220px; }
  .legend span { margin-right: 16px; }
  .swatch { display: inline-block; width: 12px; height: 3px; vertical-align: middle; margin-right: 4px; }
  .bar { background: #e4e8ee; height: 8px; width: 120px; display: inline-block; vertical-align: middle; }
  .bar i { display: block; height: 8px; background: #3b6fd8; }
</style>
</head>
<body>
<h1>transfer-engine status</h1>
<div class="sub"><span id="server">-</span> &middot; updated <span id="updated">never</span> <span id="conn"></span></div>
<div class="cards">
  <div class="card">segments<b id="n-segments">-</b></div>
  <div class="card">engines reporting<b id="n-up">-</b></div>
  <div class="card">read<b id="rate-read">-</b></div>
  <div class="card">write<b id="rate-write">-</b></div>
  <div class="card">failed requests<b id="n-failed">-</b></div>
</div>
<h2>Throughput, last 5 minutes</h2>
<div class="legend"><span><i class="swatch" style="background:#3b6fd8"></i>read</span><span><i class="swatch" style="background:#d9822b"></i>write</span><span class="sub" id="chart-max"></span></div>
<svg id="chart" viewBox="0 0 1000 220" preserveAspectRatio="none" role="img" aria-label="throughput chart">
  <g id="grid" stroke="#edf0f4"></g>
  <polyline id="read-line" fill="none" stroke="#3b6fd8" stroke-width="2" points=""></polyline>
  <polyline id="write-line" fill="none" stroke="#d9822b" stroke-width="2" points=""></polyline>
</svg>
<div class="sub" style="display:flex;justify-content:space-between"><span>5 min ago</span><span>now</span></div>
<section id="store" hidden>
  <h2>Store</h2>
  <div class="cards">
    <div class="card">role<b id="store-role">-</b></div>
    <div class="card">clients<b id="store-clients">-</b></div>
    <div class="card">objects<b id="store-objects">-</b></div>
    <div class="card">used / capacity<b id="store-usage">-</b></div>
  </div>
  <table><thead><tr><th>mounted segment</th><th>used</th><th class="num">capacity</th></tr></thead><tbody id="store-segments"></tbody></table>
</section>
<h2>Segments <span class="sub" id="segments-note"></span></h2>
<table>
  <thead><tr><th>segment</th><th>engine</th><th>buffers</th><th>files</th><th>peers (this engine's requests)</th><th class="num">read/s</th><th class="num">write/s</th><th class="num">moved</th><th class="num">failed</th></tr></thead>
  <tbody id="segments"></tbody>
</table>
<h2>Recent errors</h2>
<table>
  <thead><tr><th>time</th><th>segment</th><th>peer</th><th>request</th><th>code</th><th>message</th></tr></thead>
  <tbody id="errors"></tbody>
</table>
<script>
"use strict";
const WINDOW_MS = 5 * 60 * 1000;
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function bytes(n) {
  if (typeof n !== "number" || !isFinite(n)) return "-";
  const u = ["B", "KB", "MB", "GB", "TB", "PB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2)) + " " + u[i];
}
const rate = (n) => (typeof n === "number" ? bytes(n) + "/s" : "-");
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c);
  return tr;
}
function list(items, more) {
  const ul = el("ul");
  for (const t of items) ul.appendChild(el("li", t));
  if (more > 0) ul.appendChild(el("li", "and " + more + " more", "sub"));
  return ul;
}
function drawChart(history, now) {
  let max = 0;
  for (const s of history) max = Math.max(max, s.readRate, s.writeRate);
  const top = max > 0 ? max * 1.15 : 1;
  const x = (t) => (1000 * (t - (now - WINDOW_MS)) / WINDOW_MS).toFixed(1);
  const y = (v) => (215 - 205 * v / top).toFixed(1);
  const pts = (k) => history.filter((s) => s.t >= now - WINDOW_MS).map((s) => x(s.t) + "," + y(s[k])).join(" ");
  $("read-line").setAttribute("points", pts("readRate"));
  $("write-line").setAttribute("points", pts("writeRate"));
  $("chart-max").textContent = "top of chart: " + rate(top);
  const grid = $("grid");
  if (!grid.hasChildNodes()) {
    for (let i = 1; i < 5; i++) {
      const l = document.createElementNS("http://www.w3.org/2000/svg", "line");
      l.setAttribute("x1", "0"); l.setAttribute("x2", "1000");
      l.setAttribute("y1", String(10 + i * 41)); l.setAttribute("y2", String(10 + i * 41));
      grid.appendChild(l);
    }
  }
}
function render(doc) {
  const now = Date.parse(doc.generatedAt);
  $("server").textContent = doc.server;
  $("updated").textContent = new Date(now).toLocaleTimeString();
  const up = doc.segments.filter((s) => s.reach === "up");
  const last = doc.history[doc.history.length - 1];
  $("n-segments").textContent = String(doc.segmentsTotal);
  $("n-up").textContent = String(up.length);
  $("rate-read").textContent = rate(last ? last.readRate : 0);
  $("rate-write").textContent = rate(last ? last.writeRate : 0);
  $("n-failed").textContent = String(up.reduce((a, s) => a + s.engine.totals.tasksFailed, 0));
  drawChart(doc.history, now);
  $("segments-note").textContent = doc.segmentsTotal > doc.segments.length ? "(first " + doc.segments.length + " of " + doc.segmentsTotal + ")" : "";
  const body = $("segments");
  body.replaceChildren();
  for (const s of doc.segments) {
    const e = s.engine;
    const reach = el("td");
    // A segment without metrics (a Mooncake peer) is not a fault: only what should answer and does not is red.
    const cls = s.reach === "up" ? (e.notServing === null ? "ok" : "bad") : s.reach === "no-metrics" ? "sub" : "bad";
    reach.appendChild(el("div", s.reach === "up" ? (e.notServing === null ? "serving" : e.notServing) : s.reach, cls));
    if (s.detail) reach.appendChild(el("div", s.detail, "sub"));
    if (e) {
      reach.appendChild(el("div", "transports: " + e.transports.join(", "), "sub"));
      reach.appendChild(el("div", "served " + e.totals.requestsServed + " requests from peers", "sub"));
    }
    const name = el("td");
    name.appendChild(el("div", s.name));
    if (s.rpc) name.appendChild(el("div", "rpc " + s.rpc, "sub"));
    const bufs = el("td");
    bufs.appendChild(el("div", s.buffersTotal + " (" + bytes(s.bufferBytes) + ")"));
    bufs.appendChild(list(s.buffers.slice(0, 8).map((b) => b.addr + " " + bytes(b.length) + (b.access ? " " + b.access : "")), s.buffersTotal - Math.min(8, s.buffers.length)));
    const files = el("td");
    files.appendChild(list(s.files.slice(0, 8).map((f) => f.path + " " + bytes(f.size)), s.filesTotal - Math.min(8, s.files.length)));
    const peers = el("td");
    if (e) peers.appendChild(list(e.peers.slice(0, 8).map((p) => p.segment + ": read " + bytes(p.bytesRead) + ", wrote " + bytes(p.bytesWritten) + (p.failed ? ", " + p.failed + " failed" : "")), e.peers.length - Math.min(8, e.peers.length)));
    const tr = row([name, reach, bufs, files, peers,
      el("td", rate(s.readRate), "num"), el("td", rate(s.writeRate), "num"),
      el("td", e ? bytes(e.totals.bytesRead + e.totals.bytesWritten) : "-", "num"),
      el("td", e ? e.totals.tasksFailed : "-", "num")]);
    tr.dataset.segment = s.name;
    tr.dataset.reach = s.reach;
    body.appendChild(tr);
  }
  const errs = $("errors");
  errs.replaceChildren();
  for (const x of doc.errors) {
    errs.appendChild(row([el("td", new Date(x.time).toLocaleTimeString()), el("td", x.segment), el("td", x.peer || "-"), el("td", x.opcode), el("td", x.code), el("td", x.message)]));
  }
  const st = doc.store;
  $("store").hidden = !st;
  if (st) {
    $("store-role").textContent = st.role;
    $("store-clients").textContent = String(st.clients);
    $("store-objects").textContent = String(st.objects);
    $("store-usage").textContent = bytes(st.usedBytes) + " / " + bytes(st.capacityBytes);
    const sb = $("store-segments");
    sb.replaceChildren();
    for (const m of st.segments) {
      const used = el("td");
      const bar = el("span", undefined, "bar");
      const fill = el("i");
      fill.style.width = (m.capacity > 0 ? Math.min(100, 100 * m.used / m.capacity) : 0).toFixed(1) + "%";
      bar.appendChild(fill);
      used.appendChild(bar);
      used.appendChild(document.createTextNode(" " + bytes(m.used)));
      const tr = row([el("td", m.name), used, el("td", bytes(m.capacity), "num")]);
      tr.dataset.segment = m.name;
      sb.appendChild(tr);
    }
  }
}
async function poll() {
  try {
    const r = await fetch("status.json", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    $("conn").textContent = "";
    $("conn").className = "";
  } catch (e) {
    $("conn").textContent = "(cannot reach the server: " + (e && e.message ? e.message : e) + ")";
    $("conn").className = "bad";
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
`;
