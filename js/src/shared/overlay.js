// Attribution overlays: blending a colormapped 8-bit map over an RGB image at an opacity, a colorbar,
// searching class labels. Pure functions over typed arrays, so they run (and are tested) without a DOM.
import { colormapTable } from './colormaps.js';

/**
 * RGBA pixels of `rgb` (H x W x 3 uint8) with `gray` (H x W uint8) coloured by `colormap` blended over it:
 * out = (1 - opacity) * image + opacity * colour. Opacity 0 is the image, 1 the map alone.
 */
export function blendOverlay(rgb, gray, width, height, colormap, opacity) {
  const table = colormapTable(colormap);
  const alpha = Math.min(1, Math.max(0, Number(opacity) || 0));
  const keep = 1 - alpha;
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const entry = gray[i] * 3;
    rgba[i * 4] = keep * rgb[i * 3] + alpha * table[entry];
    rgba[i * 4 + 1] = keep * rgb[i * 3 + 1] + alpha * table[entry + 1];
    rgba[i * 4 + 2] = keep * rgb[i * 3 + 2] + alpha * table[entry + 2];
    rgba[i * 4 + 3] = 255;
  }
  return rgba;
}

/** RGBA pixels of a horizontal colorbar, `width` x `height`, 0 on the left and 255 on the right. */
export function colorbarPixels(colormap, width, height) {
  const table = colormapTable(colormap);
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let x = 0; x < width; x++) {
    const entry = Math.round((x * 255) / Math.max(1, width - 1)) * 3;
    for (let y = 0; y < height; y++) {
      const at = (y * width + x) * 4;
      rgba[at] = table[entry];
      rgba[at + 1] = table[entry + 1];
      rgba[at + 2] = table[entry + 2];
      rgba[at + 3] = 255;
    }
  }
  return rgba;
}

/**
 * Indices of `labels` matching `query` (case-insensitive), best first: exact, then prefix, then word
 * prefix, then anywhere; at most `limit`. An empty query matches nothing.
 */
export function searchLabels(labels, query, limit = 20) {
  const q = String(query ?? '').trim().toLowerCase();
  if (!q) return [];
  const ranked = [];
  labels.forEach((label, index) => {
    const text = String(label).toLowerCase();
    let rank = -1;
    if (text === q) rank = 0;
    else if (text.startsWith(q)) rank = 1;
    else if (text.split(/[\s,_-]+/).some((word) => word.startsWith(q))) rank = 2;
    else if (text.includes(q)) rank = 3;
    if (rank >= 0) ranked.push([rank, index]);
  });
  ranked.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return ranked.slice(0, limit).map(([, index]) => index);
}

/** The class index a typed label names exactly (case-insensitive), or -1. */
export function labelIndex(labels, text) {
  const q = String(text ?? '').trim().toLowerCase();
  return labels.findIndex((label) => String(label).toLowerCase() === q);
}
