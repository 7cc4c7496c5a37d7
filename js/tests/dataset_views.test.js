import { describe, expect, it } from 'vitest';
import { randomNeuron, scaleBox, stepChannel } from '../src/shared/neurons.js';
import { categoryColor } from '../src/shared/palette.js';
import { buildBuckets, inBox, inPolygon, insidePolygon, nearest } from '../src/shared/spatial.js';
import { decodeInt32, spriteRect } from '../src/shared/sprites.js';
import { initialView, panBy, toLayout, toScreen, unitsPerPixel, zoomAt } from '../src/shared/viewport.js';

describe('neurons', () => {
  it('steps channels with wrap-around', () => {
    expect(stepChannel(0, -1, 16)).toBe(15);
    expect(stepChannel(15, 1, 16)).toBe(0);
    expect(stepChannel(3, 1, 0)).toBe(0);
  });

  it('picks a random layer, then a channel within it', () => {
    const layers = [{ name: 'a', shape: [4, 8, 8] }, { name: 'empty', shape: [0, 1, 1] }, { name: 'b', shape: [32, 2, 2] }];
    expect(randomNeuron(layers, () => 0)).toEqual({ layer: 'a', channel: 0 });
    expect(randomNeuron(layers, () => 0.999)).toEqual({ layer: 'b', channel: 31 });
    expect(randomNeuron([], Math.random)).toBeNull();
  });

  it('scales boxes from image to canvas pixels', () => {
    expect(scaleBox([2, 4, 10, 20], 2, 3)).toEqual([6, 8, 30, 40]);
  });
});

describe('viewport', () => {
  it('maps layout to screen and back, through zoom and pan', () => {
    let view = initialView();
    const corner = toScreen(view, 640, 520, 0, 0);
    expect(corner).toEqual({ x: 72, y: 12 }); // [0,1]² is a centred 496 px square
    view = panBy(zoomAt(view, 3, 100, 50), 7, -4);
    const p = toScreen(view, 640, 520, 0.3, 0.8);
    const back = toLayout(view, 640, 520, p.x, p.y);
    expect(back.x).toBeCloseTo(0.3, 10);
    expect(back.y).toBeCloseTo(0.8, 10);
    expect(unitsPerPixel(view, 640, 520)).toBeCloseTo(1 / (496 * 3), 12);
  });

  it('keeps the point under the cursor fixed when zooming, and clamps the scale', () => {
    const view = initialView();
    const before = toLayout(view, 640, 520, 200, 300);
    const zoomed = zoomAt(view, 2.5, 200, 300);
    const after = toLayout(zoomed, 640, 520, 200, 300);
    expect(after.x).toBeCloseTo(before.x, 12);
    expect(after.y).toBeCloseTo(before.y, 12);
    expect(zoomAt(view, 1e6, 0, 0).scale).toBe(200);
    expect(zoomAt(view, 1e-6, 0, 0).scale).toBe(0.5);
  });
});

