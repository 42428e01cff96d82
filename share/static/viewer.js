// Lightbox shared-image viewer. Plain JavaScript, no build step, no third-party origins.
// Touch first: one finger drags (slices, window, move or ruler, by the chosen tool), two fingers pinch
// to zoom and drag to pan. Wheel, arrow keys and the slider scroll slices on a desktop.
// With a prior shared, "Compare" shows the earlier study's matching slice beside (or, on a phone, below)
// the current one: slices paired by position along the slice normal (else relative position in the
// stack, as store.comparison.pair_slice), the same window and view on both, scrolled together.
// Through the patient's own link (can_annotate) the arrow, circle and text tools save marks in
// normalised coordinates of the original frame (screen points are taken back through the view's transform).
"use strict";
(function () {
  const base = location.pathname.replace(/\/+$/, "");
  const $ = (id) => document.getElementById(id);
  const stage = $("stage"), frameEl = $("frame"), img = $("image"), overlay = $("overlay");
  const slider = $("slider"), info = $("info"), measure = $("measure"), toolSel = $("tool");
  const SVGNS = "http://www.w3.org/2000/svg";
  const panes = $("panes"), stage2 = $("stage2"), frame2 = $("frame2"), img2 = $("image2"), overlay2 = $("overlay2");
  const info2 = $("info2"), compareSel = $("compare"), markText = $("mark-text");
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  const MARK_TOOLS = { arrow: "Draw arrow", circle: "Draw circle", note: "Add text" };

  const state = {
    manifest: null, study: null, series: null, slices: [], index: 0,
    zoom: 1, panX: 0, panY: 0, rot: 0, flipH: false, flipV: false, invert: false,
    preset: "", wc: null, ww: null, shownWindow: null, ruler: null, fit: 1, token: 0,
    cmp: null, // {entry, study, series, slices, index} while comparing with a prior
    draft: null, // a mark being drawn: {kind, a, b}
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

  function imageUrl(i, study, series, slices, window) {
    study = study || state.study; series = series || state.series; slices = slices || state.slices;
    const s = slices[i];
    const q = new URLSearchParams({ size: String(bucket(neededSize())) });
    if (state.preset) q.set("preset", state.preset);
    else if (state.wc !== null && state.ww !== null) { q.set("wc", state.wc.toFixed(1)); q.set("ww", state.ww.toFixed(1)); }
    else if (window) { q.set("wc", window.center.toFixed(1)); q.set("ww", window.width.toFixed(1)); }
    return `${base}/img/${study.uid}/${series.uid}/${s.sop}/${s.frame}?${q}`;
  }

  function bucket(n) {
    for (const b of [128, 256, 384, 512, 768, 1024, 1536, 2048]) if (n <= b) return b;
    return 2048;
  }

  // Fit one slice into its pane and apply the view (pan, zoom, rotation, flips); returns the fit scale.
  function layoutPane(paneEl, frame, svgEl, picture, s) {
    const cols = s.columns || picture.naturalWidth || 512, rows = s.rows || picture.naturalHeight || 512;
    const swap = state.rot % 2 === 1;
    const w = paneEl.clientWidth, h = paneEl.clientHeight;
    const fit = Math.min(w / (swap ? rows : cols), h / (swap ? cols : rows));
    const dw = cols * fit, dh = rows * fit;
    frame.style.width = dw + "px";
    frame.style.height = dh + "px";
    frame.style.marginLeft = -dw / 2 + "px";
    frame.style.marginTop = -dh / 2 + "px";
    svgEl.setAttribute("viewBox", `0 0 ${cols} ${rows}`);
    svgEl.setAttribute("preserveAspectRatio", "none");
    frame.style.transform =
      `translate(${state.panX}px, ${state.panY}px) scale(${state.zoom}) rotate(${state.rot * 90}deg) ` +
      `scale(${state.flipH ? -1 : 1}, ${state.flipV ? -1 : 1})`;
    frame.classList.toggle("inverted", state.invert);
    return fit;
  }

  function layout() {
    const s = state.slices[state.index];
    if (!s) return;
    state.fit = layoutPane(stage, frameEl, overlay, img, s);
    const c = state.cmp;
    if (c && c.slices[c.index]) layoutPane(stage2, frame2, overlay2, img2, c.slices[c.index]);
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
    if (token === state.token) await showPrior(token);
    prefetch(i);
  }

  // ---------------------------------------------------------------- comparison with a prior

  // Mirror of store.comparison.pair_slice: nearest position along the slice normal when every slice
  // has one, else the same relative place in the stack.
  function pairIndex(earlier, later, laterIndex) {
    if (!earlier.length) return 0;
    laterIndex = later.length ? Math.min(Math.max(laterIndex, 0), later.length - 1) : 0;
    const target = later.length ? later[laterIndex].position : null;
    const known = earlier.every((e) => e.position !== null && e.position !== undefined);
    if (target !== null && target !== undefined && known) {
      let best = 0;
      for (let k = 1; k < earlier.length; k++) {
        if (Math.abs(earlier[k].position - target) < Math.abs(earlier[best].position - target)) best = k;
      }
      return best;
    }
    if (later.length <= 1) return Math.floor((earlier.length - 1) / 2);
    return Math.round(laterIndex * (earlier.length - 1) / (later.length - 1));
  }

  function niceDate(iso) {
    if (!iso) return "date unknown";
    const d = new Date(iso + "T00:00:00Z");
    return d.toLocaleDateString("en-GB", { day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });
  }

  async function showPrior(token) {
    const c = state.cmp;
    if (!c) return;
    c.index = pairIndex(c.slices, state.slices, state.index);
    const s = c.slices[c.index];
    stage2.dataset.slice = String(c.index);
    info2.textContent = `Earlier · ${niceDate(c.entry.date)} · slice ${c.index + 1} / ${c.slices.length}`;
    layout();
    drawNotes(overlay2, s, null);
    try {
      // Same window on both sides: the one chosen, else the one the current slice was shown with.
      const pic = await fetchPicture(imageUrl(c.index, c.study, c.series, c.slices, state.shownWindow));
      if (token !== state.token || state.cmp !== c) return;
      img2.src = pic.url;
      stage2.dataset.loaded = s.sop + ":" + s.frame;
    } catch (e) {
      if (token === state.token) info2.textContent = "The earlier image could not be shown.";
    }
  }

  function compareEntries() {
    if (!state.manifest || !state.study || state.study.prior) return [];
    return (state.manifest.compare || []).filter((e) => e.pairs[state.series.uid]);
  }

  function updateCompareBar() {
    const entries = compareEntries();
    const wanted = state.cmp ? state.cmp.entry.study : "";
    compareSel.textContent = "";
    const off = document.createElement("option");
    off.value = ""; off.textContent = "Compare: off";
    compareSel.append(off);
    for (const e of entries) {
      const o = document.createElement("option");
      o.value = e.study; o.textContent = `Side by side with ${niceDate(e.date)}`;
      compareSel.append(o);
    }
    $("compare-bar").hidden = entries.length === 0;
    compareSel.value = entries.some((e) => e.study === wanted) ? wanted : "";
    // Another series was chosen: keep comparing with the same prior, with this series' partner.
    setCompare(compareSel.value, false);
  }

  function setCompare(priorUid, redraw = true) {
    const entry = compareEntries().find((e) => e.study === priorUid);
    const study = entry && state.manifest.studies.find((st) => st.uid === entry.study);
    const series = study && study.series.find((se) => se.uid === entry.pairs[state.series.uid]);
    if (!series || !series.slices || !series.slices.length) {
      state.cmp = null;
      stage2.hidden = true;
      panes.classList.remove("comparing");
      $("compare-info").textContent = "";
      delete stage2.dataset.loaded;
      if (redraw) layout();
      return;
    }
    state.cmp = { entry, study, series, slices: series.slices, index: 0 };
    stage2.hidden = false;
    panes.classList.add("comparing");
    delete stage2.dataset.loaded;
    $("compare-info").textContent =
      `${niceDate(entry.date)} (earlier) and ${niceDate(entry.later_date)} · ${entry.interval}`;
    if (redraw) show(state.index);
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
    updateCompareBar();
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

  const KIND_WORDS = { arrow: "arrow", circle: "circle", marker: "marker", note: "note" };

  function renderNotes() {
    const list = $("note-list");
    list.textContent = "";
    let any = false;
    state.slices.forEach((s, index) => {
      for (const n of s.notes || []) {
        any = true;
        const li = document.createElement("li");
        li.dataset.id = n.id || "";
        const what = n.text ? n.text : KIND_WORDS[n.kind] || n.kind;
        const link = document.createElement("a");
        link.href = "#";
        link.textContent = what + ` (slice ${index + 1})`;
        link.addEventListener("click", (e) => { e.preventDefault(); show(index); });
        li.append(link);
        if (n.mine && csrf) {
          const del = document.createElement("button");
          del.type = "button";
          del.className = "delete-mark";
          del.textContent = "Delete";
          del.setAttribute("aria-label", `Delete ${what}`);
          del.addEventListener("click", () => deleteMark(s, n));
          li.append(del);
        }
        list.append(li);
      }
    });
    $("notes").hidden = !any;
  }

  function svg(tag, attrs, text) {
    const el = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text) el.textContent = text;
    return el;
  }

  // One mark in frame pixels: an arrow (line with a head at x2,y2), a circle in the box (x,y)-(x2,y2),
  // or a point marker; its text beside it.
  function drawMark(svgEl, n, W, H, cls) {
    const x = (n.x ?? 0.5) * W, y = (n.y ?? 0.5) * H;
    if (n.kind === "arrow" && n.x2 !== null && n.x2 !== undefined) {
      const x2 = n.x2 * W, y2 = n.y2 * H;
      svgEl.append(svg("line", { x1: x, y1: y, x2, y2, class: cls }));
      const ang = Math.atan2(y2 - y, x2 - x), len = Math.max(W, H) / 40;
      for (const d of [0.45, -0.45]) {
        svgEl.append(svg("line", { x1: x2, y1: y2, x2: x2 - len * Math.cos(ang + d), y2: y2 - len * Math.sin(ang + d), class: cls.replace("note", "note-head") }));
      }
    } else if (n.kind === "circle" && n.x2 !== null && n.x2 !== undefined) {
      const cx = (x + n.x2 * W) / 2, cy = (y + n.y2 * H) / 2;
      svgEl.append(svg("ellipse", { cx, cy, rx: Math.abs(n.x2 * W - x) / 2, ry: Math.abs(n.y2 * H - y) / 2, class: cls }));
    } else {
      svgEl.append(svg("circle", { cx: x, cy: y, r: Math.max(W, H) / 80, class: cls }));
    }
    if (n.text) svgEl.append(svg("text", { x: x + W / 60, y: y - H / 60, class: cls.replace("note", "note-text") }, n.text));
  }

  function drawNotes(svgEl, s, draft) {
    svgEl.textContent = "";
    if (!s) return;
    const W = s.columns || 512, H = s.rows || 512;
    for (const n of s.notes || []) drawMark(svgEl, n, W, H, n.mine ? "note mine" : "note");
    if (draft && draft.b) {
      drawMark(svgEl, { kind: draft.kind, x: draft.a.x / W, y: draft.a.y / H, x2: draft.b.x / W, y2: draft.b.y / H },
        W, H, "draft");
    }
  }

  function drawOverlay() {
    const s = state.slices[state.index];
    drawNotes(overlay, s, state.draft);
    if (!s) return;
    const W = s.columns || 512, H = s.rows || 512;
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

  // ---------------------------------------------------------------- the patient's marks

  function clamp01(v) { return Math.max(0, Math.min(1, v)); }

  async function saveMark(kind, a, b, text) {
    const s = state.slices[state.index];
    const W = s.columns || 512, H = s.rows || 512;
    const body = { study: state.study.uid, series: state.series.uid, sop: s.sop, frame: s.frame, kind,
      x: clamp01(a.x / W), y: clamp01(a.y / H), x2: b ? clamp01(b.x / W) : null, y2: b ? clamp01(b.y / H) : null,
      text: text || "" };
    try {
      const r = await fetch(`${base}/api/annotations`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body),
      });
      if (!r.ok) throw new Error(String(r.status));
      (s.notes = s.notes || []).push(await r.json());
      markText.value = "";
    } catch (e) {
      info.textContent = "Your mark could not be saved. Please try again.";
    }
    drawOverlay();
    renderNotes();
  }

  async function deleteMark(s, n) {
    try {
      const r = await fetch(`${base}/api/annotations/${encodeURIComponent(n.id)}`, {
        method: "DELETE", credentials: "same-origin", headers: { "X-CSRF-Token": csrf },
      });
      if (!r.ok && r.status !== 404) throw new Error(String(r.status));
      s.notes = (s.notes || []).filter((m) => m !== n);
    } catch (e) {
      info.textContent = "That mark could not be deleted. Please try again.";
    }
    drawOverlay();
    renderNotes();
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
      if (tool === "arrow" || tool === "circle") state.draft = { kind: tool, a: toImage(e.clientX, e.clientY), b: null };
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
    } else if (state.draft && gesture.kind === state.draft.kind) {
      state.draft.b = toImage(e.clientX, e.clientY); drawOverlay();
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
    if (gesture && state.draft && gesture.kind === state.draft.kind) {
      const { kind, a } = state.draft;
      const b = toImage(e.clientX, e.clientY);
      state.draft = null;
      // A tap is not a shape: an arrow or circle needs a drag of at least a few screen pixels.
      if (Math.hypot(e.clientX - gesture.x, e.clientY - gesture.y) >= 6) saveMark(kind, a, b, markText.value.trim());
      else drawOverlay();
    } else if (gesture && gesture.kind === "note" && pointers.size === 0 &&
               Math.hypot(e.clientX - gesture.x, e.clientY - gesture.y) < 6) {
      const text = markText.value.trim() || (window.prompt("What should the note say?") || "").trim();
      if (text) saveMark("note", toImage(e.clientX, e.clientY), null, text);
    }
    gesture = null;
  }
  stage.addEventListener("pointerup", endPointer);
  stage.addEventListener("pointercancel", endPointer);

  stage.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (e.ctrlKey) { zoomBy(e.deltaY < 0 ? 1.1 : 1 / 1.1); return; }
    step(e.deltaY > 0 ? 1 : -1);
  }, { passive: false });

  // Scrolling the earlier pane moves both, like the current one.
  stage2.addEventListener("wheel", (e) => { e.preventDefault(); step(e.deltaY > 0 ? 1 : -1); }, { passive: false });
  let swipe2 = null;
  stage2.addEventListener("pointerdown", (e) => {
    try { stage2.setPointerCapture(e.pointerId); } catch (err) { /* synthetic */ }
    swipe2 = { y: e.clientY, index: state.index };
  });
  stage2.addEventListener("pointermove", (e) => { if (swipe2) show(swipe2.index + Math.round((e.clientY - swipe2.y) / 12)); });
  stage2.addEventListener("pointerup", () => { swipe2 = null; });
  stage2.addEventListener("pointercancel", () => { swipe2 = null; });

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
  compareSel.addEventListener("change", () => setCompare(compareSel.value));
  window.addEventListener("resize", layout);
  // The panes change size without a window resize too (the notes list appears, comparison turns on):
  // refit, so pictures, marks and screen-to-frame conversion stay right.
  if (window.ResizeObserver) {
    const watcher = new ResizeObserver(() => layout());
    watcher.observe(stage);
    watcher.observe(stage2);
  }
  img.addEventListener("load", layout);
  img2.addEventListener("load", layout);

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
      if (m.can_annotate && csrf) {
        for (const [value, label] of Object.entries(MARK_TOOLS)) {
          const o = document.createElement("option");
          o.value = value; o.textContent = label;
          toolSel.append(o);
        }
        markText.hidden = false;
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
