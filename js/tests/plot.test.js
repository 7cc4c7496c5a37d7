import { expect, it } from 'vitest';
import { extent, formatTick, legendEntries, scaleLinear, SERIES_COLORS } from '../src/shared/plot.js';

it('extent spans finite values of all arrays and widens flat or empty data', () => {
  expect(extent([[1, 5, NaN], [-2, 3]])).toEqual([-2, 5]);
  expect(extent([[2, 2]])).toEqual([1.5, 2.5]);
  expect(extent([[], undefined])).toEqual([0, 1]);
});

it('scaleLinear maps ranges, flipping for screen y, and supports log2 x', () => {
  expect(scaleLinear(5, [0, 10], [0, 100])).toBe(50);
  expect(scaleLinear(0, [0, 1], [90, 10])).toBe(90);
  expect(scaleLinear(1, [0.5, 2], [0, 100], true)).toBeCloseTo(50);
});

it('formatTick keeps three significant digits', () => {
  expect(formatTick(0.123456)).toBe('0.123');
  expect(formatTick(180)).toBe('180');
  expect(formatTick(NaN)).toBe('');
});

it('legendEntries gives default colours in order and keeps explicit ones', () => {
  expect(legendEntries([{ label: 'a' }, { label: 'p', color: '#000', dashed: true }])).toEqual([
    ['a', SERIES_COLORS[0], false], ['p', '#000', true]]);
});
