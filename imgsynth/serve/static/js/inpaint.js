// Inpaint mode: open a photo, paint the hole, fill it on the server, compare, download.
//
// The mask canvas has the photo's size; strokes are kept as vectors so undo/redo redraw them.
// History: each fill pushes the result (its PNG bytes and a bitmap) with the strokes that made
// its hole, so undo after a fill brings back the photo and the painted hole before it.

import * as api from "./api.js";
import { Viewport } from "./viewport.js";

const $ = (id) => document.getElementById(id);
const MASK_COLOUR = "rgb(255, 32, 96)";

export class InpaintMode {
  constructor(info) {
    this.info = info;
    this.stage = $("inpaint-stage");
    this.view = new Viewport(this.stage, { pixelatedFrom: 4 });
    this.photo = $("inpaint-photo");
    this.mask = $("inpaint-mask");
    this.mctx = this.mask.getContext("2d");
    this.cursorEl = this.stage.querySelector(".cursor");
    this.images = []; // [{bitmap, blob, strokes}] — [0] is the photo as opened
    this.strokes = [];
    this.redo = [];
    this.tool = "brush";
    this.size = 20;
    this.before = false;
    this.name = "photo";
    this.live = null; // the stroke being painted
    this.fillModels();
    this.wire();
  }

  fillModels() {
    const sel = $("inpaint-model");
    for (const m of this.info.models.filter((m) => m.task === "inpaint")) {
      const o = new Option(m.key + (m.network ? "" : " (classical)"), m.key, m.default, m.default);
      o.title = m.title;
      sel.append(o);
    }
  }

  wire() {
    $("inpaint-file").addEventListener("change", (e) => {
      const f = e.target.files[0];
      if (f) this.open(f, f.name);
      e.target.value = "";
    });
    for (const b of document.querySelectorAll("#inpaint .tool")) {
      b.addEventListener("click", () => this.setTool(b.dataset.tool));
    }
    $("inpaint-size").addEventListener("input", (e) => this.setSize(Number(e.target.value)));
    $("inpaint-undo").addEventListener("click", () => this.undo());
    $("inpaint-redo").addEventListener("click", () => this.redoStep());
    $("inpaint-clear").addEventListener("click", () => this.clear());
    $("inpaint-fill").addEventListener("click", () => this.fill());
    $("inpaint-compare").addEventListener("click", () => this.toggleBefore());
    $("inpaint-download").addEventListener("click", () => this.download());
    // drag and drop
    this.stage.addEventListener("dragover", (e) => { e.preventDefault(); this.stage.classList.add("dragover"); });
    this.stage.addEventListener("dragleave", () => this.stage.classList.remove("dragover"));
    this.stage.addEventListener("drop", (e) => {
      e.preventDefault();
      this.stage.classList.remove("dragover");
      const f = [...e.dataTransfer.files].find((x) => x.type.startsWith("image/"));
      if (f) this.open(f, f.name);
      else api.showError("drop an image file (PNG, JPEG, WebP, BMP or TIFF)");
    });
    // painting with pointer events (mouse, pen, touch alike)
    this.stage.addEventListener("pointerdown", (e) => this.down(e));
    this.stage.addEventListener("pointermove", (e) => this.move(e));
    this.stage.addEventListener("pointerup", (e) => this.up(e));
    this.stage.addEventListener("pointercancel", (e) => this.up(e));
    this.stage.addEventListener("pointerleave", () => { this.cursorEl.hidden = true; });
    this.view.onchange = () => { this.cursorEl.hidden = true; };
    this.updateButtons();
  }

