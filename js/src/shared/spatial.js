// Finding points fast: a uniform bucket grid over points in [0, 1]² (stored as a Float32Array
// [x0, y0, x1, y1, ...]) for nearest-point hover and box selection, so 50,000 points stay responsive.

/** A bucket grid of about `perCell` points per cell over `points`. */
export function buildBuckets(points, perCell = 8) {
  const count = points.length / 2;
  const side = Math.max(1, Math.min(512, Math.round(Math.sqrt(count / perCell))));
  const heads = new Int32Array(side * side).fill(-1);
  const next = new Int32Array(count).fill(-1);
  for (let i = count - 1; i >= 0; i--) {
    const cell = cellOf(side, points[2 * i], points[2 * i + 1]);
    if (cell < 0) continue; // NaN: not placed
    next[i] = heads[cell];
    heads[cell] = i;
  }
  return { side, heads, next, points };
}

function clampIndex(side, value) {
  return Math.min(side - 1, Math.max(0, Math.floor(value * side)));
}

function cellOf(side, x, y) {
  if (!Number.isFinite(x) || !Number.isFinite(y)) return -1;
  return clampIndex(side, y) * side + clampIndex(side, x);
}

/** Index of the point nearest (x, y) within `radius` (layout units), or -1. Ties go to the lower index. */
export function nearest(buckets, x, y, radius) {
  const { side, heads, next, points } = buckets;
  let best = -1;
  let bestDistance = radius * radius;
  const [c0, c1] = [clampIndex(side, x - radius), clampIndex(side, x + radius)];
  const [r0, r1] = [clampIndex(side, y - radius), clampIndex(side, y + radius)];
  for (let row = r0; row <= r1; row++) {
    for (let col = c0; col <= c1; col++) {
      for (let i = heads[row * side + col]; i >= 0; i = next[i]) {
        const d = (points[2 * i] - x) ** 2 + (points[2 * i + 1] - y) ** 2;
        if (d < bestDistance || (d === bestDistance && best >= 0 && i < best)) {
          best = i;
          bestDistance = d;
        }
      }
    }
  }
  return best;
}

/** Indexes (ascending) of the points inside the box spanned by (x0, y0) and (x1, y1), in layout units. */
export function inBox(points, x0, y0, x1, y1) {
  const [left, right] = [Math.min(x0, x1), Math.max(x0, x1)];
  const [top, bottom] = [Math.min(y0, y1), Math.max(y0, y1)];
  const found = [];
  for (let i = 0; i < points.length / 2; i++) {
    const x = points[2 * i];
    const y = points[2 * i + 1];
    if (x >= left && x <= right && y >= top && y <= bottom) found.push(i);
  }
  return found;
}
