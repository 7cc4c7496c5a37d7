import { expect, it } from 'vitest';
import { canvasScale, MAX_CANVAS } from '../src/shared/graph.js';

it('draws at the screen ratio while the canvas fits, lower when it would not', () => {
  expect(canvasScale(300, 2000, 2)).toBe(2);
  expect(canvasScale(300, 2000, undefined)).toBe(1);
  const tall = canvasScale(294, 27264, 2); // DenseNet-121 with every block open
  expect(tall).toBeLessThan(2);
  expect(Math.ceil(27264 * tall)).toBeLessThanOrEqual(MAX_CANVAS.side);
  const wide = canvasScale(20000, 20000, 1);
  expect(20000 * wide * 20000 * wide).toBeLessThanOrEqual(MAX_CANVAS.area * 1.0001);
});
