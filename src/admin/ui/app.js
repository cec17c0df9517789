// The compliance officer's page: reads /audit/overview, /audit/records and /audit/verify with
// the officer's bearer token (kept in sessionStorage) and draws everything with plain DOM
// and SVG. Every panel follows the filters; the Art. 30 report for them is downloaded with
// the token (fetch + Blob). Data is only ever inserted as text, never as HTML.
"use strict";

const KEY = "bordergate.officer.token";
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}
const fmt = new Intl.NumberFormat("en");
function bytes(n) {
  if (!n) return "0 B";
  const u = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

class HttpError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

// Signed in through the identity provider: the session cookie (HttpOnly, SameSite=Strict)
// goes with every same-origin request, and no token is sent.
let oidcSession = null;
let oidcEnabled = false;

async function api(path) {
  const r = await authed(path);
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (!r.ok) throw new HttpError(r.status, (body && body.detail) || r.statusText);
  return body;
}
// With a pasted token the requests carry it; with an identity-provider session, the cookie.
function authed(path) {
  const token = sessionStorage.getItem(KEY);
  const headers = token ? { Authorization: "Bearer " + token } : {};
  return fetch(path, { headers, cache: "no-store", credentials: "same-origin" });
}

// The Art. 30 report for the filters, saved through a Blob: the endpoint needs the bearer
// token, which a plain link cannot send.
async function download(format) {
  const err = $("filter-error");
  err.textContent = "";
  const r = await authed("/audit/report?" + filterQuery("report", format));
  if (!r.ok) {
    let b = null;
    try { b = await r.json(); } catch (_) { b = null; }
    err.textContent = "Cannot build the report: " + ((b && b.detail) || r.statusText);
    return;
  }
  const blob = await r.blob();
  const m = /filename="([^"]+)"/.exec(r.headers.get("content-disposition") || "");
  const a = el("a", { href: URL.createObjectURL(blob), download: m ? m[1] : "art30-report." + format });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function showLogin(msg) {
  $("dash").hidden = true;
  $("top-status").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = msg || "";
  $("oidc-sign-in").hidden = !oidcEnabled;
  $("token-input").focus();
}

async function signIn() {
  const t = $("token-input").value.trim().replace(/^bearer\s+/i, "");
  if (!t) { $("login-error").textContent = "Paste a token first."; return; }
  sessionStorage.setItem(KEY, t);
  await load();
}

async function signOut() {
  if (oidcSession) {
    oidcSession = null;
    $("oidc-who").hidden = true;
    try { await fetch("/oidc/logout", { method: "POST", credentials: "same-origin" }); } catch (_) { /* the cookie expires anyway */ }
  }
  sessionStorage.removeItem(KEY);
  $("token-input").value = "";
  showLogin("");
}

async function load() {
  if (!sessionStorage.getItem(KEY) && !oidcSession) { showLogin(""); return; }
  try {
    // First paint from the index: overview and records; the chain is verified meanwhile.
    const verifying = api("/audit/verify");
    verifying.catch(() => {});
    const overview = await api("/audit/overview?" + filterQuery("panels"));
    $("login").hidden = true;
    $("oidc-sign-in").hidden = true;
    $("dash").hidden = false;
    $("top-status").hidden = false;
    drawReport(overview);
    readiness();
    fleet();
    await loadRecords();
    document.body.dataset.painted = "1";
    drawVerify(await verifying);
  } catch (e) {
    if (e.status === 401 && oidcSession && !sessionStorage.getItem(KEY)) { oidcSession = null; showLogin("Your session has ended: " + e.message); }
    else if (e.status === 401) { sessionStorage.removeItem(KEY); showLogin("This token is not valid here: " + e.message); }
    else if (e.status === 403) { sessionStorage.removeItem(KEY); showLogin("This token lacks the compliance-officer role."); }
    else showLogin("Cannot load the audit data: " + e.message);
  }
}

async function readiness() {
  const pill = $("ready-pill");
  try {
    const r = await fetch("/readyz", { cache: "no-store" });
    const b = await r.json();
    pill.className = "pill " + (b.ready ? "ok" : "bad");
    pill.textContent = b.ready ? "gateway ready" : "audit " + b.audit;
  } catch (_) {
    pill.className = "pill bad";
    pill.textContent = "gateway unreachable";
  }
}

