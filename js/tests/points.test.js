import { describe, expect, it } from 'vitest';
import { affineFrom, countValues, drawDots, packColor, parseColor, pointNumbers } from '../src/shared/points.js';

const WHITE = packColor([255, 255, 255]);

function canvas(width, height) {
  return new Uint32Array(width * height).fill(WHITE);
}

describe('colours', () => {
  it('reads the CSS colours themes use', () => {
    expect(parseColor('#1f77b4')).toEqual([31, 119, 180]);
    expect(parseColor(' #fff ')).toEqual([255, 255, 255]);
    expect(parseColor('rgb(17, 34, 51)')).toEqual([17, 34, 51]);
    expect(parseColor('rgba(1, 2, 3, 0.5)')).toEqual([1, 2, 3]);
    expect(parseColor('var(--x)')).toBeNull();
    expect(parseColor('rgba(0, 0, 0, 0)')).toBeNull(); // transparent: the caller's fallback
  });

  it('packs RGBA bytes as ImageData lays them out, mixed over the background', () => {
    const bytes = new Uint8Array(new Uint32Array([packColor([10, 20, 30])]).buffer);
    expect([...bytes]).toEqual([10, 20, 30, 255]);
    const faded = new Uint8Array(new Uint32Array([packColor([0, 100, 200], 0.2, [255, 255, 255])]).buffer);
    expect([...faded]).toEqual([204, 224, 244, 255]);
    const dark = new Uint8Array(new Uint32Array([packColor([200, 200, 200], 0.5, [0, 0, 0])]).buffer);
    expect([...dark]).toEqual([100, 100, 100, 255]);
  });
});

describe('drawDots', () => {
  const identity = affineFrom({ x: 0, y: 0 }, { x: 1, y: 1 });

  it('writes a size×size square centred on each point, in its class colour', () => {
    const pixels = canvas(8, 6);
    const palette = new Uint32Array([1, 2]);
    const drawn = drawDots(pixels, 8, 6, new Float32Array([2, 2, 6, 4]), identity, { palette, values: new Int32Array([0, 1]), size: 2 });
    expect(drawn).toBe(2);
    const at = (x, y) => pixels[y * 8 + x];
    expect([at(1, 1), at(2, 1), at(1, 2), at(2, 2)]).toEqual([1, 1, 1, 1]);
    expect([at(5, 3), at(6, 3), at(5, 4), at(6, 4)]).toEqual([2, 2, 2, 2]);
    expect(pixels.filter((p) => p !== WHITE).length).toBe(8);
  });

  it('maps layout units through the affine view and clips at the edges', () => {
    const pixels = canvas(10, 10);
    const transform = affineFrom({ x: 1, y: 2 }, { x: 9, y: 10 }); // 8 px per unit, origin at (1, 2)
    expect(transform).toEqual({ ax: 8, bx: 1, ay: 8, by: 2 });
    const points = new Float32Array([0.5, 0.5, -0.1, 0.5, 5, 5, Number.NaN, 0.5]);
    const drawn = drawDots(pixels, 10, 10, points, transform, { palette: new Uint32Array([7]), size: 3 });
    expect(drawn).toBe(2); // (5, 6) whole; (0.2, 6) clipped to its right part; (41, 42) and NaN dropped
    expect(pixels[5 * 10 + 4]).toBe(7);
    expect(pixels[7 * 10 + 6]).toBe(7);
    expect(pixels[6 * 10 + 0]).toBe(7);
    expect(pixels.filter((p) => p === 7).length).toBe(9 + 6);
  });

  it('draws only the dots asked for, later ones on top', () => {
    const pixels = canvas(4, 4);
    const points = new Float32Array([1.2, 1.2, 1, 1, 3, 3]);
    const options = { palette: new Uint32Array([5, 6, 9]), values: new Int32Array([0, 1, 2]), size: 1 };
    expect(drawDots(pixels, 4, 4, points, identity, { ...options, only: new Int32Array([0]) })).toBe(1);
    expect(pixels[5]).toBe(5);
    expect(pixels[15]).toBe(WHITE);
    const only = pointNumbers([11, 12], 3, 10);
    expect([...only]).toEqual([1, 2]);
    expect(drawDots(pixels, 4, 4, points, identity, { ...options, only })).toBe(2);
    expect(pixels[5]).toBe(6);
    expect(pixels[15]).toBe(9);
  });

  it('gives a value without a colour the first colour', () => {
    const pixels = canvas(2, 2);
    drawDots(pixels, 2, 2, new Float32Array([0.5, 0.5]), identity, { palette: new Uint32Array([4]), values: new Int32Array([-1]), size: 1 });
    expect(pixels[0]).toBe(4);
  });

  it('draws every one of a million points (no timing asserted: bench/scatter.py measures)', () => {
    const count = 1_000_000;
    const points = new Float32Array(2 * count).map((_, k) => ((k * 7919) % 1000) / 1000);
    const values = new Int32Array(count).map((_, i) => i % 10);
    const pixels = canvas(640, 520);
    const transform = affineFrom({ x: 72, y: 12 }, { x: 568, y: 508 });
    expect(drawDots(pixels, 640, 520, points, transform, { palette: new Uint32Array(10).fill(3), values })).toBe(count);
  });
});

describe('selection and legend counts', () => {
  it('ignores ids outside the shard and counts classes', () => {
    expect([...pointNumbers([0, 4, 9, 2], 4, 1)]).toEqual([3, 1]);
    expect(countValues(new Int32Array([0, 2, 2, -1, 7]), 3)).toEqual([1, 0, 2]);
  });
});
