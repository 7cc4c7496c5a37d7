// Geometry of the network map: where each box goes, which box a point hits, how an edge is routed, and short
// number formats. Pure functions, so they are unit-tested without a DOM.

export const BOX = { width: 210, height: 40, rankGap: 24, laneGap: 26, margin: 12 };

/** Short count: 950, 36.9 k, 11.7 M, 1.8 G. */
export function formatCount(value) {
  if (value === null || value === undefined) return '–';
  const steps = [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  for (const [size, suffix] of steps) {
    if (Math.abs(value) >= size) return `${(value / size).toFixed(value / size >= 100 ? 0 : 1)} ${suffix}`;
  }
  return String(value);
}

/** Box rectangles {x, y, width, height} of units placed by their (rank, lane), and the canvas size they need. */
export function boxLayout(units, box = BOX) {
  const boxes = units.map(({ rank, lane }) => ({
    x: box.margin + lane * (box.width + box.laneGap),
    y: box.margin + rank * (box.height + box.rankGap),
    width: box.width,
    height: box.height,
  }));
  const width = Math.max(0, ...boxes.map((b) => b.x + b.width)) + box.margin + 60;
  const height = Math.max(0, ...boxes.map((b) => b.y + b.height)) + box.margin;
  return { boxes, width, height };
}

/** Index of the box containing point {x, y}, or -1. */
export function unitAt(boxes, { x, y }) {
  return boxes.findIndex((b) => x >= b.x && x <= b.x + b.width && y >= b.y && y <= b.y + b.height);
}

/** Route of an edge between two boxes: a straight segment between neighbouring ranks, else a curve that bends
 * out to the right of the boxes it skips (a residual connection), as [start, control1, control2, end] points. */
export function edgeCurve(from, to) {
  const start = { x: from.x + from.width / 2, y: from.y + from.height };
  const end = { x: to.x + to.width / 2, y: to.y };
  const skips = to.y - (from.y + from.height) > from.height;
  if (!skips) return [start, start, end, end];
  const bend = Math.max(start.x, end.x) + from.width / 2 + 30;
  return [start, { x: bend, y: start.y + 20 }, { x: bend, y: end.y - 20 }, end];
}

/** Chromium's largest canvas: 32,767 px a side and 268,435,456 px in all; a larger canvas silently stays blank. */
export const MAX_CANVAS = { side: 32767, area: 268435456 };

/** The pixel ratio to draw a width x height (CSS px) graph at: the screen's, lowered so the canvas stays within
 * MAX_CANVAS (a fully expanded 400-layer map is 27,000 px tall: at a HiDPI ratio of 2 it would be blank). */
export function canvasScale(width, height, devicePixelRatio = 1, limits = MAX_CANVAS) {
  const bySide = limits.side / Math.max(width, height, 1);
  const byArea = Math.sqrt(limits.area / Math.max(width * height, 1));
  return Math.min(devicePixelRatio || 1, bySide, byArea);
}
