// Geometry and colouring for occlusion views: where the occluder square sits (the same rounding as Python's
// methods.occlusion.centered_box), where a [ny, nx] occlusion map lies over the image, float maps to gray
// bytes, a categorical palette for "which class wins where" maps, and the readout line.

import { applyColormap } from './colormaps.js';

/** Tableau 10, as matplotlib's tab10 (the Python export uses the same colours). */
export const PALETTE = [
  [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
  [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
];

/** The occluder of side `patch` centred at (x, y), clipped to an image of [height, width]: {y0, x0, y1, x1}. */
export function centeredBox(x, y, patch, [height, width]) {
  const top = Math.floor(y - patch / 2 + 0.5);
  const left = Math.floor(x - patch / 2 + 0.5);
  return {
    y0: Math.max(top, 0), x0: Math.max(left, 0),
    y1: Math.min(top + patch, height), x1: Math.min(left + patch, width),
  };
}

/** (x, y) clamped into an image of [height, width]. */
export function clampPoint(x, y, [height, width]) {
  return { x: Math.min(Math.max(x, 0), width), y: Math.min(Math.max(y, 0), height) };
}

/**
 * Where an [ny, nx] occlusion map goes on the image, in image pixels: cell (i, j) is centred on the centre of
 * the occluder at position (i, j) (row i*stride + patch/2) and is `stride` pixels wide.
 */
export function mapPlacement(patch, stride, ny, nx) {
  const offset = patch / 2 - stride / 2;
  return { left: offset, top: offset, width: nx * stride, height: ny * stride };
}

/** Uint8Array gray bytes of float `values`: low -> 0, high -> 255, clipped; NaN -> 0. */
export function valuesToGray(values, low, high) {
  const span = high - low || 1;
  const gray = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    gray[i] = Number.isNaN(value) ? 0 : Math.round(Math.min(Math.max((value - low) / span, 0), 1) * 255);
  }
  return gray;
}

/** RGBA pixels of a float map through a colormap, opaque (opacity is applied when drawing). */
export function heatmapRGBA(values, width, height, low, high, colormap) {
  return applyColormap(valuesToGray(values, low, high), width, height, colormap);
}

/**
 * Colours for a map of class indices: the most frequent class gets the first palette colour, and so on
 * (classes beyond the palette share gray). Returns {rgba, legend: [{index, color, count}]}; `strengths`
 * (0..1, optional) darkens weakly winning cells.
 */
export function classColors(classes, strengths, width, height) {
  const counts = new Map();
  for (const index of classes) counts.set(index, (counts.get(index) ?? 0) + 1);
  const ranked = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  const colorOf = new Map(ranked.map(([index], rank) => [index, PALETTE[Math.min(rank, PALETTE.length - 1)]]));
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const color = colorOf.get(classes[i]) ?? PALETTE[PALETTE.length - 1];
    const strength = strengths ? Math.sqrt(Math.min(Math.max(strengths[i], 0), 1)) : 1;
    rgba[i * 4] = color[0] * strength;
    rgba[i * 4 + 1] = color[1] * strength;
    rgba[i * 4 + 2] = color[2] * strength;
    rgba[i * 4 + 3] = 255;
  }
  const legend = ranked.slice(0, PALETTE.length).map(([index, count], rank) => ({ index, count, color: PALETTE[rank] }));
  return { rgba, legend };
}

/** Fixed-point percent: 0.4123 -> "41.2%". */
export function percent(probability) {
  return Number.isFinite(probability) ? `${(probability * 100).toFixed(1)}%` : '–';
}

/** The readout line of an answer from Python. */
export function readoutText(readout) {
  if (!readout || readout.probability === undefined) return '';
  const under = readout.frames ? `the tube (frames ${readout.frames[0]}–${readout.frames[1] - 1})` : 'the square';
  const drop = readout.drop === undefined ? '' : `, score drop ${Number(readout.drop).toPrecision(3)}`;
  return `P(${readout.label}) = ${percent(readout.probability)} under ${under} (unoccluded ${percent(readout.unoccluded)}${drop}); ` +
    `top-1 there: ${readout.top_label} ${percent(readout.top_probability)}`;
}