// The replicas sharing the audit table (PostgreSQL sink only) and a banner on drift.
async function fleet() {
  let f = null;
  try { f = (await api("/fleet")).fleet; } catch (_) { f = null; }
  const card = $("fleet-card"), banner = $("fleet-drift");
  if (!f) { card.hidden = true; banner.hidden = true; return; }
  card.hidden = false;
  $("fleet-checked").textContent = "checked " + f.checked.replace("T", " ").slice(0, 19) + (f.error ? " · last check failed: " + f.error : "");
  const body = $("fleet").querySelector("tbody");
  body.replaceChildren(...f.replicas.map((m) => el("tr", { class: m.live ? "" : "muted" },
    el("td", {}, m.replica + (m.live ? "" : " (stopped)")),
    el("td", {}, m.region || "–"),
    el("td", { class: "mono" }, (m.policy_version || "unknown").slice(0, 19)),
    el("td", {}, m.last_event),
    el("td", {}, m.last_seen.replace("T", " ").slice(0, 19)))));
  banner.hidden = !f.drift;
  banner.textContent = f.drift
    ? "Policy drift: the live replicas serve " + f.versions.length + " different policy versions, so the same request may be answered differently. Roll out one policy pack to every replica."
    : "";
}

// Everything above the table, from /audit/overview for the filters.
async function loadPanels() {
  const err = $("filter-error");
  try {
    drawReport(await api("/audit/overview?" + filterQuery("panels")));
    err.textContent = "";
    return true;
  } catch (e) {
    err.textContent = e.message;
    return false;
  }
}

async function applyFilters() {
  if (await loadPanels()) await loadRecords();
}

function drawReport(r) {
  const t = r.totals;
  $("k-decisions").textContent = fmt.format(t.decisions);
  $("k-range").textContent = r.first ? r.first.slice(0, 10) + " → " + r.last.slice(0, 10) : "no decisions match";
  $("k-cross").textContent = fmt.format(t.allowed_cross_border);
  $("k-bytes").textContent = bytes(t.cross_border_bytes) + " moved · " + fmt.format(t.allowed) + " allowed in all";
  $("k-domestic").textContent = fmt.format(t.allowed_domestic + t.allowed_public);
  $("k-domestic-hint").textContent = fmt.format(t.allowed_domestic) + " within the regime · " + fmt.format(t.allowed_public) + " public";
  $("k-refused").textContent = fmt.format(t.refused);
  $("k-refused-rate").textContent = (t.decisions ? Math.round((100 * t.refused) / t.decisions) + "% of decisions" : "") + (t.rejected ? " · " + fmt.format(t.rejected) + " other errors" : "");
  $("k-auth").textContent = fmt.format(t.auth_failures);
  const dests = r.destinations.filter((d) => d.country !== "none");
  $("k-dests-list").textContent = fmt.format(dests.length) + " destination" + (dests.length === 1 ? "" : "s") + (dests.length ? ": " + dests.slice(0, 6).map((d) => d.country).join(" · ") : "");
  drawTimeline(r.timeline);
  drawDestinations(r.destinations);
  drawRefusals(r.refusals || r.refusals_by_rule || []);
}

