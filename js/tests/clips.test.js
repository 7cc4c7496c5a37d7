import { expect, it } from 'vitest';
import { classIndexOf, clipCount, clipFrameIndex } from '../src/shared/clips.js';

const message = { frames: 4, shape: [8, 2, 2, 3] };

it('loops the frames of each clip of a stacked message', () => {
  expect(clipCount(message)).toBe(2);
  expect([0, 1, 2, 3, 4, 5].map((tick) => clipFrameIndex(message, 1, tick))).toEqual([4, 5, 6, 7, 4, 5]);
  expect(clipFrameIndex(message, 2, 0)).toBe(null);
  expect(clipFrameIndex({}, 0, 0)).toBe(null);
  expect(clipCount({})).toBe(0);
});

it('a typed class is a label or an index in range', () => {
  const labels = ['0', '1', 'cat'];
  expect(classIndexOf('cat', labels)).toBe(2);
  expect(classIndexOf(' 1 ', labels)).toBe(1);
  expect(classIndexOf('7', labels)).toBe(null);
  expect(classIndexOf('dog', labels)).toBe(null);
  expect(classIndexOf('12', [])).toBe(12);
});
