// wan_nb memory chart: plain ES module for anywidget (no build step).
// Draws allocated / reserved / used as a percentage of the device, the warning (75 %) and
// critical (90 %) lines, and one shaded band per stage, over the last `window_s` seconds.
// The root element carries data-points (samples drawn) so tests can see that it drew.

const SVG = "http://www.w3.org/2000/svg";
const W = 600, H = 140, LEFT = 34, RIGHT = 6, TOP = 6, BOTTOM = 16;
const STAGE_COLORS = {
  initializing: "#999999", downloading_model: "#cc79a7", loading_model: "#cc79a7",
  preparing_inputs: "#f0e442", applying_lora: "#e69f00", generating: "#0072b2",
  post_processing: "#009e73", saving: "#56b4e9",
};
const SHORT = {
  initializing: "init", downloading_model: "download", loading_model: "load",
  preparing_inputs: "inputs", applying_lora: "lora", generating: "denoise",
  post_processing: "decode", saving: "save",
};

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

// Readings are MiB; written in binary units like the header (vram_plot.py's format_mib).
function mib(value) {
  return value >= 1024 ? `${(value / 1024).toFixed(1)} GiB` : `${Math.round(value)} MiB`;
}

// Stage names under the chart: a label is drawn only where it fits inside its band and clear
// of the previous label (short stages side by side would otherwise run together).
const LABEL_CHAR_W = 5.2, LABEL_PAD = 4;

function labelWidth(text) {
  return text.length * LABEL_CHAR_W + LABEL_PAD;
}

function draw(model, root) {
  const samples = model.get("samples") || [];
  const bands = model.get("bands") || [];
  const windowS = model.get("window_s") || 300;
  const kind = model.get("kind");
  root.querySelector(".wan-nb-vram-title").textContent = model.get("label");
  const svg = root.querySelector("svg");
  svg.replaceChildren();

  // The chart ends at the newest reading or the end of the last stage, whichever is later, so
  // short final stages (decode, save) stay visible after the last reading.
  const lastBandEnd = bands.reduce((m, b) => Math.max(m, b.end == null ? b.start : b.end), 0);
  const tEnd = Math.max(samples.length ? samples[samples.length - 1].t : 0, lastBandEnd) || Date.now() / 1000;
  const tStart = Math.max(samples.length ? samples[0].t : tEnd - windowS, tEnd - windowS);
  const span = Math.max(tEnd - tStart, 1);
  const x = (t) => LEFT + ((t - tStart) / span) * (W - LEFT - RIGHT);
  const y = (pct) => TOP + (1 - Math.min(Math.max(pct, 0), 100) / 100) * (H - TOP - BOTTOM);

  for (const pct of [0, 25, 50, 100]) {
    el("line", { class: "grid", x1: LEFT, x2: W - RIGHT, y1: y(pct), y2: y(pct) }, svg);
    el("text", { class: "axis", x: 2, y: y(pct) + 3 }, svg).textContent = `${pct}%`;
  }
  const warn = model.get("warning_percent"), crit = model.get("critical_percent");
  el("line", { class: "threshold-warning", x1: LEFT, x2: W - RIGHT, y1: y(warn), y2: y(warn) }, svg);
  el("text", { class: "axis", x: 2, y: y(warn) + 3 }, svg).textContent = `${warn}%`;
  el("line", { class: "threshold-critical", x1: LEFT, x2: W - RIGHT, y1: y(crit), y2: y(crit) }, svg);
  el("text", { class: "axis", x: 2, y: y(crit) + 3 }, svg).textContent = `${crit}%`;

  let labelsEnd = -Infinity;
  for (const band of bands) {
    const start = Math.max(band.start, tStart);
    const end = Math.min(band.end == null ? tEnd : band.end, tEnd);
    if (end <= start) continue;
    const rect = el("rect", {
      class: "band", x: x(start), y: TOP, width: Math.max(x(end) - x(start), 1),
      height: H - TOP - BOTTOM, fill: STAGE_COLORS[band.stage] || "#888",
    }, svg);
    el("title", {}, rect).textContent = band.stage;
    const text = SHORT[band.stage] || band.stage;
    const at = x(start) + 2;
    if (x(end) - x(start) >= labelWidth(text) && at >= labelsEnd) {
      el("text", { class: "band-label", x: at, y: H - 4 }, svg).textContent = text;
      labelsEnd = at + labelWidth(text);
    }
  }

  const visible = samples.filter((s) => s.t >= tStart);
  const series = kind === "ram" ? ["allocated", "used"] : ["allocated", "reserved", "used"];
  for (const name of series) {
    const points = visible.map((s) => `${x(s.t).toFixed(1)},${y(s.total ? (100 * s[name]) / s.total : 0).toFixed(1)}`);
    if (points.length === 1) points.push(`${(x(visible[0].t) + 2).toFixed(1)},${points[0].split(",")[1]}`);
    if (points.length) el("polyline", { class: `series series-${name}`, points: points.join(" ") }, svg);
  }
  root.dataset.points = String(visible.length);

  const legend = root.querySelector(".wan-nb-vram-legend");
  legend.replaceChildren();
  const last = samples[samples.length - 1];
  const names = kind === "ram"
    ? { allocated: "process", used: "machine used" }
    : { allocated: "allocated", reserved: "reserved", used: "used" };
  for (const name of series) {
    const item = document.createElement("span");
    item.className = name;
    const value = last ? ` ${mib(last[name])} of ${mib(last.total)}` : "";
    item.innerHTML = `${names[name]}<b class="value">${value}</b>`;
    legend.appendChild(item);
  }
}

export default {
  render({ model, el: host }) {
    const root = document.createElement("div");
    root.className = "wan-nb-vram";
    root.dataset.points = "0";
    root.innerHTML = '<div class="wan-nb-vram-title"></div>' +
      `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="memory use"></svg>` +
      '<div class="wan-nb-vram-legend"></div>';
    host.appendChild(root);
    const redraw = () => draw(model, root);
    for (const name of ["samples", "bands", "label", "kind", "window_s"]) model.on(`change:${name}`, redraw);
    redraw();
    return () => { for (const name of ["samples", "bands", "label", "kind", "window_s"]) model.off(`change:${name}`, redraw); };
  },
};
