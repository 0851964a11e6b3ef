// Painting class indices without anti-aliasing: a pixel is either inside the brush or not, so a
// label buffer only ever holds the ids that were painted (a canvas stroke would blend colours
// into values that are no class at all).

/**
 * Set every pixel whose centre lies within ``r`` of the segment (x0, y0)-(x1, y1) by calling
 * ``set(index)``; w, h bound the buffer. Coordinates are in pixels (pixel k spans [k, k+1)).
 */
export function stampSegment(w, h, x0, y0, x1, y1, r, set) {
  const minX = Math.max(0, Math.floor(Math.min(x0, x1) - r));
  const maxX = Math.min(w - 1, Math.ceil(Math.max(x0, x1) + r));
  const minY = Math.max(0, Math.floor(Math.min(y0, y1) - r));
  const maxY = Math.min(h - 1, Math.ceil(Math.max(y0, y1) + r));
  const dx = x1 - x0;
  const dy = y1 - y0;
  const len2 = dx * dx + dy * dy;
  const r2 = r * r;
  for (let y = minY; y <= maxY; y++) {
    const py = y + 0.5;
    for (let x = minX; x <= maxX; x++) {
      const px = x + 0.5;
      let t = len2 > 0 ? ((px - x0) * dx + (py - y0) * dy) / len2 : 0;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const ex = px - (x0 + t * dx);
      const ey = py - (y0 + t * dy);
      if (ex * ex + ey * ey <= r2) set(y * w + x);
    }
  }
}

/** The brush radius for a diameter of ``size`` pixels (size 1 paints exactly one pixel). */
export const radiusOf = (size) => Math.max(0.5, size / 2);

/**
 * Flood fill (4-connected) from (x, y): every pixel connected to it with the same ``labels``
 * value (and the same ``instances`` value, when given) is passed to ``set(index)``.
 * Returns the number of pixels filled.
 */
export function floodFill(w, h, labels, instances, x, y, set) {
  if (x < 0 || y < 0 || x >= w || y >= h) return 0;
  const start = y * w + x;
  const lab = labels[start];
  const ins = instances ? instances[start] : 0;
  const same = (i) => labels[i] === lab && (!instances || instances[i] === ins);
  const seen = new Uint8Array(w * h);
  const stack = [start];
  seen[start] = 1;
  let n = 0;
  while (stack.length) {
    const i = stack.pop();
    set(i);
    n++;
    const px = i % w;
    const py = (i - px) / w;
    if (px > 0 && !seen[i - 1] && same(i - 1)) { seen[i - 1] = 1; stack.push(i - 1); }
    if (px < w - 1 && !seen[i + 1] && same(i + 1)) { seen[i + 1] = 1; stack.push(i + 1); }
    if (py > 0 && !seen[i - w] && same(i - w)) { seen[i - w] = 1; stack.push(i - w); }
    if (py < h - 1 && !seen[i + w] && same(i + w)) { seen[i + w] = 1; stack.push(i + w); }
  }
  return n;
}