describe('spatial buckets', () => {
  const random = (() => {
    let seed = 7;
    return () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  })();
  const count = 5000;
  const points = new Float32Array(2 * count).map(() => random());

  it('finds the same nearest point as a linear scan', () => {
    const buckets = buildBuckets(points);
    for (let trial = 0; trial < 200; trial++) {
      const [x, y, radius] = [random(), random(), 0.02];
      let best = -1;
      let bestDistance = radius * radius;
      for (let i = 0; i < count; i++) {
        const d = (points[2 * i] - x) ** 2 + (points[2 * i + 1] - y) ** 2;
        if (d < bestDistance) [best, bestDistance] = [i, d];
      }
      expect(nearest(buckets, x, y, radius)).toBe(best);
    }
  });

  it('selects the points inside a box, whichever corner the drag started from', () => {
    const few = new Float32Array([0.1, 0.1, 0.5, 0.5, 0.9, 0.2, Number.NaN, Number.NaN]);
    expect(inBox(few, 0.6, 0.6, 0, 0)).toEqual([0, 1]);
    expect(nearest(buildBuckets(few), 0.89, 0.21, 0.05)).toBe(2);
    expect(nearest(buildBuckets(few), 0.3, 0.3, 0.01)).toBe(-1);
  });

  // a concave "U": the square [0, 3]² without its notch [1, 2] × [1, 3] (y grows downwards, as on screen)
  const U = [0, 0, 3, 0, 3, 3, 2, 3, 2, 1, 1, 1, 1, 3, 0, 3];

  it('decides point-in-polygon by the even-odd rule, concave notch excluded', () => {
    expect(insidePolygon(U, 0.5, 2.5)).toBe(true); // left arm
    expect(insidePolygon(U, 2.5, 2.5)).toBe(true); // right arm
    expect(insidePolygon(U, 1.5, 0.5)).toBe(true); // the bar joining them
    expect(insidePolygon(U, 1.5, 2)).toBe(false); // in the notch: inside the hull, outside the polygon
    expect(insidePolygon(U, 3.5, 0.5)).toBe(false);
    expect(insidePolygon(U, -0.1, 2)).toBe(false);
    // a ray through a vertex (y = 1 passes the notch's corners) is counted once, not twice
    expect(insidePolygon(U, 0.5, 1)).toBe(true);
    expect(insidePolygon(U, 1.5, 1 + 1e-9)).toBe(false);
    // a bow tie crosses itself: its two lobes are inside, the points beside the crossing are not
    const bowTie = [0, 0, 2, 2, 2, 0, 0, 2];
    expect(insidePolygon(bowTie, 0.2, 1)).toBe(true);
    expect(insidePolygon(bowTie, 1.8, 1)).toBe(true);
    expect(insidePolygon(bowTie, 1, 0.2)).toBe(false);
  });

  it('selects the points inside a lasso, in index order, and none for a degenerate lasso', () => {
    const pts = new Float32Array([
      1.5, 2, // 0: notch
      0.5, 2.5, // 1: left arm
      2.5, 0.5, // 2: right arm, top
      4, 1, // 3: outside the bounding box
      Number.NaN, Number.NaN, // 4: not placed
      1.5, 0.5, // 5: the bar
      2.5, 2.9, // 6: right arm, bottom
    ]);
    expect(inPolygon(pts, U)).toEqual([1, 2, 5, 6]);
    expect(inPolygon(pts, [0, 0, 3, 3])).toEqual([]);
    // agrees with the box selection for a rectangular lasso, both drawn either way round
    const square = [0.2, 0.2, 2.7, 0.2, 2.7, 2.95, 0.2, 2.95];
    const reversed = [0.2, 2.95, 2.7, 2.95, 2.7, 0.2, 0.2, 0.2];
    expect(inPolygon(pts, square)).toEqual(inBox(pts, 0.2, 0.2, 2.7, 2.95));
    expect(inPolygon(pts, reversed)).toEqual([0, 1, 2, 5, 6]); // the notch point is inside a square
  });
});

describe('sprites and colours', () => {
  it('finds a thumbnail in the sprite sheet', () => {
    expect(spriteRect({ thumb: 20, columns: 4 }, 0)).toEqual([0, 0, 20, 20]);
    expect(spriteRect({ thumb: 20, columns: 4 }, 9)).toEqual([20, 40, 20, 20]);
  });

  it('decodes int32 messages at aligned and misaligned offsets', () => {
    const values = new Int32Array([3, -1, 7]);
    const aligned = { data: new DataView(values.buffer), dtype: 'int32', shape: [3] };
    expect(Array.from(decodeInt32(aligned))).toEqual([3, -1, 7]);
    const bytes = new Uint8Array(13);
    bytes.set(new Uint8Array(values.buffer), 1);
    expect(Array.from(decodeInt32({ data: new DataView(bytes.buffer, 1, 12), dtype: 'int32', shape: [3] }))).toEqual([3, -1, 7]);
    expect(decodeInt32(null)).toBeNull();
    expect(() => decodeInt32({ data: new DataView(new ArrayBuffer(4)), dtype: 'uint8' })).toThrow(/int32/);
  });

  it('uses tab10 up to 10 classes and tab20 beyond', () => {
    expect(categoryColor(0, 10)).toBe('#1f77b4');
    expect(categoryColor(1, 10)).toBe('#ff7f0e');
    expect(categoryColor(1, 16)).toBe('#aec7e8');
    expect(categoryColor(21, 30)).toBe('#aec7e8');
  });
});
