// Zoom and pan of a 2-D view: layout coordinates in [0, 1]² drawn into a canvas of width x height
// pixels. A view is {scale, tx, ty}: screen = base(p) * scale + t, where base fits [0, 1]² into the
// canvas with a margin. Pure functions, testable without a DOM.

export const MARGIN = 12;

/** The identity view. */
export function initialView() {
  return { scale: 1, tx: 0, ty: 0 };
}

/** Pixels per layout unit at scale 1, and the offset that centers [0, 1]² in the canvas. */
function base(width, height) {
  const size = Math.max(1, Math.min(width, height) - 2 * MARGIN);
  return { size, x0: (width - size) / 2, y0: (height - size) / 2 };
}

/** Screen pixel {x, y} of layout point (px, py). */
export function toScreen(view, width, height, px, py) {
  const { size, x0, y0 } = base(width, height);
  return { x: (x0 + px * size) * view.scale + view.tx, y: (y0 + py * size) * view.scale + view.ty };
}

/** Layout point {x, y} under screen pixel (sx, sy). */
export function toLayout(view, width, height, sx, sy) {
  const { size, x0, y0 } = base(width, height);
  return { x: ((sx - view.tx) / view.scale - x0) / size, y: ((sy - view.ty) / view.scale - y0) / size };
}

/** Layout units per screen pixel (for hit radii in pixels). */
export function unitsPerPixel(view, width, height) {
  return 1 / (base(width, height).size * view.scale);
}

/** The view zoomed by `factor` around screen point (sx, sy), which stays put; scale kept in [0.5, 200]. */
export function zoomAt(view, factor, sx, sy) {
  const scale = Math.min(200, Math.max(0.5, view.scale * factor));
  const applied = scale / view.scale;
  return { scale, tx: sx - (sx - view.tx) * applied, ty: sy - (sy - view.ty) * applied };
}

/** The view moved by (dx, dy) screen pixels. */
export function panBy(view, dx, dy) {
  return { ...view, tx: view.tx + dx, ty: view.ty + dy };
}
