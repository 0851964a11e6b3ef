// Zoom and pan of a stack of canvases inside a stage: the canvases keep their pixel size, one CSS
// transform on their wrapper places them. Wheel zooms about the pointer; Space + drag or the
// middle button pans. Followers (another stage showing a same-size picture) copy the transform.

export class Viewport {
  constructor(stage, { pixelatedFrom = 2 } = {}) {
    this.stage = stage;
    this.pixelatedFrom = pixelatedFrom; // zoom from which pixels show as squares
    this.wrap = stage.querySelector(".wrap");
    this.w = 0;
    this.h = 0;
    this.scale = 1;
    this.tx = 0;
    this.ty = 0;
    this.followers = [];
    this.space = false;
    this.onchange = null;
    let pan = null;
    stage.addEventListener("wheel", (e) => {
      if (!this.w) return;
      e.preventDefault();
      this.zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX, e.clientY);
    }, { passive: false });
    stage.addEventListener("pointerdown", (e) => {
      if (e.button === 1 || (e.button === 0 && this.space)) {
        e.preventDefault();
        e.stopImmediatePropagation();
        pan = { x: e.clientX, y: e.clientY, id: e.pointerId };
        stage.setPointerCapture(e.pointerId);
        stage.classList.add("panning");
      }
    }, { capture: true });
    stage.addEventListener("pointermove", (e) => {
      if (pan && e.pointerId === pan.id) {
        this.panBy(e.clientX - pan.x, e.clientY - pan.y);
        pan.x = e.clientX;
        pan.y = e.clientY;
        e.stopImmediatePropagation();
      }
    }, { capture: true });
    const end = (e) => {
      if (pan && e.pointerId === pan.id) {
        pan = null;
        stage.classList.remove("panning");
        e.stopImmediatePropagation();
      }
    };
    stage.addEventListener("pointerup", end, { capture: true });
    stage.addEventListener("pointercancel", end, { capture: true });
    stage.addEventListener("auxclick", (e) => e.preventDefault());
    new ResizeObserver(() => { if (this.w && this.autoFit) this.fit(); }).observe(stage);
  }

  setSpace(on) {
    this.space = on;
    this.stage.classList.toggle("space", on);
  }

  /** New content of w x h pixels: size the canvases and fit them in the stage. */
  setSize(w, h) {
    this.w = w;
    this.h = h;
    for (const c of this.wrap.querySelectorAll("canvas")) {
      if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
      c.style.width = `${w}px`;
      c.style.height = `${h}px`;
    }
    this.wrap.style.width = `${w}px`;
    this.wrap.style.height = `${h}px`;
    this.autoFit = true; // a hidden stage fits when it first gets a size
    this.fit();
  }

  fit() {
    const r = this.stage.getBoundingClientRect();
    if (!this.w || !r.width || !r.height) return;
    const margin = 16;
    let s = Math.min((r.width - 2 * margin) / this.w, (r.height - 2 * margin) / this.h);
    if (s > 1) s = Math.max(1, Math.floor(s)); // whole multiples keep small label maps crisp
    this.scale = Math.max(s, 0.01);
    this.tx = (r.width - this.w * this.scale) / 2;
    this.ty = (r.height - this.h * this.scale) / 2;
    this.autoFit = true;
    this.apply();
  }

  zoomAt(factor, clientX, clientY) {
    const r = this.stage.getBoundingClientRect();
    const x = clientX - r.left;
    const y = clientY - r.top;
    const s = Math.min(64, Math.max(0.02, this.scale * factor));
    this.tx = x - (x - this.tx) * (s / this.scale);
    this.ty = y - (y - this.ty) * (s / this.scale);
    this.scale = s;
    this.autoFit = false;
    this.apply();
  }

  zoomCenter(factor) {
    const r = this.stage.getBoundingClientRect();
    this.zoomAt(factor, r.left + r.width / 2, r.top + r.height / 2);
  }

  panBy(dx, dy) {
    this.tx += dx;
    this.ty += dy;
    this.autoFit = false;
    this.apply();
  }

  apply() {
    const t = `translate(${this.tx}px, ${this.ty}px) scale(${this.scale})`;
    for (const v of [this, ...this.followers]) {
      v.wrap.style.transform = t;
      v.stage.classList.toggle("pixelated", this.scale >= this.pixelatedFrom);
    }
    if (this.onchange) this.onchange();
  }

  /** Follow another stage's wrapper (same content size): it mirrors every zoom and pan. */
  follow(stage) {
    const wrap = stage.querySelector(".wrap");
    this.followers.push({ stage, wrap });
    this.apply();
  }

  /** Client coordinates -> content pixel coordinates (floats; may fall outside the content). */
  toImage(clientX, clientY) {
    const r = this.stage.getBoundingClientRect();
    return { x: (clientX - r.left - this.tx) / this.scale, y: (clientY - r.top - this.ty) / this.scale };
  }

  /** Place a round brush cursor of ``size`` content pixels at the pointer. */
  cursor(el, e, size) {
    const r = this.stage.getBoundingClientRect();
    const d = Math.max(4, size * this.scale);
    el.style.width = `${d}px`;
    el.style.height = `${d}px`;
    el.style.left = `${e.clientX - r.left}px`;
    el.style.top = `${e.clientY - r.top}px`;
  }
}
