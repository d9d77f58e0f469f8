/**
 * The dashboard: one self-contained page (inline style and script, no external assets)
 * that polls /__herdless/stats every second and draws live SVG charts, plus a purge form.
 */
export function dashboardHtml(): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>herdless</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #0f1419; color: #e6e6e6; }
  header { padding: 12px 20px; background: #161b22; display: flex; gap: 24px; align-items: baseline; flex-wrap: wrap; }
  h1 { font-size: 18px; margin: 0; }
  .tile b { font-size: 20px; display: block; }
  .tile span { color: #8b949e; font-size: 12px; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; padding: 16px 20px; }
  section { background: #161b22; border-radius: 6px; padding: 12px 16px; }
  h2 { font-size: 14px; margin: 0 0 8px; color: #c9d1d9; }
  .chart { position: relative; }
  svg { display: block; width: 100%; height: 180px; background: #0d1117; border-radius: 4px; }
  .ymax { position: absolute; top: 4px; left: 6px; font-size: 11px; color: #8b949e; }
  .xaxis { display: flex; justify-content: space-between; font-size: 11px; color: #8b949e; margin: 2px 0 6px; }
  .legend span { margin-right: 12px; font-size: 12px; white-space: nowrap; }
  .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px; }
  #breaker[data-state="closed"] { color: #3fb950; } #breaker[data-state="open"] { color: #f85149; } #breaker[data-state="half-open"] { color: #d29922; }
  table { width: 100%; border-collapse: collapse; font-size: 12px; } td { padding: 2px 4px; border-bottom: 1px solid #21262d; word-break: break-all; }
  textarea, select, button { font: inherit; background: #0d1117; color: inherit; border: 1px solid #30363d; border-radius: 4px; padding: 6px; }
  textarea { width: 100%; box-sizing: border-box; height: 70px; }
  button { cursor: pointer; background: #238636; border-color: #238636; }
  #purge-result { white-space: pre-wrap; font-size: 12px; color: #8b949e; }
</style></head>
<body>
<header>
  <h1>herdless</h1>
  <div class="tile"><b id="hit-ratio">–</b><span>hit ratio</span></div>
  <div class="tile"><b id="requests">–</b><span>requests</span></div>
  <div class="tile"><b id="origin-total">–</b><span>origin requests</span></div>
  <div class="tile"><b id="origin-rate">–</b><span>origin req/s</span></div>
  <div class="tile"><b id="breaker" data-state="">–</b><span>breaker</span></div>
  <div class="tile"><b id="backoff">–</b><span>keys backing off: started / answers</span></div>
  <div class="tile"><b id="queue">–</b><span>queued / in flight</span></div>
  <div class="tile"><b id="mode">–</b><span>mode</span></div>
  <div class="tile"><b id="scope">–</b><span id="scope-note">counted by</span></div>
</header>
<main>
  <section><h2>Requests per second by cache status</h2>${chart("chart-requests")}<div class="legend" id="legend"></div></section>
  <section><h2>Origin requests per second</h2>${chart("chart-origin")}</section>
  <section><h2>Purge</h2>
    <form id="purge-form">
      <select id="purge-kind"><option value="urls">URLs</option><option value="tags">Tags</option><option value="all">Everything</option></select>
      <label><input type="checkbox" id="purge-soft"> soft (serve stale while revalidating)</label>
      <textarea id="purge-targets" placeholder="one URL or tag per line"></textarea>
      <button type="submit" id="purge-submit">Purge</button>
    </form>
    <div id="purge-result"></div>
  </section>
  <section><h2>Top keys</h2><table id="top-keys"></table></section>
</main>
<script>
"use strict";
const KINDS = [["hit", "#3fb950"], ["stale", "#58a6ff"], ["stale-if-error", "#a371f7"], ["miss", "#d29922"], ["collapsed", "#db6d28"], ["pass", "#8b949e"], ["bypass", "#6e7681"], ["negative", "#f0883e"], ["refused", "#f85149"], ["error", "#ff7b72"]];
document.getElementById("legend").innerHTML = KINDS.map(([k, c]) => '<span><i style="background:' + c + '"></i>' + k + "</span>").join("");
const $ = (id) => document.getElementById(id);
function seconds(stats) {
  const end = Math.floor(stats.now / 1000) * 1000, out = [];
  const byAt = new Map(stats.series.map((s) => [s.at, s]));
  for (let at = end - 119000; at <= end; at += 1000) out.push(byAt.get(at) || { at, served: {}, origin: 0 });
  return out;
}
function path(values, max) {
  return values.map((v, i) => (i ? "L" : "M") + (i * 600 / (values.length - 1)).toFixed(1) + " " + (175 - v / max * 165).toFixed(1)).join(" ");
}
function draw(svg, lines) {
  const max = Math.max(1, ...lines.flatMap((l) => l.values));
  // Grid at the top, middle and zero; series with no traffic in the window are not drawn,
  // so an idle line cannot hide the others along the baseline.
  const grid = [10, 92.5, 175].map((y) => '<path d="M0 ' + y + ' H600" stroke="#21262d" stroke-width="1" vector-effect="non-scaling-stroke"/>').join("");
  svg.innerHTML = grid + lines.filter((l) => l.values.some((v) => v > 0))
    .map((l) => '<path data-series="' + l.name + '" d="' + path(l.values, max) + '" fill="none" stroke="' + l.color + '" stroke-width="1.5" vector-effect="non-scaling-stroke"/>').join("");
  $(svg.id + "-max").textContent = max + "/s";
  svg.dataset.max = String(max);
  svg.dataset.total = String(lines.reduce((sum, l) => sum + l.values.reduce((a, b) => a + b, 0), 0));
}
function esc(s) { return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]); }
async function refresh() {
  const res = await fetch("/__herdless/stats", { credentials: "same-origin", headers: { "x-herdless-request": "dashboard" } });
  if (!res.ok) return;
  const s = await res.json();
  $("hit-ratio").textContent = (s.hitRatio * 100).toFixed(1) + "%";
  $("requests").textContent = s.requests;
  $("origin-total").textContent = s.originRequests;
  $("origin-rate").textContent = s.originPerSecond;
  $("breaker").textContent = s.breaker; $("breaker").dataset.state = s.breaker;
  const p = s.protection || {};
  $("backoff").textContent = (p["backoff-started"] || 0) + " / " + (p["backoff-answered"] || 0);
  $("queue").textContent = s.queueDepth + " / " + s.originInFlight;
  $("mode").textContent = s.runtime + " · " + s.mode;
  // Whose counters these are: a process, one isolate (and why), or the deployment and how fresh.
  const sc = s.scope || { of: "process" };
  $("scope").dataset.of = sc.of;
  if (sc.of === "deployment") {
    $("scope").textContent = "deployment · " + sc.isolates + (sc.isolates === 1 ? " isolate" : " isolates");
    $("scope-note").textContent = "oldest report " + Math.max(0, Math.round((s.now - sc.oldestReportAt) / 1000)) + " s ago (each ≤ " + sc.reportIntervalMs / 1000 + " s)";
  } else {
    $("scope").textContent = sc.of === "isolate" ? "this isolate only" : "this process";
    $("scope-note").textContent = sc.of === "isolate" ? sc.reason : "counted by";
  }
  const secs = seconds(s);
  draw($("chart-requests"), KINDS.map(([k, c]) => ({ name: k, color: c, values: secs.map((x) => x.served[k] || 0) })));
  draw($("chart-origin"), [{ name: "origin", color: "#f85149", values: secs.map((x) => x.origin) }]);
  $("top-keys").innerHTML = s.topKeys.map((k) => "<tr><td>" + esc(k.key) + "</td><td>" + k.requests + "</td></tr>").join("");
}
$("purge-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const kind = $("purge-kind").value, soft = $("purge-soft").checked;
  const targets = $("purge-targets").value.split("\\n").map((t) => t.trim()).filter(Boolean);
  const body = kind === "all" ? { all: true, soft } : { [kind]: targets, soft };
  const res = await fetch("/__herdless/purge", { method: "POST", credentials: "same-origin", headers: { "content-type": "application/json", "x-herdless-request": "dashboard" }, body: JSON.stringify(body) });
  const answer = await res.json().catch(() => ({}));
  $("purge-result").textContent = res.ok ? "purged: " + JSON.stringify(answer.purged) : "error: " + (answer.error || res.status);
  $("purge-result").dataset.status = String(res.status);
});
refresh(); setInterval(refresh, 1000);
</script>
</body></html>`;
}

/** An SVG chart of the last two minutes, with its scale and time axis in HTML (so they do not stretch). */
function chart(id: string): string {
  return `<div class="chart"><svg id="${id}" viewBox="0 0 600 180" preserveAspectRatio="none" role="img"></svg><span class="ymax" id="${id}-max">1/s</span></div>
<div class="xaxis"><span>−2 min</span><span>−1 min</span><span>now</span></div>`;
}

/** The token prompt shown when the dashboard is opened without a valid token; `waitSeconds` after too many wrong ones. */
export function loginHtml(failed: boolean, waitSeconds?: number): string {
  const error =
    waitSeconds !== undefined
      ? `<p id="login-error">Too many wrong tokens: try again in ${waitSeconds} s.</p>`
      : failed
        ? '<p id="login-error">That token is not right.</p>'
        : "";
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>herdless · sign in</title>
<style>body{font:14px system-ui,sans-serif;background:#0f1419;color:#e6e6e6;display:grid;place-items:center;height:100vh;margin:0}
form{background:#161b22;padding:24px;border-radius:6px}input,button{font:inherit;padding:6px;margin-top:8px}#login-error{color:#f85149}</style></head>
<body><form method="post" action="/__herdless/login"><div>herdless admin token</div>
<input type="password" name="token" id="token" autofocus><button type="submit" id="sign-in">Open dashboard</button>
${error}</form></body></html>`;
}
