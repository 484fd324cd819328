// wan_nb lockstep grid: plain ES module for anywidget (no build step); to_html reuses it as is.
//
// One master clock drives every video of the page shown. The clock is wall time (advanced on
// each requestAnimationFrame by the elapsed time x speed) and stands still while any joined
// video is seeking or starved, so a slow decoder holds the others back instead of falling
// behind. Each frame, every video is compared with the clock: more than half a frame off and
// it is seeked to the clock; a smaller drift is trimmed by nudging its playbackRate. A clip
// shorter than the clock holds its last frame; a cell still rendering shows its progress and
// joins at the clock's time once its video arrives.

const SPEEDS = [0.25, 0.5, 1, 2];

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function videoUrl(value) {
  if (!value) return null;
  if (typeof value === "string") return value;
  let bytes = null;
  if (value instanceof DataView) bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  else if (value instanceof ArrayBuffer) bytes = new Uint8Array(value);
  else if (ArrayBuffer.isView(value)) bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (!bytes || !bytes.length) return null;
  return URL.createObjectURL(new Blob([bytes], { type: "video/mp4" }));
}

// Play / pause as drawn icons: the ⏸ character is missing from fonts without emoji (Chromium
// then shows an empty box), so the glyph is an SVG and the word says the rest.
const SVG_NS = "http://www.w3.org/2000/svg";
const ICONS = { play: "M3 2 L13 8 L3 14 Z", pause: "M3 2 H6.5 V14 H3 Z M9.5 2 H13 V14 H9.5 Z" };

function setPlayLabel(button, playing) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("width", "11");
  svg.setAttribute("height", "11");
  svg.setAttribute("aria-hidden", "true");
  svg.classList.add("wan-nb-ls-icon");
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", playing ? ICONS.pause : ICONS.play);
  path.setAttribute("fill", "currentColor");
  svg.appendChild(path);
  button.replaceChildren(svg, document.createTextNode(playing ? " Pause" : " Play"));
}

// "queued", "rendering · step 3/8": the separator only between two things.
function cellLine(status, message) {
  return [status || "queued", message || ""].filter((part) => part).join(" · ");
}

