// Geometry of equal-size tiles laid out row by row in one image: sizing a grid to a target width,
// where a cell is, which cell a point hits, and packing tiles into one atlas image.
// A "layout" is {count, cols, rows, cellWidth, cellHeight, gap, width, height}.

/**
 * Layout of `count` tiles of tileWidth x tileHeight in ceil(sqrt(count)) columns, scaled to about
 * `targetWidth` pixels: by a whole factor when tiles are smaller than their room, else shrunk.
 */
export function gridLayout({ count, tileWidth, tileHeight, targetWidth, gap = 1 }) {
  const cols = Math.max(1, Math.ceil(Math.sqrt(count)));
  const room = (targetWidth - (cols - 1) * gap) / cols;
  const scale = room >= tileWidth ? Math.floor(room / tileWidth) : room / tileWidth;
  const cellWidth = Math.max(1, Math.floor(tileWidth * scale));
  const cellHeight = Math.max(1, Math.floor(tileHeight * scale));
  return withSize({ count, cols, cellWidth, cellHeight, gap });
}

function withSize(layout) {
  const rows = Math.ceil(layout.count / layout.cols);
  const width = layout.cols * layout.cellWidth + (layout.cols - 1) * layout.gap;
  const height = Math.max(0, rows * layout.cellHeight + (rows - 1) * layout.gap);
  return { ...layout, rows, width, height };
}

/** Top-left pixel {x, y} of cell `index`. */
export function cellOrigin(layout, index) {
  const col = index % layout.cols;
  const row = Math.floor(index / layout.cols);
  return { x: col * (layout.cellWidth + layout.gap), y: row * (layout.cellHeight + layout.gap) };
}

/** Index of the cell under pixel (x, y), or -1 for gaps, empty cells and outside. */
export function cellAt(layout, x, y) {
  const pitchX = layout.cellWidth + layout.gap;
  const pitchY = layout.cellHeight + layout.gap;
  const col = Math.floor(x / pitchX);
  const row = Math.floor(y / pitchY);
  if (x < 0 || y < 0 || col >= layout.cols || x - col * pitchX >= layout.cellWidth || y - row * pitchY >= layout.cellHeight) {
    return -1;
  }
  const index = row * layout.cols + col;
  return index < layout.count ? index : -1;
}

/**
 * Pack `count` tiles stored one after another as [tileHeight, tileWidth, depth] into one
 * atlas image of `cols` columns, no gaps. Returns the atlas layout plus its `pixels`.
 */
export function packAtlas(values, { count, tileWidth, tileHeight, depth, cols }) {
  const atlas = withSize({ count, cols, cellWidth: tileWidth, cellHeight: tileHeight, gap: 0 });
  const pixels = new Uint8Array(atlas.width * atlas.height * depth);
  const rowLength = tileWidth * depth;
  for (let index = 0; index < count; index++) {
    const { x, y } = cellOrigin(atlas, index);
    for (let row = 0; row < tileHeight; row++) {
      const from = (index * tileHeight + row) * rowLength;
      pixels.set(values.subarray(from, from + rowLength), ((y + row) * atlas.width + x) * depth);
    }
  }
  return { ...atlas, pixels };
}
