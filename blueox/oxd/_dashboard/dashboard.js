// oxd's live dashboard: every 2 s it reads /api/summary, /api/rates,
// /api/errors, /api/percentiles and /api/tail and draws them with plain DOM
// and SVG. Names from the network (types, hosts, bodies) are only ever set
// as text or attribute values, never parsed as HTML.
"use strict";

(function () {
  const REFRESH_MS = 2000;
  const TOP_TYPES = 8;
  const TAIL_ROWS = 200; // rows kept in the live tail
  const TAIL_LIMIT = 500; // events asked for at each poll
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed",
    "#0891b2", "#db2777", "#65a30d", "#ea580c", "#4f46e5"];
  const OTHER_COLOR = "#9ca3af";
  const QUANTILES = [["p50", "#2563eb"], ["p95", "#d97706"], ["p99", "#dc2626"]];

  const state = {
    refreshes: 0,
    summary: null, // the latest /api/summary
    colors: new Map(), // type -> colour, stable while the page lives
    tail: { after: 0, filter: "", paused: false, generation: 0 },
  };

  const $ = (id) => document.getElementById(id);

  // ---- Formatting -------------------------------------------------------

  const NONE = "–";
  const short = (v) => String(Number(v.toPrecision(3))); // 3 significant digits, no trailing 0

  function fmtCount(n) { // 999, 1.2k, 35k, 1.2M, 3.4G
    if (n == null) return NONE;
    const a = Math.abs(n);
    if (a < 1e3) return String(Math.round(n));
    for (const [unit, size] of [["k", 1e3], ["M", 1e6]]) {
      if (a < size * 1e3) return (n / size).toFixed(a < size * 10 ? 1 : 0) + unit;
    }
    return (n / 1e9).toFixed(1) + "G";
  }

  function fmtNumber(v) {
    if (v == null) return NONE;
    if (Math.abs(v) >= 1e4) return fmtCount(v);
    return Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : short(v);
  }

  function fmtRate(r) {
    if (r == null) return NONE;
    if (r === 0) return "0";
    return r < 10 ? r.toFixed(r < 0.1 ? 2 : 1) : fmtCount(r);
  }

  function fmtSeconds(s) { // 0, 12 µs, 49.8 ms, 1.5 s, 3m
    if (s == null) return NONE;
    const a = Math.abs(Number(s.toPrecision(3))); // 0.0009999 is 1 ms, not 1000 µs
    if (a === 0) return "0";
    if (a < 1e-3) return short(s * 1e6) + " µs";
    if (a < 1) return short(s * 1e3) + " ms";
    return a < 120 ? short(s) + " s" : fmtDuration(s);
  }

  function fmtDuration(s) {
    if (s < 120) return Math.max(0, Math.round(s)) + "s";
    if (s < 7200) return Math.round(s / 60) + "m";
    if (s < 172800) return Math.floor(s / 3600) + "h " + Math.round((s % 3600) / 60) + "m";
    return Math.round(s / 86400) + "d";
  }

  const fmtAgo = (s) => fmtDuration(s) + " ago";
  const fmtValue = (v, field) => (field === "duration" ? fmtSeconds(v) : fmtNumber(v));

  const fmtClock = (t, seconds) => // 14:05, or 14:05:09
    new Date(t * 1000).toTimeString().slice(0, seconds ? 8 : 5);

  // ---- DOM and SVG helpers (children are text unless they are nodes) ----

  function fill(node, attrs, children) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value == null || value === false) continue;
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) {
      if (child == null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const el = (tag, attrs, ...children) => fill(document.createElement(tag), attrs, children);
  const svg = (tag, attrs, ...children) => fill(document.createElementNS(SVG_NS, tag), attrs, children);
  const num = (text) => el("td", { class: "num" }, text);

  function colorOf(type, other) {
    if (other) return OTHER_COLOR;
    if (!state.colors.has(type)) {
      if (state.colors.size >= 200) state.colors.clear(); // bounded
      state.colors.set(type, PALETTE[state.colors.size % PALETTE.length]);
    }
    return state.colors.get(type);
  }

  const swatch = (type, other) =>
    svg("svg", { class: "swatch", viewBox: "0 0 10 10", "aria-hidden": "true" },
      svg("rect", { width: 10, height: 10, rx: 2, fill: colorOf(type, other) }));

  // Make `rows` the body of `table`, or one row saying `empty` when there are none.
  function fillBody(table, rows, empty) {
    const columns = table.tHead.rows[0].cells.length;
    if (!rows.length) rows = [el("tr", { class: "empty" }, el("td", { colspan: columns, text: empty }))];
    table.tBodies[0].replaceChildren(...rows);
  }

  const typeLabel = (item) => (item.other ? "other" : item.type);
  const estimated = (n, isEstimate) => (isEstimate ? "≈" : "") + fmtCount(n);

  // ---- Fetching --------------------------------------------------------

  // An error of the API: `status` is the HTTP status, 0 when oxd was not reached.
  const apiError = (message, status) => Object.assign(new Error(message), { api: true, status });

  async function getJSON(path) {
    let response;
    try {
      response = await fetch(path, { cache: "no-store", headers: { accept: "application/json" } });
    } catch (e) {
      throw apiError("oxd not reachable", 0);
    }
    const body = await response.json().catch(() => null);
    if (response.ok && body !== null) return body;
    const reason = body && body.error ? ": " + body.error : response.ok ? ": not JSON" : "";
    throw apiError(`oxd answered ${response.status}${reason}`, response.status);
  }

  // ---- Charts ----------------------------------------------------------

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const step = Math.pow(10, Math.floor(Math.log10(v)));
    const f = v / step;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * step;
  }

  // The y scale of a chart in `box` ({x, y, w, h} inside the viewBox) for
  // `values`: from 0 (or below, for negative values) to a round top.
  function scaleY(box, values) {
    const top = niceMax(Math.max(0, ...values));
    const bottom = Math.min(...values) < 0 ? -niceMax(-Math.min(...values)) : 0;
    const y = (v) => box.y + (box.h * (top - v)) / (top - bottom);
    return Object.assign(y, { top, bottom });
  }

  // Axes of a chart in `box`: horizontal grid lines labelled along the
  // scale `y`, time labels below, and the axis titles.
  function drawAxes(chart, box, y, fmtY, xTicks, titles) {
    for (let i = 0; i <= 4; i++) {
      const v = y.bottom + ((y.top - y.bottom) * i) / 4;
      chart.append(svg("line", { class: "grid-line", x1: box.x, x2: box.x + box.w, y1: y(v), y2: y(v) }));
      chart.append(svg("text", { class: "tick", x: box.x - 6, y: y(v) + 4, "text-anchor": "end",
        text: fmtY(v) }));
    }
    for (const [x, label] of xTicks) {
      chart.append(svg("text", { class: "tick", x, y: box.y + box.h + 16, "text-anchor": "middle",
        text: label }));
    }
    const cy = box.y + box.h / 2;
    chart.append(svg("text", { class: "axis-title", x: 10, y: cy, "text-anchor": "middle",
      transform: `rotate(-90 10 ${cy})`, text: titles[0] }));
    chart.append(svg("text", { class: "axis-title", x: box.x + box.w, y: box.y + box.h + 32,
      "text-anchor": "end", text: titles[1] }));
  }

  const pathOf = (points) =>
    points.map(([x, y], i) => (i ? "L" : "M") + x.toFixed(1) + "," + y.toFixed(1)).join("");

  function renderRates(data) {
    const chart = $("rates-chart");
    const legend = $("rates-legend");
    chart.replaceChildren();
    legend.replaceChildren();
    const box = { x: 56, y: 10, w: 890, h: 206 };
    const interval = data.interval || 1;
    const series = data.series || [];
    const n = Math.max(2, ...series.map((s) => s.counts.length));
    let peak = 0;
    for (const s of series) for (const c of s.counts) peak = Math.max(peak, c / interval);
    const x = (i) => box.x + (box.w * i) / (n - 1);
    const y = scaleY(box, [peak]);
    const ticks = []; // every 3 minutes, and the latest point
    const every = Math.round(180 / interval);
    for (let i = 0; i < n - every / 3; i += every) ticks.push([x(i), fmtClock(data.start + i * interval)]);
    ticks.push([x(n - 1), fmtClock(data.start + (n - 1) * interval)]);
    drawAxes(chart, box, y, fmtRate, ticks, ["events/s", "time"]);
    for (const s of series) {
      if (s.other && !s.counts.some((c) => c)) continue; // nothing beyond the top types
      const color = colorOf(s.type, s.other);
      const points = s.counts.map((c, i) => [x(i), y(c / interval)]);
      const total = s.counts.reduce((a, b) => a + b, 0);
      const line = svg("path", { class: "rate-line", d: pathOf(points), stroke: color,
        "data-type": typeLabel(s), "data-total": total, "data-other": s.other ? "true" : null });
      line.append(svg("title", { text: typeLabel(s) }));
      chart.append(line);
      legend.append(el("li", { "data-type": typeLabel(s) }, swatch(s.type, s.other),
        el("span", { class: s.other ? "other" : null, text: typeLabel(s) })));
    }
    if (!chart.querySelector(".rate-line")) {
      chart.append(svg("text", { class: "empty", x: box.x + box.w / 2, y: box.y + box.h / 2,
        "text-anchor": "middle", text: "no events in the last 15 minutes" }));
    }
  }

  function renderPercentileChart(data) {
    const chart = $("pct-chart");
    chart.replaceChildren();
    const points = (data && data.series) || [];
    if (!points.length) return;
    const box = { x: 66, y: 10, w: 380, h: 106 };
    const t0 = points[0].t;
    const span = Math.max(60, points[points.length - 1].t - t0);
    const values = points.flatMap((p) => QUANTILES.map(([q]) => p[q])).filter((v) => v != null);
    const x = (t) => box.x + (points.length > 1 ? (box.w * (t - t0)) / span : box.w / 2);
    const y = scaleY(box, values);
    const ticks = [points[0], points[points.length - 1]].map((p) => [x(p.t), fmtClock(p.t)]);
    drawAxes(chart, box, y, (v) => fmtValue(v, data.field), ticks, [data.field, "minute"]);
    for (const [q, color] of QUANTILES) {
      const xy = points.filter((p) => p[q] != null).map((p) => [x(p.t), y(p[q])]);
      chart.append(svg("path", { class: "pct-line", "data-q": q, d: pathOf(xy), stroke: color }));
      for (const [cx, cy] of xy) {
        chart.append(svg("circle", { class: "pct-dot", cx, cy, r: 2.5, fill: color }));
      }
    }
  }

  // ---- Sections --------------------------------------------------------

  function renderHeader(summary) {
    const s = summary.sampling || {};
    $("sampling").textContent = [`up ${fmtDuration(summary.now - summary.started)}`,
      `${fmtCount(s.decoded)} of ${fmtCount(s.seen)} events decoded`,
      s.budget ? `budget ${fmtCount(s.budget)}/s` : null].filter(Boolean).join(" · ");
  }

  function renderTypes(summary) {
    const rows = summary.types.map((t) => {
      const d = t.duration || {};
      return el("tr", { "data-type": typeLabel(t), "data-other": t.other ? "true" : null },
        el("td", { class: "name", title: typeLabel(t) }, swatch(t.type, t.other), typeLabel(t)),
        num(fmtRate(t.rate)), num(fmtCount(t.window_count)),
        num(fmtSeconds(d.p50)), num(fmtSeconds(d.p95)), num(fmtSeconds(d.p99)),
        num(estimated(t.exceptions, t.estimated)), num(estimated(t.server_errors, t.estimated)));
    });
    fillBody($("types-table"), rows, "no events yet");
  }

  function renderHosts(summary) {
    const rows = summary.hosts.map((h) =>
      el("tr", { "data-host": h.other ? "other" : h.host, "data-other": h.other ? "true" : null },
        el("td", { class: "name" + (h.other ? " other" : ""), title: h.host, text: h.other ? "other" : h.host }),
        num(h.last_event == null ? NONE : fmtAgo(summary.now - h.last_event)),
        num(fmtSeconds(h.lag)), num(fmtRate(h.rate)), num(fmtCount(h.count))));
    fillBody($("hosts"), rows, "no hosts yet");
  }

  function renderErrors(errors, now) {
    const rows = errors.types.map((t) =>
      el("tr", { "data-type": typeLabel(t), "data-estimated": t.estimated ? "true" : null },
        el("td", { class: "name", title: typeLabel(t), text: typeLabel(t) }),
        num(estimated(t.exceptions, t.estimated)), num(estimated(t.server_errors, t.estimated))));
    fillBody($("errors-table"), rows, "no errors in the last 15 minutes");
    $("recent-errors").replaceChildren(...errors.recent.map((e) =>
      el("li", { "data-seq": e.seq, "data-kind": e.kind, "data-type": e.type },
        el("span", { class: "when", title: fmtClock(e.end, true), text: fmtAgo(now - e.end) }),
        el("span", { class: "kind " + (e.kind === "exception" ? "exception" : "server-error"),
          text: e.kind === "exception" ? "exception" : "5xx" }),
        el("span", { class: "type", text: e.type }),
        el("span", { class: "host", text: e.host }),
        el("span", { class: "summary", text: e.summary }))));
  }

  // Fill `select` with `values` unless it holds them already; keep the choice.
  function setOptions(select, values) {
    const current = Array.from(select.options, (o) => o.value);
    if (current.length === values.length && current.every((v, i) => v === values[i])) return;
    const chosen = select.value;
    select.replaceChildren(...values.map((v) => el("option", { value: v, text: v })));
    if (values.includes(chosen)) select.value = chosen;
  }

  function updatePickers(summary) {
    const types = summary.types.filter((t) => !t.other);
    const typeSelect = $("pct-type");
    setOptions(typeSelect, types.map((t) => t.type));
    const chosen = types.find((t) => t.type === typeSelect.value);
    const fields = chosen ? ["duration", ...(chosen.fields || []).filter((f) => f !== "duration")] : [];
    setOptions($("pct-field"), fields);
  }

  async function refreshPercentiles() {
    const type = $("pct-type").value;
    const field = $("pct-field").value;
    let data = null;
    if (type && field) {
      try {
        data = await getJSON("api/percentiles?" + new URLSearchParams({ type, field }));
      } catch (e) {
        if (e.status !== 404) throw e;
      }
    }
    if ($("pct-type").value !== type || $("pct-field").value !== field) return; // changed meanwhile
    Object.assign($("percentiles").dataset, { type, field }); // what the figures are of
    for (const [q] of QUANTILES) {
      const node = $("pct-" + q);
      node.textContent = data ? fmtValue(data[q], field) : NONE;
      if (data && data[q] != null) node.dataset.value = data[q];
      else delete node.dataset.value;
    }
    $("pct-extra").textContent = data
      ? `${fmtCount(data.count)} values · min ${fmtValue(data.min, field)} · max ${fmtValue(data.max, field)}`
      : type ? "no values in the last 15 minutes" : "no types yet";
    renderPercentileChart(data);
  }

  // ---- Live tail -------------------------------------------------------

  function tailRow(event) {
    const body = JSON.stringify(event.body);
    const row = el("li", { class: "tail-row", "data-type": event.type, "data-seq": event.seq },
      el("span", { class: "when", text: fmtClock(event.end, true) }),
      el("span", { class: "type", text: event.type }),
      el("span", { class: "host", text: event.host }),
      el("code", { class: "body", text: body }));
    row.addEventListener("click", () => row.classList.toggle("open"));
    return row;
  }

  async function refreshTail() {
    const tail = state.tail;
    const generation = tail.generation;
    const query = new URLSearchParams({ after: tail.after, limit: TAIL_LIMIT });
    if (tail.filter) query.set("type", tail.filter);
    const data = await getJSON("api/tail?" + query);
    if (generation !== tail.generation || tail.paused) return; // filter changed or paused meanwhile
    const list = $("tail");
    const events = data.events.filter((e) => e.seq > tail.after).slice(-TAIL_ROWS);
    list.prepend(...events.reverse().map(tailRow)); // newest first
    while (list.children.length > TAIL_ROWS) list.lastElementChild.remove();
    if (data.seq < tail.after) tail.after = 0; // oxd restarted, and its numbering
    else if (events.length) tail.after = events[0].seq; // the newest, after reverse()
    if (data.events.length >= TAIL_LIMIT) tail.after = Math.max(tail.after, data.seq - TAIL_ROWS); // skip a backlog
    $("tail-state").textContent = tail.paused ? "paused" : `${list.children.length} shown`;
  }

  function restartTail() {
    const tail = state.tail;
    const filter = $("tail-filter").value.split(",").map((p) => p.trim()).filter(Boolean).join(",");
    if (filter === tail.filter) return;
    tail.filter = filter;
    tail.generation += 1;
    tail.after = 0;
    $("tail").replaceChildren();
    if (!tail.paused) refreshTail().catch(showFailure);
  }

  function togglePause() {
    const tail = state.tail;
    tail.paused = !tail.paused;
    const button = $("tail-pause");
    button.textContent = tail.paused ? "resume" : "pause";
    button.setAttribute("aria-pressed", String(tail.paused));
    $("tail-state").textContent = tail.paused ? "paused" : "";
    if (!tail.paused) refreshTail().catch(showFailure);
  }

  // ---- Refresh loop ----------------------------------------------------

  function showStatus(mode, text) { // mode: "live" or "down"
    $("status").textContent = text;
    $("status").dataset.state = mode;
    document.body.classList.toggle("offline", mode !== "live");
  }

  function showFailure(error) { // the page stays as it was, marked out of date
    if (!error.api) console.error(error);
    const what = error.api ? error.message : "cannot show oxd's answer: " + error.message;
    showStatus("down", `${what}; retrying every ${REFRESH_MS / 1000} s`);
  }

  async function refresh() {
    document.body.dataset.loading = "true";
    try {
      const [summary, rates, errors] = await Promise.all([
        getJSON("api/summary"), getJSON("api/rates?top=" + TOP_TYPES), getJSON("api/errors")]);
      state.summary = summary;
      renderHeader(summary);
      renderTypes(summary);
      renderRates(rates);
      renderErrors(errors, summary.now);
      renderHosts(summary);
      updatePickers(summary);
      await refreshPercentiles();
      if (!state.tail.paused) await refreshTail();
      showStatus("live", "live · " + fmtClock(summary.now, true));
    } catch (error) {
      showFailure(error);
    } finally {
      state.refreshes += 1;
      document.body.dataset.refreshes = state.refreshes;
      delete document.body.dataset.loading;
      setTimeout(refresh, REFRESH_MS);
    }
  }

  function start() {
    const filter = $("tail-filter");
    let typing = null; // the tail restarts 300 ms after the last key, or at once on Enter
    const typed = (delay) => {
      clearTimeout(typing);
      if (delay) typing = setTimeout(restartTail, delay);
      else restartTail();
    };
    filter.addEventListener("input", () => typed(300));
    filter.addEventListener("change", () => typed(0));
    filter.addEventListener("keydown", (e) => e.key === "Enter" && typed(0));
    $("tail-pause").addEventListener("click", togglePause);
    const percentiles = () => refreshPercentiles().catch(showFailure);
    $("pct-type").addEventListener("change", () => {
      updatePickers(state.summary);
      percentiles();
    });
    $("pct-field").addEventListener("change", percentiles);
    refresh();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
