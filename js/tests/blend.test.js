import { expect, it } from 'vitest';
import { blendRgb } from '../src/shared/blend.js';

it('blendRgb mixes the top picture over the bottom one at the opacity', () => {
  const bottom = new Uint8Array([0, 100, 255]);
  const top = new Uint8Array([200, 0, 255]);
  expect(Array.from(blendRgb(bottom, top, 0))).toEqual([0, 100, 255]);
  expect(Array.from(blendRgb(bottom, top, 1))).toEqual([200, 0, 255]);
  expect(Array.from(blendRgb(bottom, top, 0.25))).toEqual([50, 75, 255]);
});

it('blendRgb rounds half to even like numpy and clamps the opacity', () => {
  // 0.5 * 1 + 0.5 * 2 = 1.5 -> 2; 0.5 * 2 + 0.5 * 3 = 2.5 -> 2 (numpy.round gives the same)
  expect(Array.from(blendRgb(new Uint8Array([1, 2]), new Uint8Array([2, 3]), 0.5))).toEqual([2, 2]);
  expect(Array.from(blendRgb(new Uint8Array([10]), new Uint8Array([20]), 7))).toEqual([20]);
  expect(Array.from(blendRgb(new Uint8Array([10]), new Uint8Array([20]), 'x'))).toEqual([10]);
});
