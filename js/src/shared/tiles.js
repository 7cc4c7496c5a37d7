// Grids of small images (activation maps, filters, crops) drawn on one canvas from one packed atlas.
import { toTypedArray } from './arrays.js';
import { applyColormap } from './colormaps.js';
import { cellOrigin, gridLayout, packAtlas } from './grid.js';
import { drawNearest, rgbaToCanvas, rgbToImageData } from './images.js';

/** Source rect [x, y, w, h] of tile `index` in a packed atlas. */
export function tileRect(atlas, index) {
  const { x, y } = cellOrigin(atlas, index);
  return [x, y, atlas.cellWidth, atlas.cellHeight];
}

/** Size `canvas` to `layout` and draw each tile of `source` (laid out as `atlas`) into its cell. */
export function drawTileGrid(canvas, source, atlas, layout) {
  canvas.width = layout.width;
  canvas.height = layout.height;
  const ctx = canvas.getContext('2d'); // resized canvases start transparent: gaps show the page
  for (let index = 0; index < layout.count; index++) {
    const { x, y } = cellOrigin(layout, index);
    drawNearest(ctx, source, tileRect(atlas, index), [x, y, layout.cellWidth, layout.cellHeight]);
  }
  return ctx;
}

/**
 * Draw filter pictures [O, kh, kw, c] (c = 3: RGB; c = 1: gray through `colormap`, 128 = zero) as a grid about
 * `targetWidth` pixels wide. `values` may be a typed array of a sub-range of a larger message.
 */
export function drawFilterGrid(canvas, values, [count, tileHeight, tileWidth, depth], targetWidth, colormap) {
  const layout = gridLayout({ count, tileWidth, tileHeight, targetWidth });
  const atlas = packAtlas(values, { count, tileWidth, tileHeight, depth, cols: layout.cols });
  const rgba = depth === 3
    ? rgbToImageData(atlas.pixels, atlas.width, atlas.height)
    : applyColormap(atlas.pixels, atlas.width, atlas.height, colormap);
  drawTileGrid(canvas, rgbaToCanvas(rgba, atlas.width, atlas.height), atlas, layout);
}

/** drawFilterGrid for a whole filters message {data, shape: [O, kh, kw, c]}. */
export function drawFilterMessage(canvas, filters, targetWidth, colormap) {
  drawFilterGrid(canvas, toTypedArray(filters), filters.shape, targetWidth, colormap);
}
