// Lightbox shared-image viewer. Plain JavaScript, no build step, no third-party origins.
// Touch first: one finger drags (slices, window, move or ruler, by the chosen tool), two fingers pinch
// to zoom and drag to pan. Wheel, arrow keys and the slider scroll slices on a desktop.
"use strict";
(function () {
  const base = location.pathname.replace(/\/+$/, "");
  const $ = (id) => document.getElementById(id);
  const stage = $("stage"), frameEl = $("frame"), img = $("image"), overlay = $("overlay");
  const slider = $("slider"), info = $("info"), measure = $("measure"), toolSel = $("tool");
  const SVGNS = "http://www.w3.org/2000/svg";

  const state = {
    manifest: null, study: null, series: null, slices: [], index: 0,
    zoom: 1, panX: 0, panY: 0, rot: 0, flipH: false, flipV: false, invert: false,
    preset: "", wc: null, ww: null, shownWindow: null, ruler: null, fit: 1, token: 0,
  };
  const cache = new Map(); // url -> Promise<{url, center, width}>
  const CACHE_MAX = 160;

  function fetchPicture(url) {
    let entry = cache.get(url);
    if (!entry) {
      entry = fetch(url, { credentials: "same-origin" }).then(async (r) => {
        if (!r.ok) throw new Error("image " + r.status);
        const blob = await r.blob();
        return {
          url: URL.createObjectURL(blob),
          center: parseFloat(r.headers.get("X-Window-Center")),
          width: parseFloat(r.headers.get("X-Window-Width")),
        };
      });
      entry.catch(() => cache.delete(url));
      cache.set(url, entry);
      while (cache.size > CACHE_MAX) {
        const [oldUrl, oldEntry] = cache.entries().next().value;
        cache.delete(oldUrl);
        oldEntry.then((p) => URL.revokeObjectURL(p.url)).catch(() => {});
      }
    }
    return entry;
  }

  function neededSize() {
    const s = state.slices[state.index];
    const longest = Math.max(stage.clientWidth, stage.clientHeight) * (window.devicePixelRatio || 1) * state.zoom;
    const native = s ? Math.max(s.rows || 512, s.columns || 512) : 512;
    return Math.max(128, Math.min(2048, Math.ceil(Math.min(longest, native * 2))));
  }

  function imageUrl(i) {
    const s = state.slices[i];
    const q = new URLSearchParams({ size: String(bucket(neededSize())) });
    if (state.preset) q.set("preset", state.preset);
    else if (state.wc !== null && state.ww !== null) { q.set("wc", state.wc.toFixed(1)); q.set("ww", state.ww.toFixed(1)); }
    return `${base}/img/${state.study.uid}/${state.series.uid}/${s.sop}/${s.frame}?${q}`;
  }

  function bucket(n) {
    for (const b of [128, 256, 384, 512, 768, 1024, 1536, 2048]) if (n <= b) return b;
    return 2048;
  }

  function layout() {
    const s = state.slices[state.index];
    if (!s) return;
    const cols = s.columns || img.naturalWidth || 512, rows = s.rows || img.naturalHeight || 512;
    const swap = state.rot % 2 === 1;
    const w = stage.clientWidth, h = stage.clientHeight;
    state.fit = Math.min(w / (swap ? rows : cols), h / (swap ? cols : rows));
    const dw = cols * state.fit, dh = rows * state.fit;
    frameEl.style.width = dw + "px";
    frameEl.style.height = dh + "px";
    frameEl.style.marginLeft = -dw / 2 + "px";
    frameEl.style.marginTop = -dh / 2 + "px";
    overlay.setAttribute("viewBox", `0 0 ${cols} ${rows}`);
    overlay.setAttribute("preserveAspectRatio", "none");
    frameEl.style.transform =
      `translate(${state.panX}px, ${state.panY}px) scale(${state.zoom}) rotate(${state.rot * 90}deg) ` +
      `scale(${state.flipH ? -1 : 1}, ${state.flipV ? -1 : 1})`;
    frameEl.classList.toggle("inverted", state.invert);
  }

  async function show(i) {
    if (!state.slices.length) return;
    i = Math.max(0, Math.min(state.slices.length - 1, i));
    state.index = i;
    slider.value = String(i);
    const s = state.slices[i];
    const token = ++state.token;
    info.textContent = `${state.series.description || "Series " + (state.series.number ?? "")} · slice ${i + 1} / ${state.slices.length}`;
    stage.dataset.slice = String(i);
    layout();
    drawOverlay();
    try {
      const pic = await fetchPicture(imageUrl(i));
      if (token !== state.token) return;
      img.src = pic.url;
      state.shownWindow = Number.isFinite(pic.center) ? { center: pic.center, width: pic.width } : null;
      stage.dataset.loaded = s.sop + ":" + s.frame;
    } catch (e) {
      if (token === state.token) info.textContent = "This image could not be shown.";
    }
    prefetch(i);
  }

  function prefetch(i) {
    for (const d of [1, -1, 2, -2, 3, -3, 4, 5]) {
      const j = i + d;
      if (j >= 0 && j < state.slices.length) fetchPicture(imageUrl(j)).catch(() => {});
    }
  }

  function step(d) { show(state.index + d); }

  function selectSeries(study, series) {
    state.study = study; state.series = series; state.slices = series.slices || [];
    slider.max = String(Math.max(0, state.slices.length - 1));
    document.querySelectorAll("#series button").forEach((b) => b.classList.toggle("current", b.dataset.series === series.uid));
    state.ruler = null; measure.textContent = "";
    show(Math.floor(state.slices.length / 2));
    renderNotes();
  }

  function buildStrip() {
    const nav = $("series");
    nav.textContent = "";
    for (const study of state.manifest.studies) {
      for (const series of study.series) {
        if (!series.slices || !series.slices.length) continue;
        const b = document.createElement("button");
        b.type = "button";
        b.dataset.series = series.uid;
        const t = document.createElement("img");
        t.alt = "";
        t.loading = "lazy";
        t.src = `${base}/thumb/${study.uid}/${series.uid}`;
        const cap = document.createElement("span");
        cap.textContent = (study.prior ? "Earlier · " : "") + (series.description || series.modality || "Series") +
          ` (${series.slices.length})`;
        b.append(t, cap);
        b.addEventListener("click", () => selectSeries(study, series));
        nav.append(b);
      }
    }
  }

  function renderNotes() {
    const list = $("note-list");
    list.textContent = "";
    let any = false;
    for (const s of state.slices) for (const n of s.notes || []) {
      any = true;
      const li = document.createElement("li");
      li.textContent = (n.text || n.kind) + ` (slice ${state.slices.indexOf(s) + 1})`;
      list.append(li);
    }
    $("notes").hidden = !any;
  }

  function svg(tag, attrs, text) {
    const el = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text) el.textContent = text;
    return el;
  }

  function drawOverlay() {
    overlay.textContent = "";
    const s = state.slices[state.index];
    if (!s) return;
    const W = s.columns || 512, H = s.rows || 512;
    for (const n of s.notes || []) {
      const x = (n.x ?? 0.5) * W, y = (n.y ?? 0.5) * H;
      if (n.kind === "arrow" && n.x2 !== null) {
        overlay.append(svg("line", { x1: x, y1: y, x2: n.x2 * W, y2: n.y2 * H, class: "note" }));
      } else if (n.kind === "circle" && n.x2 !== null) {
        const cx = (x + n.x2 * W) / 2, cy = (y + n.y2 * H) / 2;
        overlay.append(svg("ellipse", { cx, cy, rx: Math.abs(n.x2 * W - x) / 2, ry: Math.abs(n.y2 * H - y) / 2, class: "note" }));
      } else {
        overlay.append(svg("circle", { cx: x, cy: y, r: Math.max(W, H) / 80, class: "note" }));
      }
      if (n.text) overlay.append(svg("text", { x: x + W / 60, y: y - H / 60, class: "note-text" }, n.text));
    }
    if (state.ruler && state.ruler.a) {
      const { a, b } = state.ruler;
      const end = b || a;
      overlay.append(svg("line", { x1: a.x, y1: a.y, x2: end.x, y2: end.y, class: "ruler" }));
      overlay.append(svg("circle", { cx: a.x, cy: a.y, r: Math.max(W, H) / 150, class: "ruler" }));
      if (b) overlay.append(svg("circle", { cx: b.x, cy: b.y, r: Math.max(W, H) / 150, class: "ruler" }));
    }
  }

  // Screen point -> image pixel (column, row), undoing pan, zoom, rotation and flips.
  function toImage(clientX, clientY) {
    const r = stage.getBoundingClientRect();
    let x = clientX - (r.left + r.width / 2) - state.panX;
    let y = clientY - (r.top + r.height / 2) - state.panY;
    x /= state.zoom; y /= state.zoom;
    const a = (-state.rot * Math.PI) / 2;
    [x, y] = [x * Math.cos(a) - y * Math.sin(a), x * Math.sin(a) + y * Math.cos(a)];
    if (state.flipH) x = -x;
    if (state.flipV) y = -y;
    const s = state.slices[state.index];
    return { x: x / state.fit + (s.columns || 512) / 2, y: y / state.fit + (s.rows || 512) / 2 };
  }

  function updateMeasure() {
    const s = state.slices[state.index];
    if (!state.ruler || !state.ruler.b || !s) { measure.textContent = ""; return; }
    const dx = state.ruler.b.x - state.ruler.a.x, dy = state.ruler.b.y - state.ruler.a.y;
    if (s.spacing) {
      const mm = Math.hypot(dx * s.spacing[1], dy * s.spacing[0]);
      measure.textContent = `${mm.toFixed(1)} mm`;
    } else {
      measure.textContent = `${Math.hypot(dx, dy).toFixed(0)} pixels (this file has no pixel spacing, so no millimetres)`;
    }
  }

  // ---------------------------------------------------------------- input
  const pointers = new Map();
  let gesture = null;

  stage.addEventListener("pointerdown", (e) => {
    try { stage.setPointerCapture(e.pointerId); } catch (err) { /* synthetic or already gone */ }
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    if (pointers.size === 2) {
      const [p, q] = [...pointers.values()];
      gesture = { kind: "pinch", dist: Math.hypot(p.x - q.x, p.y - q.y), mx: (p.x + q.x) / 2, my: (p.y + q.y) / 2,
        zoom: state.zoom, panX: state.panX, panY: state.panY };
    } else if (pointers.size === 1) {
      const tool = toolSel.value;
      gesture = { kind: tool, x: e.clientX, y: e.clientY, index: state.index, panX: state.panX, panY: state.panY };
      if (tool === "window") {
        const w = state.shownWindow || { center: 128, width: 256 };
        gesture.center = state.wc ?? w.center; gesture.width = state.ww ?? w.width;
      }
      if (tool === "ruler") { const p = toImage(e.clientX, e.clientY); state.ruler = { a: p, b: null }; drawOverlay(); }
    }
  });

  stage.addEventListener("pointermove", (e) => {
    if (!pointers.has(e.pointerId) || !gesture) return;
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    if (gesture.kind === "pinch" && pointers.size >= 2) {
      const [p, q] = [...pointers.values()];
      const dist = Math.hypot(p.x - q.x, p.y - q.y);
      state.zoom = Math.max(0.25, Math.min(12, gesture.zoom * dist / Math.max(1, gesture.dist)));
      state.panX = gesture.panX + (p.x + q.x) / 2 - gesture.mx;
      state.panY = gesture.panY + (p.y + q.y) / 2 - gesture.my;
      layout();
      return;
    }
    const dx = e.clientX - gesture.x, dy = e.clientY - gesture.y;
    if (gesture.kind === "scroll") {
      show(gesture.index + Math.round(dy / 12));
    } else if (gesture.kind === "pan") {
      state.panX = gesture.panX + dx; state.panY = gesture.panY + dy; layout();
    } else if (gesture.kind === "window") {
      // Live preview with CSS; the exact window is rendered by the server when the finger lifts.
      const width = Math.max(1, gesture.width * Math.exp(dx / 200));
      const center = gesture.center - dy * gesture.width / 300;
      gesture.newCenter = center; gesture.newWidth = width;
      const contrast = gesture.width / width, bright = 1 + (gesture.center - center) / gesture.width;
      img.style.filter = `contrast(${contrast.toFixed(3)}) brightness(${Math.max(0.05, bright).toFixed(3)})`;
    } else if (gesture.kind === "ruler" && state.ruler) {
      state.ruler.b = toImage(e.clientX, e.clientY); drawOverlay(); updateMeasure();
    }
  });

  function endPointer(e) {
    pointers.delete(e.pointerId);
    if (gesture && gesture.kind === "window" && gesture.newWidth) {
      state.preset = ""; $("preset").value = "";
      state.wc = gesture.newCenter; state.ww = gesture.newWidth;
      img.style.filter = "";
      show(state.index);
    }
    if (gesture && gesture.kind === "pinch") show(state.index); // ask for a sharper picture if needed
    gesture = null;
  }
  stage.addEventListener("pointerup", endPointer);
  stage.addEventListener("pointercancel", endPointer);

  stage.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (e.ctrlKey) { zoomBy(e.deltaY < 0 ? 1.1 : 1 / 1.1); return; }
    step(e.deltaY > 0 ? 1 : -1);
  }, { passive: false });

  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement && e.target.type !== "range") return;
    const keys = { ArrowDown: 1, ArrowRight: 1, PageDown: 10, ArrowUp: -1, ArrowLeft: -1, PageUp: -10 };
    if (e.key in keys) { e.preventDefault(); step(keys[e.key]); }
    else if (e.key === "Home") show(0);
    else if (e.key === "End") show(state.slices.length - 1);
    else if (e.key === "+" || e.key === "=") zoomBy(1.25);
    else if (e.key === "-") zoomBy(0.8);
    else if (e.key === "r") rotate();
    else if (e.key === "i") toggleInvert();
    else if (e.key === "0") reset();
  });

  function zoomBy(f) { state.zoom = Math.max(0.25, Math.min(12, state.zoom * f)); layout(); show(state.index); }
  function rotate() { state.rot = (state.rot + 1) % 4; layout(); }
  function toggleInvert() { state.invert = !state.invert; $("invert").setAttribute("aria-pressed", String(state.invert)); layout(); }
  function reset() {
    Object.assign(state, { zoom: 1, panX: 0, panY: 0, rot: 0, flipH: false, flipV: false, invert: false,
      preset: "", wc: null, ww: null, ruler: null });
    $("preset").value = ""; $("invert").setAttribute("aria-pressed", "false"); measure.textContent = "";
    layout(); show(state.index);
  }

  slider.addEventListener("input", () => show(parseInt(slider.value, 10)));
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("zoom-in").addEventListener("click", () => zoomBy(1.25));
  $("zoom-out").addEventListener("click", () => zoomBy(0.8));
  $("rotate").addEventListener("click", rotate);
  $("flip-h").addEventListener("click", () => { state.flipH = !state.flipH; layout(); });
  $("flip-v").addEventListener("click", () => { state.flipV = !state.flipV; layout(); });
  $("invert").addEventListener("click", toggleInvert);
  $("reset").addEventListener("click", reset);
  $("preset").addEventListener("change", (e) => { state.preset = e.target.value; state.wc = state.ww = null; show(state.index); });
  toolSel.addEventListener("change", () => { if (toolSel.value !== "ruler") { state.ruler = null; measure.textContent = ""; drawOverlay(); } });
  window.addEventListener("resize", layout);
  img.addEventListener("load", layout);

  fetch(`${base}/api/manifest`, { credentials: "same-origin" })
    .then((r) => { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
    .then((m) => {
      state.manifest = m;
      const presetSel = $("preset");
      for (const name of Object.keys(m.presets || {})) {
        const o = document.createElement("option");
        o.value = name; o.textContent = "Window: " + name;
        presetSel.append(o);
      }
      buildStrip();
      for (const study of m.studies) for (const series of study.series) {
        if (series.slices && series.slices.length) { selectSeries(study, series); document.body.dataset.ready = "1"; return; }
      }
      info.textContent = "No images in this share.";
      document.body.dataset.ready = "1";
    })
    .catch(() => { info.textContent = "The images could not be loaded. The link may have expired."; });
})();
