import { describe, expect, it } from 'vitest';
import { cellAt, cellOrigin, gridLayout, packAtlas } from '../src/shared/grid.js';

describe('gridLayout', () => {
  it('uses ceil(sqrt(C)) columns and a whole scale factor for small tiles', () => {
    const layout = gridLayout({ count: 16, tileWidth: 28, tileHeight: 28, targetWidth: 640 });
    expect(layout).toMatchObject({ cols: 4, rows: 4, cellWidth: 140, cellHeight: 140, gap: 1 });
    expect(layout.width).toBe(4 * 140 + 3);
    expect(layout.width).toBeLessThanOrEqual(640);
  });

  it('shrinks tiles that do not fit', () => {
    const layout = gridLayout({ count: 512, tileWidth: 56, tileHeight: 56, targetWidth: 640 });
    expect(layout.cols).toBe(23);
    expect(layout.rows).toBe(23);
    expect(layout.cellWidth).toBe(26);
    expect(layout.width).toBeLessThanOrEqual(640);
  });
});

describe('cellAt / cellOrigin', () => {
  const layout = gridLayout({ count: 5, tileWidth: 10, tileHeight: 10, targetWidth: 32 }); // 3 cols of 10px, 1px gaps

  it('finds the cell under a point and inverts cellOrigin', () => {
    expect(cellAt(layout, 0, 0)).toBe(0);
    expect(cellAt(layout, 12, 3)).toBe(1);
    expect(cellAt(layout, 15, 15)).toBe(4);
    const { x, y } = cellOrigin(layout, 4);
    expect({ x, y }).toEqual({ x: 11, y: 11 });
    expect(cellAt(layout, x + 9, y + 9)).toBe(4);
  });

  it('returns -1 in gaps, empty cells and outside', () => {
    expect(cellAt(layout, 10, 5)).toBe(-1); // gap column
    expect(cellAt(layout, 5, 10)).toBe(-1); // gap row
    expect(cellAt(layout, 25, 15)).toBe(-1); // 6th cell, only 5 exist
    expect(cellAt(layout, -1, 5)).toBe(-1);
    expect(cellAt(layout, 40, 5)).toBe(-1);
    expect(cellAt(layout, 5, 40)).toBe(-1);
  });
});

describe('packAtlas', () => {
  it('places [N, h, w, depth] tiles row by row without gaps', () => {
    // three 1x2 tiles with depth 1: tile i holds [10i, 10i + 1]; 2 columns -> 4x2 atlas
    const values = new Uint8Array([0, 1, 10, 11, 20, 21]);
    const atlas = packAtlas(values, { count: 3, tileWidth: 2, tileHeight: 1, depth: 1, cols: 2 });
    expect(atlas).toMatchObject({ width: 4, height: 2, cols: 2, rows: 2, gap: 0 });
    expect(Array.from(atlas.pixels)).toEqual([0, 1, 10, 11, 20, 21, 0, 0]);
  });

  it('keeps the depth of RGB tiles', () => {
    const values = new Uint8Array([1, 2, 3, 4, 5, 6]); // two 1x1 RGB tiles
    const atlas = packAtlas(values, { count: 2, tileWidth: 1, tileHeight: 1, depth: 3, cols: 2 });
    expect(Array.from(atlas.pixels)).toEqual([1, 2, 3, 4, 5, 6]);
  });
});