  /** Paste handler (called by main for the active mode). */
  paste(e) {
    const item = [...(e.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
    if (!item) return false;
    this.open(item.getAsFile(), "pasted.png");
    return true;
  }

  async open(file, name) {
    api.clearError();
    const lim = this.info.limits;
    if (file.size > lim.max_upload_bytes) {
      api.showError(`${name} is ${(file.size / 1e6).toFixed(1)} MB, over this server's ${(lim.max_upload_bytes / 1e6).toFixed(0)} MB upload limit`);
      return;
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch (_) {
      api.showError(`${name}: the browser cannot read this file as an image`);
      return;
    }
    if (bitmap.width * bitmap.height > lim.max_pixels) {
      api.showError(`${name} is ${bitmap.width}x${bitmap.height} pixels, over this server's limit of ${lim.max_pixels.toLocaleString()} pixels`);
      return;
    }
    this.name = name.replace(/\.[^.]*$/, "") || "photo";
    this.images = [{ bitmap, blob: file, strokes: [] }];
    this.strokes = [];
    this.redo = [];
    this.before = false;
    this.stage.querySelector(".empty").hidden = true;
    this.view.setSize(bitmap.width, bitmap.height);
    this.setSize(Math.max(4, Math.round(Math.max(bitmap.width, bitmap.height) / 24)));
    $("inpaint-size").max = String(Math.max(50, Math.round(Math.max(bitmap.width, bitmap.height) / 2)));
    $("inpaint-info").textContent = `${name}: ${bitmap.width} × ${bitmap.height}`;
    this.render();
  }

  get current() { return this.images[this.images.length - 1]; }

  setTool(tool) {
    this.tool = tool;
    for (const b of document.querySelectorAll("#inpaint .tool")) b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
  }

  setSize(size) {
    this.size = Math.max(1, Math.min(Number($("inpaint-size").max), Math.round(size)));
    $("inpaint-size").value = String(this.size);
    $("inpaint-size-out").textContent = String(this.size);
  }

  grow(factor) { this.setSize(factor > 1 ? Math.max(this.size + 1, this.size * factor) : Math.min(this.size - 1, this.size * factor)); }

  // --- painting ---------------------------------------------------------------------------------
  down(e) {
    if (e.button !== 0 || !this.images.length || this.before || api.busy()) return;
    e.preventDefault();
    api.clearError();
    this.stage.focus();
    this.stage.setPointerCapture(e.pointerId);
    const p = this.view.toImage(e.clientX, e.clientY);
    this.live = { mode: this.tool, size: this.size, points: [[p.x, p.y]], id: e.pointerId };
    this.drawStroke(this.live, 0);
  }

  move(e) {
    if (this.images.length && !this.before) {
      this.cursorEl.hidden = false;
      this.view.cursor(this.cursorEl, e, this.size);
      this.stage.classList.add("paint");
    }
    if (!this.live || e.pointerId !== this.live.id) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
    const from = this.live.points.length - 1;
    for (const ev of events.length ? events : [e]) {
      const p = this.view.toImage(ev.clientX, ev.clientY);
      this.live.points.push([p.x, p.y]);
    }
    this.drawStroke(this.live, from);
  }

  up(e) {
    if (!this.live || e.pointerId !== this.live.id) return;
    const { id, ...stroke } = this.live;
    this.live = null;
    this.strokes.push(stroke);
    this.redo = [];
    this.updateButtons();
  }

  /** Draw ``s`` from point index ``from`` on (0: the whole stroke). */
  drawStroke(s, from) {
    const c = this.mctx;
    c.save();
    c.globalCompositeOperation = s.mode === "eraser" ? "destination-out" : "source-over";
    c.strokeStyle = c.fillStyle = MASK_COLOUR;
    c.lineWidth = s.size;
    c.lineCap = c.lineJoin = "round";
    const pts = s.points;
    if (pts.length === 1 || from === 0) {
      c.beginPath();
      c.arc(pts[0][0], pts[0][1], s.size / 2, 0, Math.PI * 2);
      c.fill();
    }
    if (pts.length > 1) {
      c.beginPath();
      c.moveTo(pts[Math.max(0, from)][0], pts[Math.max(0, from)][1]);
      for (let i = Math.max(1, from + 1); i < pts.length; i++) c.lineTo(pts[i][0], pts[i][1]);
      c.stroke();
    }
    c.restore();
  }

  render() {
    if (!this.images.length) return;
    const pc = this.photo.getContext("2d");
    pc.clearRect(0, 0, this.photo.width, this.photo.height);
    pc.drawImage((this.before ? this.images[0] : this.current).bitmap, 0, 0);
    this.mctx.clearRect(0, 0, this.mask.width, this.mask.height);
    for (const s of this.strokes) this.drawStroke(s, 0);
    this.stage.classList.toggle("before", this.before);
    this.updateButtons();
  }

  updateButtons() {
    const open = this.images.length > 0;
    $("inpaint-undo").disabled = !(this.strokes.length || this.images.length > 1);
    $("inpaint-redo").disabled = !this.redo.length;
    $("inpaint-clear").disabled = !this.strokes.length;
    $("inpaint-fill").disabled = !open || !this.strokes.length || api.busy();
    $("inpaint-compare").disabled = this.images.length < 2;
    $("inpaint-compare").setAttribute("aria-pressed", String(this.before));
    $("inpaint-compare").textContent = this.before ? "Showing before" : "Before / after";
    $("inpaint-download").disabled = this.images.length < 2;
  }

  undo() {
    if (this.live) return;
    if (this.strokes.length) {
      this.redo.push({ kind: "stroke", stroke: this.strokes.pop() });
    } else if (this.images.length > 1) {
      const top = this.images.pop();
      this.strokes = top.strokes;
      this.redo.push({ kind: "fill", entry: top });
    } else return;
    this.before = false;
    this.render();
  }

  redoStep() {
    const step = this.redo.pop();
    if (!step) return;
    if (step.kind === "stroke") this.strokes.push(step.stroke);
    else { this.images.push(step.entry); this.strokes = []; }
    this.render();
  }

  clear() {
    if (!this.strokes.length) return;
    // one undoable step: the strokes go to redo in order
    while (this.strokes.length) this.redo.push({ kind: "stroke", stroke: this.strokes.pop() });
    this.render();
  }

  toggleBefore() {
    if (this.images.length < 2) return;
    this.before = !this.before;
    this.render();
  }

  /** The painted hole as a black/white PNG of the photo's size (alpha >= 128 = hole). */
  async maskBlob() {
    const w = this.mask.width;
    const h = this.mask.height;
    const src = this.mctx.getImageData(0, 0, w, h).data;
    const out = new ImageData(w, h);
    const d = out.data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      const v = src[i + 3] >= 128 ? 255 : 0;
      n += v ? 1 : 0;
      d[i] = d[i + 1] = d[i + 2] = v;
      d[i + 3] = 255;
    }
    if (!n) return null;
    const c = new OffscreenCanvas(w, h);
    c.getContext("2d").putImageData(out, 0, 0);
    return c.convertToBlob({ type: "image/png" });
  }

  async fill() {
    if (!this.images.length) { api.showError("open a photo first"); return; }
    if (api.busy()) return;
    api.clearError();
    const mask = await this.maskBlob();
    if (!mask) { api.showError("paint over what should go first (the brush marks the hole)"); return; }
    const model = $("inpaint-model").value;
    const photo = this.current.blob;
    const strokes = this.strokes;
    $("inpaint-fill").disabled = true;
    try {
      const res = await api.runJob("/api/inpaint", () => {
        const f = new FormData();
        f.append("model", model);
        f.append("image", photo, "photo");
        f.append("mask", mask, "mask.png");
        return f;
      }, `filling with ${model}`);
      const bitmap = await createImageBitmap(res.blob);
      this.images.push({ bitmap, blob: res.blob, strokes });
      this.strokes = [];
      this.redo = [];
      this.before = false;
      api.noteSaved(res.saved);
      this.stage.dataset.result = String(this.images.length - 1); // a hook for tests and scripts
    } catch (err) {
      api.showError(err.message);
    } finally {
      this.render();
    }
  }

  download() {
    if (this.images.length < 2) return;
    api.download(this.current.blob, `${this.name}-inpainted.png`);
  }

  /** Keyboard shortcuts of this mode; returns true when the key was used. */
  key(e) {
    const k = e.key;
    const ctrl = e.ctrlKey || e.metaKey;
    if (ctrl && (k === "z" || k === "Z")) { e.shiftKey ? this.redoStep() : this.undo(); return true; }
    if (ctrl && (k === "y" || k === "Y")) { this.redoStep(); return true; }
    if (ctrl && (k === "s" || k === "S")) { this.download(); return true; }
    if (ctrl || e.altKey) return false;
    switch (k) {
      case "b": case "B": this.setTool("brush"); return true;
      case "e": case "E": this.setTool("eraser"); return true;
      case "[": this.grow(1 / 1.2); return true;
      case "]": this.grow(1.2); return true;
      case "Enter": this.fill(); return true;
      case "v": case "V": this.toggleBefore(); return true;
      case "o": case "O": $("inpaint-file").click(); return true;
      case "Delete": case "Backspace": this.clear(); return true;
      case "f": case "F": this.view.fit(); return true;
      case "+": case "=": this.view.zoomCenter(1.25); return true;
      case "-": case "_": this.view.zoomCenter(0.8); return true;
      default: return false;
    }
  }
}