function drawTimeline(tl) {
  const host = $("chart-time");
  host.replaceChildren();
  const b = tl.buckets;
  if (!b.length) { host.append(noData()); return; }
  const max = Math.max(1, ...b.map((x) => x.allow + x.deny));
  const step = niceStep(max / 4);
  const ticks = Math.max(1, Math.ceil(max / step));
  const nice = step * ticks;
  // The axis is as wide as its longest label (11px digits: about 6.6px each).
  const W = 720, H = 240, R = 10, T = 12, B = 34, L = 14 + Math.ceil(6.6 * fmt.format(nice).length);
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Transfers over time" });
  for (let i = 0; i <= ticks; i++) {
    const y = T + ((H - T - B) * i) / ticks;
    s.append(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid-line" }));
    s.append(svg("text", { x: L - 8, y: y + 4, "text-anchor": "end" }, fmt.format(nice - step * i)));
  }
  const slot = (W - L - R) / b.length;
  const bw = Math.max(3, Math.min(46, slot * 0.64));
  const scale = (v) => ((H - T - B) * v) / nice;
  const every = Math.ceil(b.length / 10);
  b.forEach((x, i) => {
    const cx = L + slot * i + slot / 2;
    const ha = scale(x.allow), hd = scale(x.deny);
    const base = H - B;
    if (x.allow) s.append(withTitle(svg("rect", { x: cx - bw / 2, y: base - ha, width: bw, height: ha, rx: 3, class: "bar-allow" }), `${label(x.t, tl.unit)}: ${fmt.format(x.allow)} allowed`));
    if (x.deny) s.append(withTitle(svg("rect", { x: cx - bw / 2, y: base - ha - hd, width: bw, height: hd, rx: 3, class: "bar-deny" }), `${label(x.t, tl.unit)}: ${fmt.format(x.deny)} refused` + (x.auth ? `, ${fmt.format(x.auth)} authentication failures` : "")));
    if (i % every === 0) s.append(svg("text", { x: cx, y: H - B + 18, "text-anchor": "middle" }, label(x.t, tl.unit)));
  });
  host.append(s);
}

function label(t, unit) {
  return unit === "hour" ? t.slice(5, 10) + " " + t.slice(11, 13) + "h" : t.slice(5, 10);
}
// The smallest of 1, 2, 5 × 10^k (at least 1) not below `v`: a round tick step.
function niceStep(v) {
  if (v <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const f of [1, 2, 5, 10]) if (f * p >= v) return f * p;
  return 10 * p;
}
function withTitle(node, text) { node.append(svg("title", {}, text)); return node; }
function noData() { return el("p", { class: "muted empty" }, "Nothing recorded in this period."); }

function drawDestinations(dests) {
  const host = $("chart-dest");
  host.replaceChildren();
  const rows = dests.slice(0, 8);
  if (!rows.length) { host.append(noData()); return; }
  // The counts column is as wide as its longest text (12px digits: about 7.2px each).
  const counts = rows.map((d) => `${fmt.format(d.allow)} ✓  ${fmt.format(d.deny)} ✕`);
  const W = 520, rowH = 30, L = 40, T = 6, R = 20 + Math.ceil(7.2 * Math.max(...counts.map((c) => c.length)));
  const H = T + rows.length * rowH + 6;
  const max = Math.max(1, ...rows.map((d) => d.allow + d.deny));
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Decisions by destination country" });
  rows.forEach((d, i) => {
    const y = T + i * rowH;
    const full = W - L - R;
    const wa = (full * d.allow) / max, wd = (full * d.deny) / max;
    s.append(svg("text", { x: 2, y: y + 18, class: "label-strong" }, d.country === "none" ? "—" : d.country));
    s.append(svg("rect", { x: L, y: y + 6, width: full, height: 16, rx: 5, class: "track" }));
    if (d.allow) s.append(withTitle(svg("rect", { x: L, y: y + 6, width: Math.max(wa, 2), height: 16, rx: 5, class: "bar-allow" }), `${d.country}: ${fmt.format(d.allow)} allowed, ${bytes(d.bytes_out)} out`));
    if (d.deny) s.append(withTitle(svg("rect", { x: L + wa, y: y + 6, width: Math.max(wd, 2), height: 16, rx: 5, class: "bar-deny" }), `${d.country}: ${fmt.format(d.deny)} refused`));
    s.append(svg("text", { x: W - R + 10, y: y + 18, class: "count" }, counts[i]));
  });
  host.append(s);
}

// An instrument in words: title, date, official reference, SCC module, catalogue id.
function instrumentText(i) {
  if (!i) return null;
  let t = i.title;
  if (i.date) t += ` of ${i.date}`;
  t += ` · ${i.reference}`;
  if (i.module) t += ` · module ${i.module}`;
  return `${t} [${i.id}]`;
}

function drawRefusals(list) {
  const ul = $("refusals");
  ul.replaceChildren();
  if (!list.length) { ul.append(el("li", { class: "muted" }, "No refusals match these filters.")); return; }
  for (const r of list.slice(0, 8)) {
    const dests = el("div", { class: "dests" }, ...r.destinations.map((d) => el("span", { class: "pill deny plain" }, "→ " + d)));
    // Every reason given under the rule, with its count.
    const reasons = el("ul", { class: "reasons" }, ...(r.reasons || [{ reason: r.reason, count: r.count }]).map((x) =>
      el("li", {}, el("span", { class: "reason-count" }, fmt.format(x.count)), el("span", { class: "reason" }, x.reason || "(no reason recorded)"))));
    ul.append(el("li", { "data-rule": r.rule },
      el("div", { class: "count" }, fmt.format(r.count)),
      el("div", {},
        el("div", {}, el("span", { class: "rule" }, r.rule), r.article ? el("span", { class: "article" }, r.article) : null),
        r.instrument ? el("div", { class: "instrument" }, instrumentText(r.instrument)) : null,
        reasons,
        dests)));
  }
}

// /audit/verify answers the library's LogReport (every segment, checkpoint signatures
// checked with the gateway's key) plus `ok`, `summary` and `signatures`.
function drawVerify(v) {
  const ok = v.ok;
  const sig = v.signatures || { checked: false, status: "unchecked" };
  const card = $("k-chain-card");
  card.classList.toggle("ok", ok);
  card.classList.toggle("bad", !ok);
  $("k-chain").textContent = ok ? "Intact" : "Broken";
  const first = (v.damage || [])[0];
  const signedHint = sig.status === "valid" ? ` · ${fmt.format(sig.valid)} signed checkpoint${sig.valid === 1 ? "" : "s"}` : "";
  $("k-chain-hint").textContent = ok ? `${fmt.format(v.records)} records verified${signedHint}` : (first ? `${first.kind}${first.line ? " at line " + first.line : ""}` : "");
  const pill = $("chain-pill");
  pill.className = "pill " + (ok ? "ok" : "bad");
  pill.textContent = ok ? (sig.status === "valid" ? "chain verified · signed" : "chain verified") : "chain broken";
  const dl = $("chain");
  dl.replaceChildren();
  const add = (k, val, cls) => { dl.append(el("dt", {}, k), el("dd", cls ? { class: cls } : {}, val)); };
  add("Result", el("span", { class: "pill " + (ok ? "ok" : "bad") }, ok ? "every record chains correctly" : "damage found"));
  add("Records", fmt.format(v.records) + (v.first_seq !== null && v.last_seq !== null ? ` (seq ${fmt.format(v.first_seq)} to ${fmt.format(v.last_seq)})` : ""));
  const files = v.files || [];
  const store = files.length === 1 && files[0][0].startsWith("postgres table ");
  add(store ? "Store" : files.length === 1 ? "Log file" : "Segments", files.map(([name, n]) => `${name.split("/").pop()} (${fmt.format(n)})`).join(" · ") || "none");
  if (v.last_hash) add("Head hash", v.last_hash, "mono");
  for (const r of v.removed || []) add("Removed by retention", r.split("/").pop());
  add("Checkpoint signatures", el("span", { class: "pill " + sigClass(sig.status), id: "sig-status" }, sigLabel(sig)));
  if (sig.checked) {
    add("Signing key", sig.key_id, "mono");
    if (sig.signed_to !== null && sig.signed_to !== undefined) add("Signed up to", `seq ${fmt.format(sig.signed_to)}` + (sig.unsigned_after ? ` (${fmt.format(sig.unsigned_after)} newer record${sig.unsigned_after === 1 ? "" : "s"} await the next checkpoint)` : ""));
  }
  for (const d of v.damage || []) add(d.kind, `${d.file.split("/").pop()}${d.line ? " line " + d.line : ""}: ${d.message}`);
  add("Verified at", v.verified_at.replace("T", " ").slice(0, 19) + " UTC");
}

function sigClass(status) {
  return status === "valid" ? "ok" : status === "invalid" ? "bad" : "plain";
}
function sigLabel(sig) {
  switch (sig.status) {
    case "valid": return `${fmt.format(sig.valid)} valid signature${sig.valid === 1 ? "" : "s"}`;
    case "invalid": return `${fmt.format(sig.invalid)} invalid or missing`;
    case "pending": return "no checkpoint yet (first one pending)";
    default: return "not checked (no checkpoint key configured)";
  }
}

// The filters as query parameters: for the table ("records"), the panels above it
// ("panels": decisions, so no `kind`), or the Art. 30 report in `format`.
function filterQuery(what, format) {
  const p = new URLSearchParams();
  for (const e of $("filters").elements) {
    if (!e.name) continue;
    if (e.type === "checkbox") { if (e.checked) p.set(e.name, "true"); continue; }
    const v = e.value.trim();
    if (v) p.set(e.name, e.name === "origin" || e.name === "destination" ? v.toUpperCase() : v);
  }
  if (what !== "records") p.delete("kind");
  if (what === "records") { p.set("order", "desc"); p.set("limit", "200"); }
  if (what === "report") p.set("format", format);
  return p.toString();
}

async function loadRecords() {
  let res;
  try {
    res = await api("/audit/records?" + filterQuery("records"));
  } catch (e) {
    $("record-count").textContent = "Cannot load records: " + e.message;
    return;
  }
  const tbody = $("records").tBodies[0];
  tbody.replaceChildren();
  for (const r of res.records) tbody.append(row(r));
  $("records-empty").hidden = res.records.length > 0;
  const total = res.total === undefined ? res.count : res.total;
  $("record-count").textContent = `${fmt.format(total)} record${total === 1 ? "" : "s"}${res.truncated ? ` (newest ${fmt.format(res.count)} shown)` : ""}`;
  $("record-count").dataset.total = String(total);
}

function row(r) {
  const time = (r.time || "").replace("T", " ").slice(0, 19);
  let decision, who, dataset, route, rule, status;
  if (r.kind === "decision") {
    decision = el("span", { class: "pill " + r.decision }, r.decision + (r.enforced === false ? " (shadow)" : ""));
    who = r.caller ? el("div", {}, el("div", { class: "who" }, r.caller.sub), el("div", { class: "org" }, r.caller.org + " · " + r.caller.purpose)) : el("span", { class: "muted" }, "unauthenticated");
    dataset = r.dataset || el("span", { class: "muted" }, "—");
    const origins = (r.origins || []).join(", ") || "?";
    route = el("span", { class: "route" }, origins, el("span", { class: "arrow" }, "→"), r.destination || "?");
    rule = r.rule;
    status = r.status || "forwarded";
  } else if (r.kind === "completion") {
    decision = el("span", { class: "pill plain" }, r.outcome);
    who = el("span", { class: "muted" }, "request " + (r.request_id || "").slice(0, 13));
    dataset = "";
    route = bytes(r.bytes_out) + " out";
    rule = "";
    status = r.status;
  } else {
    decision = el("span", { class: "pill plain" }, r.kind);
    who = r.event || "";
    dataset = r.detail || "";
    route = ""; rule = ""; status = "";
  }
  const tr = el("tr", {}, el("td", { class: "time" }, time), el("td", {}, decision), el("td", {}, who), el("td", {}, dataset), el("td", {}, route), el("td", { class: "mono" }, rule), el("td", {}, String(status)));
  tr.addEventListener("click", () => {
    for (const s of tr.parentNode.querySelectorAll("tr.selected")) s.classList.remove("selected");
    tr.classList.add("selected");
    openDrawer(r);
  });
  return tr;
}

function openDrawer(r) {
  $("drawer-title").textContent = r.kind === "decision" ? `Decision · ${r.decision}` : `Record · ${r.kind}`;
  const dl = $("drawer-facts");
  dl.replaceChildren();
  const add = (k, v, cls) => { if (v !== undefined && v !== null && v !== "") dl.append(el("dt", {}, k), el("dd", cls ? { class: cls } : {}, v)); };
  add("Sequence", r.seq);
  add("Time", r.time);
  add("Request id", r.request_id, "mono");
  add("Rule", r.rule, "mono");
  add("Legal basis", r.article);
  add("Instrument", instrumentText(r.instrument));
  add("Reason", r.reason);
  add("Record hash", r.hash, "mono");
  const pre = $("drawer-json");
  pre.replaceChildren(...highlight(JSON.stringify(r, null, 2)));
  $("drawer").hidden = false;
}

function highlight(text) {
  const out = [];
  const re = /("(?:[^"\\]|\\.)*")(\s*:)?|\b(-?\d+(?:\.\d+)?|true|false|null)\b/g;
  let last = 0, m;
  while ((m = re.exec(text))) {
    if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
    if (m[1]) {
      out.push(el("span", { class: m[2] ? "k" : "s" }, m[1]));
      if (m[2]) out.push(document.createTextNode(m[2]));
    } else out.push(el("span", { class: "n" }, m[3]));
    last = re.lastIndex;
  }
  out.push(document.createTextNode(text.slice(last)));
  return out;
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in").addEventListener("click", signIn);
  $("token-input").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); signIn(); } });
  $("sign-out").addEventListener("click", signOut);
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); applyFilters(); });
  $("reset").addEventListener("click", () => { $("filters").reset(); applyFilters(); });
  $("f-kind").addEventListener("change", () => loadRecords());
  for (const f of ["md", "html", "csv"]) $("dl-" + f).addEventListener("click", () => download(f));
  $("drawer-close").addEventListener("click", () => { $("drawer").hidden = true; });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("drawer").hidden = true; });
  $("reverify").addEventListener("click", async () => { try { drawVerify(await api("/audit/verify")); } catch (_) { /* shown on next load */ } });
  oidc().then(load);
});

// Whether this listener signs officers in through the identity provider (404: it does
// not), and whether this browser holds a session.
async function oidc() {
  try {
    const r = await fetch("/oidc/session", { cache: "no-store", credentials: "same-origin" });
    if (!r.ok) return;
    const s = await r.json();
    oidcEnabled = true;
    if (s.signed_in) {
      oidcSession = s;
      $("oidc-who").textContent = s.name || s.sub;
      $("oidc-who").hidden = false;
    }
  } catch (_) { /* the pasted token still works */ }
}