function render({ model, el: host }) {
  const root = el("div", "wan-nb-lockstep");
  const bar = el("div", "wan-nb-ls-controls");
  const play = el("button", "wan-nb-ls-play");
  setPlayLabel(play, false);
  const scrub = el("input", "wan-nb-ls-scrub");
  scrub.type = "range"; scrub.min = "0"; scrub.max = "0"; scrub.step = "any"; scrub.value = "0";
  const clockText = el("span", "wan-nb-ls-time", "0.00 s");
  const speed = el("select", "wan-nb-ls-speed");
  for (const s of SPEEDS) {
    const option = el("option", "", `${s}×`);
    option.value = String(s);
    if (s === 1) option.selected = true;
    speed.append(option);
  }
  const loopLabel = el("label", "wan-nb-ls-looplabel");
  const loop = el("input", "wan-nb-ls-loop");
  loop.type = "checkbox"; loop.checked = true;
  loopLabel.append(loop, document.createTextNode(" loop"));
  const pageSelect = el("select", "wan-nb-ls-page");
  bar.append(play, scrub, clockText, speed, loopLabel, pageSelect);
  const table = el("table", "wan-nb-ls-table");
  const detail = el("div", "wan-nb-ls-detail");
  detail.hidden = true;
  const large = el("div", "wan-nb-ls-large");
  large.hidden = true;
  root.append(bar, table, detail, large);
  host.appendChild(root);

  const urls = [];          // per cell: blob/page URL of its video (null while rendering)
  const videos = new Map(); // cell index -> <video> on the page shown
  let extra = null;         // the enlarged copy, also on the clock
  let playing = false, clock = 0, speedValue = 1, last = null, raf = 0, selected = -1;

  const cells = () => model.get("cells") || [];
  const page = () => model.get("page") || 0;
  const fps = () => Math.max(1, ...cells().map((c) => c.fps || 0));
  const frame = () => 1 / fps();
  const joined = () => {
    const list = [...videos.values()].filter((v) => v.readyState >= 1);
    if (extra && extra.readyState >= 1) list.push(extra);
    return list;
  };
  const duration = () => {
    let longest = 0;
    for (const v of joined()) if (isFinite(v.duration)) longest = Math.max(longest, v.duration);
    if (!longest) for (const c of cells()) if (c.z === page() && c.frames && c.fps) longest = Math.max(longest, c.frames / c.fps);
    return longest;
  };

  function syncVideo(v) {
    if (v.readyState < 1 || !isFinite(v.duration)) return;
    const end = Math.max(0, v.duration - frame() / 2);   // the last frame's time: held once reached
    const target = Math.min(clock, end);
    const drift = v.currentTime - target;
    const holding = clock >= end;
    if (!playing || holding) {
      if (!v.paused) v.pause();
      if (Math.abs(drift) > 0.001 && !v.seeking) v.currentTime = target;
      return;
    }
    if (Math.abs(drift) > frame() / 2) {
      if (!v.seeking) v.currentTime = target;
      v.playbackRate = speedValue;
    } else {
      // Trim small drift over a few frames: a seek would stutter, a rate nudge does not.
      v.playbackRate = speedValue * Math.min(1.5, Math.max(0.5, 1 - drift * 4));
    }
    if (v.paused && !v.seeking) v.play().catch(() => {});
  }

  function tick(now) {
    raf = requestAnimationFrame(tick);
    const list = joined();
    const stalled = list.some((v) => v.seeking || (v.readyState < 3 && clock < v.duration - frame()));
    if (playing && last !== null && !stalled) clock += ((now - last) / 1000) * speedValue;
    last = now;
    const total = duration();
    if (playing && total > 0 && clock >= total) {
      if (loop.checked) clock = 0;
      else { clock = total; setPlaying(false); }
    }
    for (const v of list) syncVideo(v);
    scrub.max = String(total);
    if (document.activeElement !== scrub) scrub.value = String(clock);
    const frames = Math.round(total * fps());
    clockText.textContent = `${clock.toFixed(2)} s · frame ${Math.min(frames, Math.floor(clock * fps() + 1e-6) + 1)}/${frames}`;
    root.dataset.clock = clock.toFixed(4);
  }

  function setPlaying(on) {
    playing = on;
    setPlayLabel(play, on);
    root.dataset.playing = on ? "1" : "0";
    if (!on) for (const v of joined()) v.pause();
  }

  play.addEventListener("click", () => {
    if (!playing && duration() > 0 && clock >= duration() - frame()) clock = 0;
    setPlaying(!playing);
  });
  scrub.addEventListener("input", () => { clock = Math.max(0, Number(scrub.value) || 0); });
  speed.addEventListener("change", () => { speedValue = Number(speed.value) || 1; });
  pageSelect.addEventListener("change", () => { model.set("page", Number(pageSelect.value)); model.save_changes(); });

  const boxes = new Map();  // cell index -> {box, url, fill, message, img}: updated in place

  function fillCell(index, cell, entry) {
    const url = urls[index] || null;
    entry.box.dataset.status = cell.status || "queued";
    if (url && entry.url !== url) {
      const v = el("video", "wan-nb-ls-video");
      v.muted = true; v.playsInline = true; v.preload = "auto"; v.loop = false;
      v.dataset.index = String(index);
      v.src = url;
      v.addEventListener("loadedmetadata", () => syncVideo(v));
      videos.set(index, v);
      entry.box.replaceChildren(v);
      entry.url = url;
      entry.fill = null;
      return;
    }
    if (url) return;
    if (!entry.fill) {
      videos.delete(index);
      entry.url = null;
      entry.img = el("img", "wan-nb-ls-preview");
      const progress = el("div", "wan-nb-ls-progress");
      entry.fill = el("div", "wan-nb-ls-fill");
      progress.append(entry.fill);
      entry.message = el("div", "wan-nb-ls-message");
      entry.box.replaceChildren(entry.img, progress, entry.message);
    }
    entry.fill.style.width = `${Math.max(0, Math.min(100, cell.progress || 0))}%`;
    entry.message.textContent = cellLine(cell.status, cell.message);
    if (cell.preview && entry.img.getAttribute("src") !== cell.preview) entry.img.src = cell.preview;
    entry.img.hidden = !cell.preview;
  }

  function updateCells() {
    const list = cells();
    for (const [index, entry] of boxes) {
      if (!list[index]) continue;
      if (entry.url && !urls[index]) entry.fill = null;   // its video was withdrawn (a rerun)
      if (entry.url !== (urls[index] || null) || !urls[index]) fillCell(index, list[index], entry);
      if (entry.url && urls[index]) entry.box.dataset.status = list[index].status || "completed";
    }
    root.dataset.videos = String(videos.size);
    if (selected >= 0) showDetail(selected, true);
  }

  function draw() {
    const list = cells();
    const columns = model.get("columns") || [];
    const rows = model.get("rows") || [];
    const pages = model.get("pages") || [];
    pageSelect.hidden = pages.length < 2;
    if (pageSelect.options.length !== pages.length) {
      pageSelect.replaceChildren(...pages.map((p, i) => { const o = el("option", "", `${model.get("z_name")}: ${p}`); o.value = String(i); return o; }));
    }
    pageSelect.value = String(page());
    videos.clear();
    boxes.clear();
    const head = el("tr");
    head.append(el("th", "wan-nb-ls-corner", rows.length ? `${model.get("y_name")} \\ ${model.get("x_name")}` : model.get("x_name")));
    for (const c of columns) head.append(el("th", "wan-nb-ls-col", c));
    const body = [head];
    for (let y = 0; y < Math.max(1, rows.length); y++) {
      const tr = el("tr");
      tr.append(el("th", "wan-nb-ls-row", rows.length ? rows[y] : ""));
      for (let x = 0; x < columns.length; x++) {
        const index = list.findIndex((c) => c.x === x && c.y === y && c.z === page());
        const td = el("td");
        if (index >= 0) {
          const box = el("div", "wan-nb-ls-cell");
          box.dataset.index = String(index);
          box.style.width = `${model.get("tile_width") || 192}px`;
          box.addEventListener("click", () => showDetail(index));
          const entry = { box, url: null, fill: null, message: null, img: null };
          boxes.set(index, entry);
          fillCell(index, list[index], entry);
          td.append(box);
        }
        tr.append(td);
      }
      body.push(tr);
    }
    table.replaceChildren(...body);
    root.dataset.cells = String(list.length);
    root.dataset.videos = String(videos.size);
    if (selected >= 0) showDetail(selected, true);
  }

  function showDetail(index, refresh) {
    const cell = cells()[index];
    if (!cell) return;
    if (!refresh && selected === index && !detail.hidden) { detail.hidden = true; selected = -1; return; }
    selected = index;
    detail.hidden = false;
    const title = el("div", "wan-nb-ls-title", cell.title || `cell ${index + 1}`);
    const recipe = el("pre", "wan-nb-ls-recipe", JSON.stringify(cell.recipe || {}, null, 1));
    const buttons = el("div", "wan-nb-ls-buttons");
    const open = el("button", "wan-nb-ls-open", "Open large");
    open.disabled = !urls[index];
    open.addEventListener("click", () => openLarge(index));
    buttons.append(open);
    if (model.get("interactive")) {
      const rerun = el("button", "wan-nb-ls-rerun", "Rerun");
      rerun.disabled = !["completed", "failed", "cancelled"].includes(cell.status);
      rerun.addEventListener("click", () => model.send({ event: "rerun", index }));
      buttons.append(rerun);
    }
    const close = el("button", "wan-nb-ls-close", "Close");
    close.addEventListener("click", () => { detail.hidden = true; selected = -1; });
    buttons.append(close);
    detail.replaceChildren(title, buttons, recipe);
  }

  function openLarge(index) {
    if (!urls[index]) return;
    const v = el("video", "wan-nb-ls-big");
    v.muted = true; v.playsInline = true; v.preload = "auto"; v.src = urls[index];
    v.addEventListener("loadedmetadata", () => syncVideo(v));
    const close = el("button", "wan-nb-ls-close", "Close");
    close.addEventListener("click", () => { large.hidden = true; large.replaceChildren(); extra = null; });
    large.replaceChildren(close, el("div", "wan-nb-ls-title", cells()[index].title || ""), v);
    large.hidden = false;
    extra = v;
  }

  function loadVideos() {
    const values = model.get("videos") || [];
    let changed = false;
    for (let i = 0; i < Math.max(values.length, urls.length); i++) {
      const had = urls[i] || null;
      const value = values[i];
      if (!value && had) { if (had.startsWith("blob:")) URL.revokeObjectURL(had); urls[i] = null; changed = true; }
      else if (value && !had) { urls[i] = videoUrl(value); changed = true; }
      else if (value && had && typeof value === "string" && value !== had) { urls[i] = value; changed = true; }
    }
    return changed;
  }

  const onVideos = () => { if (loadVideos()) updateCells(); };
  const onCells = () => updateCells();
  const onLayout = () => draw();
  loadVideos();
  draw();
  model.on("change:videos", onVideos);
  model.on("change:cells", onCells);
  model.on("change:page", onLayout);
  model.on("change:tile_width", onLayout);
  raf = requestAnimationFrame(tick);
  return () => {
    cancelAnimationFrame(raf);
    model.off("change:videos", onVideos);
    model.off("change:cells", onCells);
    model.off("change:page", onLayout);
    model.off("change:tile_width", onLayout);
    for (const u of urls) if (u && u.startsWith("blob:")) URL.revokeObjectURL(u);
  };
}

export default { render };
