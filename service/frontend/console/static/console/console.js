// The lstm-serving console. Everything comes from the service's own public endpoints:
// /v1/models (the models), /v1/models/{name}/examples and /predict (try it), /metrics (the live
// charts: Prometheus text, summed over every process by the server; per model, and per device
// from the batch figures' device label). No library, no CDN.
// window.lstmConsole holds what the page shows (the browser tests read it).
"use strict";
(() => {
  const KEY_STORAGE = "lstm-serving-api-key";
  const POLL_MS = 1000;
  const MODELS_EVERY = 5; // polls between two reads of /v1/models
  const HISTORY = 120; // points kept per chart (two minutes)
  const WINDOW = 3; // snapshots a rate or a quantile is taken over
  const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];

  // figures: per model; devices: per device (cuda:N, cpu), with the models whose batches ran there.
  const state = { polls: 0, models: [], figures: {}, devices: {}, history: [], streams: null, lastResult: null, problems: [] };
  window.lstmConsole = state;
  const $ = (id) => document.getElementById(id);
  let apiKey = sessionStorage.getItem(KEY_STORAGE);
  let snapshots = [];
  let started = false;

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  // Every call: the key (when there is one) in the Authorization header, never in a URL.
  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    if (apiKey) headers.Authorization = "Bearer " + apiKey;
    let response;
    try {
      response = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
    } catch (error) {
      throw new ApiError(0, "the server does not answer (" + error.message + ")");
    }
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
      if (response.status === 401) askForKey(message);
      throw new ApiError(response.status, message);
    }
    return response;
  }

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attributes)) {
      if (k === "class") node.className = v; else if (k === "style") node.style.cssText = v; else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function problem(where, error) {
    const text = where + ": " + (error && error.message ? error.message : String(error));
    state.problems.push(text);
    if (state.problems.length > 20) state.problems.shift();
    $("live-note").textContent = text;
    $("live-note").classList.add("error");
  }

  // ---------------------------------------------------------------- API key
  function askForKey(message) {
    $("auth").hidden = false;
    $("auth-error").textContent = message || "";
    $("api-key").focus();
  }

  $("auth").addEventListener("submit", async (event) => {
    event.preventDefault();
    apiKey = $("api-key").value.trim() || null;
    $("api-key").value = "";
    try {
      await api("/v1/models");
    } catch (error) {
      apiKey = null;
      sessionStorage.removeItem(KEY_STORAGE);
      $("auth-error").textContent = error.message;
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, apiKey);
    $("auth").hidden = true;
    start();
  });

  // ---------------------------------------------------------------- models
  const fmt = (x, digits = 3) => (x === null || x === undefined || Number.isNaN(x) ? "—" : Number(x).toPrecision(digits));
  const shortProvider = (p) => (p ? p.replace("ExecutionProvider", "") : "—");

  // metadata.accuracy (export/accuracy.py): {dataset, sequences, fp32: 0.973, int8: 0.973}
  function accuracyText(metadata) {
    const accuracy = metadata && metadata.accuracy;
    if (!accuracy || typeof accuracy !== "object") return "—";
    const shown = ["fp32", "int8", "fp16"].filter((p) => typeof accuracy[p] === "number");
    if (!shown.length) return "—";
    return shown.map((p) => p + " " + (100 * accuracy[p]).toFixed(2) + "%").join(", ");
  }

  function parityText(metadata) {
    const parity = metadata && metadata.parity;
    if (!parity || typeof parity !== "object") return ["—", ""];
    const errors = parity.max_abs_error || {};
    const parts = Object.entries(errors).map(([k, v]) => k.replace(/_/g, " ") + " " + fmt(v, 2));
    const verdict = parity.passed === true ? "passed" : parity.passed === false ? "FAILED" : "";
    const where = parity.provider ? " on " + shortProvider(parity.provider) : "";
    return [(verdict ? verdict + where + ": " : "") + (parts.join(", ") || "—"), JSON.stringify(parity, null, 1)];
  }

  function renderModels() {
    const body = $("models").tBodies[0];
    body.replaceChildren();
    state.models.forEach((m) => {
      const md = m.metadata || {};
      const ready = m.ready ? "ready" : "not ready";
      const [parity, parityTitle] = parityText(md);
      const layers = Array.isArray(md.layer_sizes) ? " [" + md.layer_sizes.join(", ") + "]" : "";
      const row = el("tr", { "data-model": m.name, "data-version": m.version },
        el("td", {}, el("span", { class: "swatch", style: "background:" + color(m.name) }), m.name),
        el("td", {}, m.version),
        el("td", { class: m.ready ? "ok" : "error", title: m.error || "" }, m.error ? ready + ": " + m.error : ready),
        el("td", {}, shortProvider(m.provider)),
        el("td", {}, md.precision || "—"),
        el("td", { title: (m.sequence_layout || "") + ", " + (m.batching || "") + " batches" }, m.input_size ? "[T, " + m.input_size + "]" : "—"),
        el("td", {}, (md.architecture || "—") + layers),
        el("td", {}, m.labels ? String(m.labels.length) : "—"),
        el("td", {}, accuracyText(md)),
        el("td", { title: parityTitle, class: "small" }, parity),
      );
      body.append(row);
    });
    if (!state.models.length) body.append(el("tr", {}, el("td", { colspan: "10", class: "muted" }, "no models")));
    renderModelChoice();
  }

  async function loadModels() {
    const body = await (await api("/v1/models")).json();
    const before = JSON.stringify(state.models);
    state.models = body.models;
    if (JSON.stringify(state.models) !== before) renderModels();
  }

  // A colour per model, and one per device (each from the start of the palette).
  function palette() {
    const given = new Map();
    return (key) => {
      if (!given.has(key)) given.set(key, COLORS[given.size % COLORS.length]);
      return given.get(key);
    };
  }
  const color = palette();
  const deviceColor = palette();

  // ---------------------------------------------------------------- /metrics
  function parseMetrics(text) {
    const samples = [];
    for (const line of text.split("\n")) {
      if (!line || line[0] === "#") continue;
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      if (m[2]) for (const l of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
      samples.push({ name: m[1], labels, value: Number(m[3]) });
    }
    return samples;
  }

  function snapshot(samples, t) {
    const per = {};
    const of = (model) => (per[model] ||= {
      requests: 0, sequences: 0, rejected: 0, errors: 0, latency: new Map(),
      batchSum: 0, batchCount: 0, real: 0, padded: 0, depth: 0,
    });
    // The engine's batch figures carry the device they ran on: summed the other way.
    const devices = {};
    const onDevice = (device) => (devices[device] ||= {
      batchSum: 0, batchCount: 0, real: 0, padded: 0, depth: 0, compute: 0, failed: 0, wait: new Map(), models: [],
    });
    const addBucket = (buckets, s) => {
      const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
      buckets.set(le, (buckets.get(le) || 0) + s.value);
    };
    let streams = null;
    let streamEvents = 0;
    for (const s of samples) {
      const model = s.labels.model;
      const device = s.labels.device === undefined ? null : onDevice(s.labels.device);
      const both = (key) => { of(model)[key] += s.value; if (device) device[key] += s.value; };
      switch (s.name) {
        case "lstm_requests_total": {
          const f = of(model);
          const status = Number(s.labels.status);
          f.requests += s.value;
          if (status === 429) f.rejected += s.value; else if (status >= 400) f.errors += s.value;
          break;
        }
        case "lstm_sequences_total": of(model).sequences += s.value; break;
        case "lstm_request_latency_seconds_bucket": addBucket(of(model).latency, s); break;
        case "lstm_batch_size_sum": both("batchSum"); break;
        case "lstm_batch_size_count": both("batchCount"); break;
        case "lstm_batch_real_steps_total": both("real"); break;
        case "lstm_batch_padded_steps_total": both("padded"); break;
        case "lstm_queue_depth": both("depth"); break;
        case "lstm_batch_compute_seconds_sum": if (device) device.compute += s.value; break;
        case "lstm_batches_total": if (device && s.labels.outcome === "failed") device.failed += s.value; break;
        case "lstm_queue_wait_seconds_bucket": if (device) addBucket(device.wait, s); break;
        case "lstm_model_info": if (device && s.value > 0 && !device.models.includes(model)) device.models.push(model); break;
        case "lstm_streams_live": streams = (streams || 0) + s.value; break;
        case "lstm_stream_events_total": streamEvents += s.value; break;
        default: break;
      }
    }
    return { t, per, devices, streams, streamEvents };
  }

  // A counter that went down was reset (a process restarted): count from zero.
  const delta = (now, then) => (now >= then ? now - then : now);

  // Prometheus's histogram_quantile over the bucket increments between two snapshots.
  function quantile(q, now, then) {
    const bounds = [...now.keys()].sort((a, b) => a - b);
    const counts = bounds.map((le) => delta(now.get(le), (then && then.get(le)) || 0));
    const total = counts[counts.length - 1];
    if (!total) return null;
    const rank = q * total;
    let lower = 0;
    let below = 0;
    for (let i = 0; i < bounds.length; i++) {
      if (counts[i] >= rank) {
        if (bounds[i] === Infinity) return lower;
        return lower + ((bounds[i] - lower) * (rank - below)) / Math.max(counts[i] - below, 1e-12);
      }
      lower = bounds[i];
      below = counts[i];
    }
    return null;
  }

  function figuresBetween(now, then) {
    const seconds = Math.max((now.t - then.t) / 1000, 1e-3);
    const out = {};
    for (const [model, f] of Object.entries(now.per)) {
      const p = then.per[model] || { requests: 0, sequences: 0, rejected: 0, errors: 0, latency: new Map(), batchSum: 0, batchCount: 0, real: 0, padded: 0 };
      out[model] = Object.assign(batchFigures(f, p, seconds), {
        rps: delta(f.requests, p.requests) / seconds,
        sps: delta(f.sequences, p.sequences) / seconds,
        p50: quantile(0.5, f.latency, p.latency),
        p99: quantile(0.99, f.latency, p.latency),
        rejected: delta(f.rejected, p.rejected) / seconds,
        errors: delta(f.errors, p.errors) / seconds,
      });
    }
    return out;
  }

  // What the batches of one model or one device did between two snapshots.
  function batchFigures(f, p, seconds) {
    const batches = delta(f.batchCount, p.batchCount);
    const padded = delta(f.padded, p.padded);
    return {
      depth: f.depth,
      batch: batches ? delta(f.batchSum, p.batchSum) / batches : null,
      padding: padded ? delta(f.real, p.real) / padded : null,
    };
  }

  function deviceFiguresBetween(now, then) {
    const seconds = Math.max((now.t - then.t) / 1000, 1e-3);
    const out = {};
    for (const [device, f] of Object.entries(now.devices)) {
      const p = then.devices[device] || { batchSum: 0, batchCount: 0, real: 0, padded: 0, compute: 0, failed: 0, wait: new Map() };
      out[device] = Object.assign(batchFigures(f, p, seconds), {
        models: f.models,
        sps: delta(f.batchSum, p.batchSum) / seconds,
        bps: delta(f.batchCount, p.batchCount) / seconds,
        failed: delta(f.failed, p.failed) / seconds,
        busy: delta(f.compute, p.compute) / seconds,
        waitP99: quantile(0.99, f.wait, p.wait),
      });
    }
    return out;
  }

  async function pollMetrics() {
    const text = await (await api("/metrics")).text();
    const snap = snapshot(parseMetrics(text), performance.now());
    snapshots.push(snap);
    if (snapshots.length > WINDOW + 1) snapshots.shift();
    state.streams = snap.streams !== null && (snap.streams > 0 || snap.streamEvents > 0) ? snap.streams : null;
    if (snapshots.length < 2) return;
    state.figures = figuresBetween(snap, snapshots[0]);
    state.devices = deviceFiguresBetween(snap, snapshots[0]);
    state.history.push({ t: Date.now(), figures: state.figures, devices: state.devices });
    if (state.history.length > HISTORY) state.history.shift();
    state.polls += 1;
    $("live-note").textContent = "from /metrics, every second; rates and quantiles over the last " + WINDOW + " s";
    $("live-note").classList.remove("error");
    renderTiles();
    renderCharts();
  }

  // ---------------------------------------------------------------- charts
  const CHARTS = [
    { id: "rps", title: "requests/s", series: [{ value: (f) => f.rps }] },
    { id: "sps", title: "sequences/s", series: [{ value: (f) => f.sps }] },
    { id: "latency", title: "latency p50 (solid) / p99 (dashed), ms", series: [
      { value: (f) => (f.p50 === null ? null : f.p50 * 1000) },
      { value: (f) => (f.p99 === null ? null : f.p99 * 1000), dash: [5, 4] }] },
    { id: "depth", title: "queue depth, sequences", series: [{ value: (f) => f.depth }] },
    { id: "batch", title: "mean batch size, sequences", series: [{ value: (f) => f.batch }] },
    { id: "padding", title: "padding efficiency, real / padded steps", max: 1, series: [{ value: (f) => f.padding }] },
    { id: "rejects", title: "429s/s (solid), errors/s (dashed)", series: [
      { value: (f) => f.rejected }, { value: (f) => f.errors, dash: [5, 4] }] },
  ];

  // The batch figures of each device: with --devices, one engine per GPU; an int8 variant's
  // batches run on the CPU (contract/precision.py SERVED_ON).
  const DEVICE_CHARTS = [
    { id: "device-sps", title: "sequences/s run", series: [{ value: (f) => f.sps }] },
    { id: "device-batches", title: "batches/s (solid), failed batches/s (dashed)", series: [
      { value: (f) => f.bps }, { value: (f) => f.failed, dash: [5, 4] }] },
    { id: "device-busy", title: "busy: batch compute seconds per second", series: [{ value: (f) => f.busy }] },
    { id: "device-wait", title: "queue wait p99, ms", series: [{ value: (f) => (f.waitP99 === null ? null : f.waitP99 * 1000) }] },
    { id: "device-depth", title: "queue depth, sequences", series: [{ value: (f) => f.depth }] },
    { id: "device-batch", title: "mean batch size, sequences", series: [{ value: (f) => f.batch }] },
    { id: "device-padding", title: "padding efficiency, real / padded steps", max: 1, series: [{ value: (f) => f.padding }] },
  ];

  function chartedModels() {
    const known = state.models.map((m) => m.name);
    return known.length ? [...new Set(known)] : Object.keys(state.figures);
  }

  // The two groups of charts: one line per model, and one line per device.
  const GROUPS = [
    { charts: CHARTS, container: "charts", legend: "legend", keys: chartedModels, color, at: (point) => point.figures,
      latest: () => state.figures, name: (m) => m },
    { charts: DEVICE_CHARTS, container: "device-charts", legend: "device-legend", keys: () => Object.keys(state.devices).sort(),
      color: deviceColor, at: (point) => point.devices, latest: () => state.devices,
      name: (d) => d + (state.devices[d] && state.devices[d].models.length ? " (" + state.devices[d].models.join(", ") + ")" : "") },
  ];

  function buildCharts() {
    for (const group of GROUPS) {
      const charts = $(group.container);
      charts.replaceChildren();
      for (const chart of group.charts) {
        charts.append(el("figure", { id: "chart-" + chart.id, class: "chart", "data-points": "0" },
          el("figcaption", {}, el("span", { class: "title" }, chart.title), el("span", { class: "now" })),
          el("canvas", { height: "150" })));
      }
    }
  }

  function niceMax(x) {
    if (!(x > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(x)));
    for (const m of [1, 2, 2.5, 5, 10]) if (x <= m * p) return m * p;
    return 10 * p;
  }

  function axisLabel(v) {
    if (v === 0) return "0";
    if (Math.abs(v) >= 1000) return (v / 1000).toFixed(v >= 10000 ? 0 : 1) + "k";
    if (Math.abs(v) < 0.1) return v.toPrecision(1);
    return String(Math.round(v * 100) / 100);
  }

  function drawChart(chart, group, keys) {
    const figure = $("chart-" + chart.id);
    const canvas = figure.querySelector("canvas");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 300;
    const height = 150;
    if (canvas.width !== Math.round(width * ratio)) { canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio); }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const left = 40, right = 8, top = 8, bottom = 18;
    const w = width - left - right, h = height - top - bottom;
    const points = state.history;
    let max = 0;
    for (const point of points) for (const m of keys) for (const s of chart.series) {
      const f = (group.at(point) || {})[m];
      const v = f ? s.value(f) : null;
      if (v !== null && v > max) max = v;
    }
    max = chart.max || niceMax(max);
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#6b7280";
    g.strokeStyle = "#e5e7eb";
    g.lineWidth = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (let k = 0; k <= 4; k++) {
      const y = top + h - (h * k) / 4;
      g.beginPath(); g.moveTo(left, y + 0.5); g.lineTo(left + w, y + 0.5); g.stroke();
      g.fillText(axisLabel((max * k) / 4), left - 4, y);
    }
    g.textAlign = "left"; g.textBaseline = "alphabetic";
    g.fillText("−" + Math.round(HISTORY * POLL_MS / 60000) + " min", left, height - 4);
    g.textAlign = "right";
    g.fillText("now", left + w, height - 4);
    const x = (i) => left + w - ((points.length - 1 - i) * w) / (HISTORY - 1);
    const y = (v) => top + h - (Math.min(v, max) / max) * h;
    g.lineWidth = 2;
    for (const m of keys) for (const s of chart.series) {
      g.strokeStyle = group.color(m);
      g.setLineDash(s.dash || []);
      g.beginPath();
      let drawing = false;
      points.forEach((point, i) => {
        const f = (group.at(point) || {})[m];
        const v = f ? s.value(f) : null;
        if (v === null || v === undefined || Number.isNaN(v)) { drawing = false; return; }
        if (drawing) g.lineTo(x(i), y(v)); else g.moveTo(x(i), y(v));
        drawing = true;
      });
      g.stroke();
    }
    g.setLineDash([]);
    const latest = {};
    const now = figure.querySelector(".now");
    now.replaceChildren();
    for (const m of keys) {
      const f = group.latest()[m];
      const values = chart.series.map((s) => (f ? s.value(f) : null));
      latest[m] = values;
      now.append(el("span", { style: "color:" + group.color(m) }, m + " " + values.map((v) => fmt(v, 3)).join(" / ")));
    }
    figure.dataset.points = String(points.length);
    figure.dataset.latest = JSON.stringify(latest);
  }

  function renderCharts() {
    for (const group of GROUPS) {
      const keys = group.keys();
      $(group.legend).replaceChildren(...keys.map((k) =>
        el("span", { class: "legend", "data-key": k }, el("span", { class: "swatch", style: "background:" + group.color(k) }), group.name(k))));
      for (const chart of group.charts) drawChart(chart, group, keys);
    }
  }

  function renderTiles() {
    const models = chartedModels();
    const sum = (key) => models.reduce((a, m) => a + ((state.figures[m] && state.figures[m][key]) || 0), 0);
    const p99s = models.map((m) => state.figures[m] && state.figures[m].p99).filter((v) => v !== null && v !== undefined);
    const tiles = [
      ["requests/s", fmt(sum("rps"), 3), "rps"],
      ["sequences/s", fmt(sum("sps"), 3), "sps"],
      ["worst p99", p99s.length ? fmt(Math.max(...p99s) * 1000, 3) + " ms" : "—", "p99"],
      ["queued", String(sum("depth")), "depth"],
      ["429s/s", fmt(sum("rejected"), 2), "rejected"],
      ["errors/s", fmt(sum("errors"), 2), "errors"],
    ];
    if (state.streams !== null) tiles.push(["live streams", String(state.streams), "streams"]);
    $("tiles").replaceChildren(...tiles.map(([label, value, id]) =>
      el("div", { class: "tile", id: "tile-" + id }, el("div", { class: "value" }, value), el("div", { class: "label" }, label))));
  }

  // ---------------------------------------------------------------- try it
  let examples = [];

  function renderModelChoice() {
    const select = $("try-model");
    const chosen = select.value;
    const names = state.models.filter((m) => m.ready).map((m) => m.name);
    const same = [...select.options].map((o) => o.value).join() === names.join();
    if (same) return;
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(chosen)) select.value = chosen;
    loadExamples();
  }

  async function loadExamples() {
    const name = $("try-model").value;
    const select = $("try-example");
    examples = [];
    select.replaceChildren(el("option", { value: "" }, "(your own: paste it below)"));
    if (!name) return;
    try {
      examples = (await (await api("/v1/models/" + encodeURIComponent(name) + "/examples")).json()).examples;
    } catch (error) {
      problem("examples of " + name, error);
    }
    examples.forEach((e, i) => select.append(el("option", { value: String(i) }, e.name + " — true label " + e.label)));
    if (examples.length) { select.value = "0"; showExample(); }
    select.dataset.loaded = name;
  }

  // Six significant digits: float32 holds about seven, and a person reads the steps.
  const stepsText = (sequence) =>
    "[\n" + sequence.map((step) => JSON.stringify(step.map((v) => Number(v.toPrecision(6))))).join(",\n") + "\n]";

  function showExample() {
    const e = examples[Number($("try-example").value)];
    if (!e) return;
    $("try-sequence").value = stepsText(e.sequence);
  }

  async function send() {
    const name = $("try-model").value;
    $("try-error").textContent = "";
    let sequence;
    try {
      sequence = JSON.parse($("try-sequence").value);
      if (sequence && !Array.isArray(sequence) && Array.isArray(sequence.sequence)) sequence = sequence.sequence;
      if (!Array.isArray(sequence) || !sequence.length || !Array.isArray(sequence[0])) throw new Error("expected a list of steps, each a list of numbers");
    } catch (error) {
      $("try-error").textContent = "not a sequence: " + error.message;
      return;
    }
    const chosen = examples[Number($("try-example").value)];
    const example = chosen && $("try-sequence").value === stepsText(chosen.sequence) ? chosen : null;
    const startedAt = performance.now();
    let body;
    try {
      const response = await api("/v1/models/" + encodeURIComponent(name) + "/predict", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ sequences: [sequence] }),
      });
      body = await response.json();
    } catch (error) {
      $("try-error").textContent = (error.status ? error.status + ": " : "") + error.message;
      return;
    }
    const latency = performance.now() - startedAt;
    showResult(name, body, latency, example);
  }

  function showResult(name, body, latency, example) {
    const result = body.results[0];
    const out = $("try-result");
    out.className = "";
    out.replaceChildren();
    const bars = $("try-bars");
    bars.replaceChildren();
    state.lastResult = { model: name, label: result.label ?? null, trueLabel: example ? example.label : null, probabilities: result.probabilities ?? null, latencyMs: latency };
    if (result.label !== undefined && result.label !== null) {
      const verdict = example ? (example.label === result.label ? " ✓ matches the true label" : " ✗ true label " + example.label) : "";
      out.append(el("div", { class: "class" }, "class ", el("strong", { id: "try-class" }, result.label), verdict));
    } else {
      out.append(el("pre", {}, JSON.stringify(result.tensors ?? result, null, 1).slice(0, 2000)));
    }
    out.append(el("div", { class: "muted" }, "round trip " + latency.toFixed(1) + " ms (browser → " + name + " v" + body.version + " → browser)"));
    out.dataset.label = result.label ?? "";
    if (result.probabilities) drawBars(bars, body.labels, result.probabilities);
  }

  function drawBars(svg, labels, probabilities) {
    const ns = "http://www.w3.org/2000/svg";
    const n = probabilities.length;
    const rowH = 20, labelW = 60, valueW = 50, width = svg.clientWidth || 400;
    svg.setAttribute("viewBox", "0 0 " + width + " " + n * rowH);
    svg.setAttribute("height", String(n * rowH));
    const best = probabilities.indexOf(Math.max(...probabilities));
    probabilities.forEach((p, i) => {
      const add = (tag, attributes, text) => {
        const node = document.createElementNS(ns, tag);
        for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, String(v));
        if (text !== undefined) node.textContent = text;
        svg.append(node);
      };
      const barW = Math.max(1, p * (width - labelW - valueW));
      add("text", { x: labelW - 6, y: i * rowH + 14, "text-anchor": "end", class: "bar-label" }, labels ? labels[i] : String(i));
      add("rect", { x: labelW, y: i * rowH + 3, width: barW, height: rowH - 6, class: i === best ? "bar best" : "bar" });
      add("text", { x: labelW + barW + 4, y: i * rowH + 14, class: "bar-value" }, p.toFixed(3));
    });
  }

  $("try-model").addEventListener("change", loadExamples);
  $("try-example").addEventListener("change", showExample);
  $("try-send").addEventListener("click", send);

  // ---------------------------------------------------------------- loop
  async function health() {
    const pill = $("status");
    try {
      await api("/v2/health/ready");
      pill.textContent = "ready";
      pill.dataset.state = "ready";
    } catch (error) {
      pill.textContent = error.status ? "not ready (" + error.status + ")" : "unreachable";
      pill.dataset.state = "down";
    }
  }

  let tick = 0;
  async function loop() {
    if (!document.hidden) {
      try {
        if (tick % MODELS_EVERY === 0) { await loadModels(); await health(); }
        await pollMetrics();
      } catch (error) {
        if (error.status !== 401) problem("live figures", error);
      }
      tick += 1;
    }
    if ($("auth").hidden) setTimeout(loop, POLL_MS);
    else started = false; // the key was refused: start again once a new one is given
  }

  function start() {
    if (started) return;
    started = true;
    loop();
  }

  buildCharts();
  if (document.body.dataset.auth === "required" && !apiKey) askForKey("");
  else start();
  window.addEventListener("resize", () => { if (state.history.length) renderCharts(); });
})();
