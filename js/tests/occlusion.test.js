import { describe, expect, it } from 'vitest';
import { centeredBox, clampPoint, classColors, mapPlacement, PALETTE, percent, readoutText, valuesToGray } from '../src/shared/occlusion.js';

describe('centeredBox', () => {
  it('centres the square and rounds like Python (floor(v - patch/2 + 0.5))', () => {
    expect(centeredBox(112, 112, 32, [224, 224])).toEqual({ y0: 96, x0: 96, y1: 128, x1: 128 });
    expect(centeredBox(10.5, 20.49, 7, [224, 224])).toEqual({ y0: 17, x0: 7, y1: 24, x1: 14 });
  });

  it('clips at the borders', () => {
    expect(centeredBox(0, 223, 32, [224, 224])).toEqual({ y0: 207, x0: 0, y1: 224, x1: 16 });
    expect(centeredBox(199, 99, 8, [100, 200])).toEqual({ y0: 95, x0: 195, y1: 100, x1: 200 });
  });
});

it('clampPoint keeps a point inside the image', () => {
  expect(clampPoint(-3, 500, [224, 200])).toEqual({ x: 0, y: 224 });
  expect(clampPoint(50, 60, [224, 200])).toEqual({ x: 50, y: 60 });
});

it('mapPlacement centres each cell on its occluder', () => {
  // 224 px, patch 32, stride 8 -> 25 positions; cell 0 spans 12..20 around the first centre 16
  expect(mapPlacement(32, 8, 25, 25)).toEqual({ left: 12, top: 12, width: 200, height: 200 });
});

it('valuesToGray scales, clips and blanks NaN', () => {
  expect(Array.from(valuesToGray(new Float32Array([0, 0.5, 1, 2, -1, NaN]), 0, 1))).toEqual([0, 128, 255, 255, 0, 0]);
  expect(Array.from(valuesToGray([3, 3], 3, 3))).toEqual([0, 0]);
});

it('classColors ranks classes by frequency and darkens weak wins', () => {
  const { rgba, legend } = classColors([7, 2, 2, 2], [1, 1, 1, 0.25], 2, 2);
  expect(legend.map(({ index, count }) => [index, count])).toEqual([[2, 3], [7, 1]]);
  expect(Array.from(rgba.slice(4, 8))).toEqual([...PALETTE[0], 255]);
  expect(Array.from(rgba.slice(0, 4))).toEqual([...PALETTE[1], 255]);
  expect(rgba[12]).toBe(Math.round(PALETTE[0][0] * 0.5));
});

it('readoutText names the class, its probability and the top-1 label', () => {
  expect(percent(0.4123)).toBe('41.2%');
  const text = readoutText({ label: 'tabby', probability: 0.1, unoccluded: 0.5, top_label: 'tiger cat', top_probability: 0.6 });
  expect(text).toBe('P(tabby) = 10.0% under the square (unoccluded 50.0%); top-1 there: tiger cat 60.0%');
  expect(readoutText({})).toBe('');
});

it('readoutText names the tube\'s frames and the score drop on a clip', () => {
  const text = readoutText({ label: 'left', probability: 0.25, unoccluded: 0.5, drop: 0.731, frames: [3, 7], top_label: 'up', top_probability: 0.4 });
  expect(text).toBe('P(left) = 25.0% under the tube (frames 3–6) (unoccluded 50.0%, score drop 0.731); top-1 there: up 40.0%');
});
