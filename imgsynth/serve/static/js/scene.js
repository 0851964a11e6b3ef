// Paint-a-scene mode: paint class ids into a label buffer, synthesize a picture from it.
//
// The buffer (one byte per pixel: a palette id) is what the server gets, never the coloured
// preview. Models that read instance maps also get a 16-bit buffer of painted objects: with
// "new object per stroke" on, each stroke or fill is one new object; otherwise 0 (stuff).

import * as api from "./api.js";
import { floodFill, radiusOf, stampSegment } from "./raster.js";
import { Viewport } from "./viewport.js";

const $ = (id) => document.getElementById(id);
const HISTORY = 60;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export class SceneMode {
  constructor(info) {
    this.models = info.models.filter((m) => m.task === "translate");
    this.info = info;
    this.stage = $("scene-stage");
    this.view = new Viewport(this.stage);
    this.view.follow($("scene-result-stage"));
    this.canvas = $("scene-labels");
    this.ctx = this.canvas.getContext("2d");
    this.result = $("scene-result");
    this.cursorEl = this.stage.querySelector(".cursor");
    this.tool = "brush";
    this.size = 4;
    this.cls = 0;
    this.history = [];
    this.redo = [];
    this.nextInstance = 1;
    this.resultBlob = null;
    this.style = null;
    this.live = null;
    this.pending = 0;
    const sel = $("scene-model");
    for (const m of this.models) {
      const o = new Option(m.key, m.key, m.default, m.default);
      o.title = m.title;
      sel.append(o);
    }
    this.wire();
    if (this.models.length) this.setModel(sel.value || this.models[0].key);
  }

  wire() {
    $("scene-model").addEventListener("change", (e) => this.setModel(e.target.value));
    for (const b of document.querySelectorAll("#scene .tool")) b.addEventListener("click", () => this.setTool(b.dataset.tool));
    $("scene-size").addEventListener("input", (e) => this.setSize(Number(e.target.value)));
    $("scene-undo").addEventListener("click", () => this.undo());
    $("scene-redo").addEventListener("click", () => this.redoStep());
    $("scene-clear").addEventListener("click", () => this.clear());
    $("scene-new").addEventListener("click", () => this.newCanvas(Number($("scene-width").value), Number($("scene-height").value)));
    $("scene-synth").addEventListener("click", () => this.synthesize());
    $("scene-download").addEventListener("click", () => this.download());
    $("scene-instance").addEventListener("change", () => this.showCurrent());
    $("scene-filter").addEventListener("input", () => this.renderPalette());
    $("scene-file").addEventListener("change", (e) => {
      const f = e.target.files[0];
      if (f) this.openLabels(f);
      e.target.value = "";
    });
    $("scene-style").addEventListener("change", (e) => {
      this.style = e.target.files[0] || null;
      $("scene-style-name").textContent = this.style ? this.style.name : "none";
    });
    this.stage.addEventListener("pointerdown", (e) => this.down(e));
    this.stage.addEventListener("pointermove", (e) => this.move(e));
    this.stage.addEventListener("pointerup", (e) => this.up(e));
    this.stage.addEventListener("pointercancel", (e) => this.up(e));
    this.stage.addEventListener("pointerleave", () => { this.cursorEl.hidden = true; });
    $("scene-result-stage").addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = $("scene-result-stage").getBoundingClientRect();
      const s = this.stage.getBoundingClientRect();
      this.view.zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left + s.left, e.clientY - r.top + s.top);
    }, { passive: false });
  }

  get model() { return this.models.find((m) => m.key === $("scene-model").value); }

  setModel(key) {
    $("scene-model").value = key;
    const m = this.model;
    this.lut = new Uint8Array(256 * 3);
    this.valid = new Uint8Array(256);
    for (const c of m.classes) {
      this.lut.set(c.color, c.id * 3);
      this.valid[c.id] = 1;
    }
    $("scene-instance-row").hidden = !m.instances;
    $("scene-style-row").hidden = !m.style;
    if (!m.style) { this.style = null; $("scene-style-name").textContent = "none"; }
    this.cls = (m.classes.find((c) => c.id !== m.eraser) || m.classes[0]).id;
    this.renderPalette();
    // keep the painting when every painted id is a class of the new model
    const keep = this.labels && this.palette === m.palette && this.labels.every((v) => this.valid[v]);
    this.palette = m.palette;
    if (!keep) this.newCanvas(m.width, m.height);
    else this.render();
  }

  newCanvas(w, h) {
    const lim = this.info.limits;
    if (!(w >= 1 && h >= 1 && w <= lim.max_side && h <= lim.max_side && w * h <= lim.max_pixels)) {
      api.showError(`a canvas must be 1 to ${lim.max_side} pixels a side and at most ${lim.max_pixels.toLocaleString()} pixels`);
      return;
    }
    if (this.labels) this.push();
    this.setBuffers(w, h, new Uint8Array(w * h).fill(this.model.eraser), new Uint16Array(w * h));
  }

  setBuffers(w, h, labels, instances) {
    this.w = w;
    this.h = h;
    this.labels = labels;
    this.instances = instances;
    $("scene-width").value = String(w);
    $("scene-height").value = String(h);
    this.view.setSize(w, h);
    this.result.width = w;
    this.result.height = h;
    this.result.style.width = `${w}px`;
    this.result.style.height = `${h}px`;
    const wrap = this.result.parentElement;
    wrap.style.width = `${w}px`;
    wrap.style.height = `${h}px`;
    this.view.apply();
    this.setSize(Math.max(1, Math.round(Math.min(w, h) / 8)));
    $("scene-size").max = String(Math.max(8, Math.round(Math.max(w, h) / 2)));
    this.clearResult();
    this.render();
  }

  clearResult() {
    this.resultBlob = null;
    this.result.getContext("2d").clearRect(0, 0, this.result.width, this.result.height);
    $("scene-result-stage").querySelector(".empty").hidden = false;
    this.updateButtons();
  }

  renderPalette() {
    const m = this.model;
    const list = $("scene-classes");
    const q = $("scene-filter").value.trim().toLowerCase();
    list.replaceChildren();
    let n = 0;
    for (const c of m.classes) {
      if (q && !c.name.toLowerCase().includes(q) && String(c.id) !== q) continue;
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.id = String(c.id);
      b.setAttribute("aria-pressed", String(c.id === this.cls));
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = `rgb(${c.color.join(",")})`;
      const name = document.createElement("span");
      name.textContent = c.name;
      const key = document.createElement("span");
      key.className = "key";
      n++;
      key.textContent = n <= 9 ? `${n}` : "";
      key.title = n <= 9 ? `key ${n}` : "";
      b.title = `${c.name}: class id ${c.id}`;
      b.append(sw, name, key);
      b.addEventListener("click", () => this.setClass(c.id));
      li.append(b);
      list.append(li);
    }
    this.showCurrent();
  }

  setClass(id) {
    this.cls = id;
    if (this.tool === "eraser") this.setTool("brush");
    for (const b of $("scene-classes").querySelectorAll("button")) b.setAttribute("aria-pressed", String(Number(b.dataset.id) === id));
    this.showCurrent();
  }

  showCurrent() {
    const m = this.model;
    const c = m.classes.find((x) => x.id === this.cls);
    const obj = m.instances && $("scene-instance").checked ? ", a new object per stroke" : "";
    $("scene-current").textContent = c ? `painting ${c.name} (id ${c.id})${obj}` : "";
  }

  setTool(tool) {
    this.tool = tool;
    for (const b of document.querySelectorAll("#scene .tool")) b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
  }

  setSize(size) {
    this.size = Math.max(1, Math.min(Number($("scene-size").max), Math.round(size)));
    $("scene-size").value = String(this.size);
    $("scene-size-out").textContent = String(this.size);
  }

  grow(factor) { this.setSize(factor > 1 ? Math.max(this.size + 1, this.size * factor) : Math.min(this.size - 1, this.size * factor)); }

  // --- history ------------------------------------------------------------------------------------
  snapshot() { return { w: this.w, h: this.h, labels: this.labels.slice(), instances: this.instances.slice() }; }

  push() {
    this.history.push(this.snapshot());
    if (this.history.length > HISTORY) this.history.shift();
    this.redo = [];
  }

  restore(s) { this.setBuffers(s.w, s.h, s.labels, s.instances); }

  undo() {
    if (this.live || !this.history.length) return;
    this.redo.push(this.snapshot());
    this.restore(this.history.pop());
  }

  redoStep() {
    if (!this.redo.length) return;
    this.history.push(this.snapshot());
    this.restore(this.redo.pop());
  }

  clear() {
    this.push();
    this.labels.fill(this.model.eraser);
    this.instances.fill(0);
    this.render();
  }

  // --- painting -----------------------------------------------------------------------------------
  paintValue() {
    const m = this.model;
    if (this.tool === "eraser") return { cls: m.eraser, inst: 0 };
    const inst = m.instances && $("scene-instance").checked ? this.nextInstance : 0;
    return { cls: this.cls, inst };
  }

  down(e) {
    if (e.button !== 0 || !this.labels) return;
    e.preventDefault();
    api.clearError();
    this.stage.focus();
    const p = this.view.toImage(e.clientX, e.clientY);
    if (e.altKey) { // pick the class under the pointer
      const x = Math.floor(p.x);
      const y = Math.floor(p.y);
      if (x >= 0 && y >= 0 && x < this.w && y < this.h) this.setClass(this.labels[y * this.w + x]);
      return;
    }
    this.push();
    const v = this.paintValue();
    if (v.inst) this.nextInstance = this.nextInstance >= 65535 ? 1 : this.nextInstance + 1;
    const set = (i) => { this.labels[i] = v.cls; this.instances[i] = v.inst; };
    if (this.tool === "bucket") {
      floodFill(this.w, this.h, this.labels, this.model.instances ? this.instances : null, Math.floor(p.x), Math.floor(p.y), set);
      this.render();
      this.strokeDone();
      return;
    }
    this.stage.setPointerCapture(e.pointerId);
    this.live = { id: e.pointerId, last: p, set };
    stampSegment(this.w, this.h, p.x, p.y, p.x, p.y, radiusOf(this.size), set);
    this.render();
  }

  move(e) {
    if (this.labels) {
      this.cursorEl.hidden = this.tool === "bucket";
      this.view.cursor(this.cursorEl, e, this.size);
      this.stage.classList.add("paint");
    }
    if (!this.live || e.pointerId !== this.live.id) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) {
      const p = this.view.toImage(ev.clientX, ev.clientY);
      stampSegment(this.w, this.h, this.live.last.x, this.live.last.y, p.x, p.y, radiusOf(this.size), this.live.set);
      this.live.last = p;
    }
    this.render();
  }

  up(e) {
    if (!this.live || e.pointerId !== this.live.id) return;
    this.live = null;
    this.strokeDone();
  }

  strokeDone() {
    this.updateButtons();
    if ($("scene-live").checked) this.synthesize(true);
  }

  render() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  /** The coloured preview (display only): palette colours, object outlines darkened. */
  draw() {
    const { w, h, labels, instances, lut } = this;
    const img = this.ctx.createImageData(w, h);
    const d = img.data;
    const outline = !!this.model.instances;
    for (let i = 0, j = 0; i < labels.length; i++, j += 4) {
      const k = labels[i] * 3;
      let f = 1;
      if (outline && instances[i]) {
        const x = i % w;
        const v = instances[i];
        if ((x > 0 && instances[i - 1] !== v) || (x < w - 1 && instances[i + 1] !== v)
            || (i >= w && instances[i - w] !== v) || (i + w < labels.length && instances[i + w] !== v)) f = 0.55;
      }
      d[j] = lut[k] * f;
      d[j + 1] = lut[k + 1] * f;
      d[j + 2] = lut[k + 2] * f;
      d[j + 3] = 255;
    }
    this.ctx.putImageData(img, 0, 0);
    this.stage.dataset.draws = String(Number(this.stage.dataset.draws || 0) + 1); // a hook for tests
    this.updateButtons();
  }

  updateButtons() {
    $("scene-undo").disabled = !this.history.length;
    $("scene-redo").disabled = !this.redo.length;
    $("scene-synth").disabled = !this.labels;
    $("scene-download").disabled = !this.resultBlob;
  }

  async openLabels(file) {
    api.clearError();
    if (file.size > this.info.limits.max_upload_bytes) {
      api.showError(`${file.name} is over this server's upload limit`);
      return;
    }
    try {
      const f = new FormData();
      f.append("model", this.model.key);
      f.append("file", file, "labels");
      const res = await api.postJSON("/api/labels", f);
      const bytes = Uint8Array.from(atob(res.labels), (ch) => ch.charCodeAt(0));
      this.push();
      this.setBuffers(res.width, res.height, bytes, new Uint16Array(res.width * res.height));
    } catch (err) {
      api.showError(`${file.name}: ${err.message}`);
    }
  }

  instanceBytes() {
    if (LITTLE_ENDIAN) return new Uint8Array(this.instances.buffer.slice(0));
    const out = new Uint8Array(this.instances.length * 2);
    const dv = new DataView(out.buffer);
    this.instances.forEach((v, i) => dv.setUint16(2 * i, v, true));
    return out;
  }

  async synthesize(quiet = false) {
    if (!this.labels) return;
    if (api.busy()) { if (!quiet) api.showError("a job is running; wait for it to finish"); return; }
    api.clearError();
    const m = this.model;
    const labels = this.labels.slice();
    const inst = m.instances ? this.instanceBytes() : null;
    const { w, h } = this;
    const style = m.style ? this.style : null;
    const seed = $("scene-seed").value || "0";
    try {
      const res = await api.runJob("/api/synthesize", () => {
        const f = new FormData();
        f.append("model", m.key);
        f.append("width", String(w));
        f.append("height", String(h));
        f.append("labels", new Blob([labels], { type: "application/octet-stream" }), "labels");
        if (inst) f.append("instances", new Blob([inst], { type: "application/octet-stream" }), "instances");
        if (style) f.append("style", style, "style");
        f.append("seed", seed);
        return f;
      }, `synthesizing with ${m.key}`);
      const bitmap = await createImageBitmap(res.blob);
      this.resultBlob = res.blob;
      const c = this.result.getContext("2d");
      c.clearRect(0, 0, this.result.width, this.result.height);
      c.drawImage(bitmap, 0, 0, this.result.width, this.result.height);
      $("scene-result-stage").querySelector(".empty").hidden = true;
      $("scene-result-stage").dataset.results = String(Number($("scene-result-stage").dataset.results || 0) + 1);
      api.noteSaved(res.saved);
    } catch (err) {
      api.showError(err.message);
    } finally {
      this.updateButtons();
    }
  }

  download() {
    if (this.resultBlob) api.download(this.resultBlob, `${this.model.key.replace(/[^A-Za-z0-9._-]+/g, "-")}-scene.png`);
  }

  /** Keyboard shortcuts of this mode; returns true when the key was used. */
  key(e) {
    const k = e.key;
    const ctrl = e.ctrlKey || e.metaKey;
    if (ctrl && (k === "z" || k === "Z")) { e.shiftKey ? this.redoStep() : this.undo(); return true; }
    if (ctrl && (k === "y" || k === "Y")) { this.redoStep(); return true; }
    if (ctrl && (k === "s" || k === "S")) { this.download(); return true; }
    if (ctrl || e.altKey) return false;
    if (/^[1-9]$/.test(k)) {
      const b = $("scene-classes").querySelectorAll("button")[Number(k) - 1];
      if (b) this.setClass(Number(b.dataset.id));
      return true;
    }
    switch (k) {
      case "b": case "B": this.setTool("brush"); return true;
      case "e": case "E": this.setTool("eraser"); return true;
      case "g": case "G": this.setTool("bucket"); return true;
      case "i": case "I":
        if (this.model.instances) { $("scene-instance").checked = !$("scene-instance").checked; this.showCurrent(); }
        return true;
      case "[": this.grow(1 / 1.2); return true;
      case "]": this.grow(1.2); return true;
      case "Enter": this.synthesize(); return true;
      case "o": case "O": $("scene-file").click(); return true;
      case "Delete": case "Backspace": this.clear(); return true;
      case "f": case "F": this.view.fit(); return true;
      case "+": case "=": this.view.zoomCenter(1.25); return true;
      case "-": case "_": this.view.zoomCenter(0.8); return true;
      default: return false;
    }
  }
}
