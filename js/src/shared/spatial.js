// Finding points fast: a uniform bucket grid over points in [0, 1]² (stored as a Float32Array
// [x0, y0, x1, y1, ...]) for nearest-point hover, and box and lasso (polygon) selection, so 50,000 points
// stay responsive.

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

/**
 * Whether (x, y) lies inside `polygon` (a flat [x0, y0, x1, y1, ...] of vertices, closed implicitly from the
 * last vertex back to the first), by the even-odd rule: a ray from the point to +x crosses the outline an odd
 * number of times. Works for concave and self-crossing outlines, which a freehand lasso often is. Each edge
 * counts as half-open in y, so a ray through a vertex is counted once and a polygon's points are decided the
 * same way as its neighbours'.
 */
export function insidePolygon(polygon, x, y) {
  const n = polygon.length / 2;
  let inside = false;
  for (let i = 0, j = n - 1; i < n; j = i++) {
    const [xi, yi, xj, yj] = [polygon[2 * i], polygon[2 * i + 1], polygon[2 * j], polygon[2 * j + 1]];
    if ((yi > y) !== (yj > y) && x < xi + ((y - yi) * (xj - xi)) / (yj - yi)) inside = !inside;
  }
  return inside;
}

/** Indexes (ascending) of the points inside `polygon` (see insidePolygon); fewer than 3 vertices select none. */
export function inPolygon(points, polygon) {
  if (polygon.length < 6) return [];
  let [left, top, right, bottom] = [Infinity, Infinity, -Infinity, -Infinity];
  for (let k = 0; k < polygon.length; k += 2) {
    [left, right] = [Math.min(left, polygon[k]), Math.max(right, polygon[k])];
    [top, bottom] = [Math.min(top, polygon[k + 1]), Math.max(bottom, polygon[k + 1])];
  }
  // the bounding box rejects most points before the per-edge test
  return inBox(points, left, top, right, bottom).filter((i) => insidePolygon(polygon, points[2 * i], points[2 * i + 1]));
}
