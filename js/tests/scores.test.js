import { expect, it } from 'vitest';
import { barGeometry, percent, requestFilter, withInterval } from '../src/shared/scores.js';

it('prints proportions and intervals', () => {
  expect(percent(0.75)).toBe('75.0 %');
  expect(percent(null)).toBe('–');
  expect(withInterval(0.75, [0.3006, 0.9544])).toBe('75.0 % (30.1–95.4 %)');
  expect(withInterval(null, [0, 1])).toBe('–');
});

it('places bars and whiskers in a column', () => {
  expect(barGeometry(0.5, [0.25, 0.75], 100)).toEqual({ bar: 50, whisker: { low: 25, high: 75 } });
  expect(barGeometry(null, null, 100)).toEqual({ bar: 0, whisker: null });
  expect(barGeometry(1.2, null, 10)).toEqual({ bar: 10, whisker: null });
});

it('keeps only answers to the newest request of each kind', () => {
  const filter = requestFilter(5);
  expect(filter.accept('table', { request: 3 })).toBe(true); // nothing asked yet: Python's own state shows
  expect(filter.next(['table', 'images'])).toBe(6);
  expect(filter.next(['images'])).toBe(7);
  expect(filter.accept('table', { request: 5 })).toBe(false); // older than the table asked for
  expect(filter.accept('table', { request: 6 })).toBe(true); // the newest table request, though images moved on
  expect(filter.accept('images', { request: 6 })).toBe(false); // superseded by request 7
  expect(filter.accept('images', { request: 7 })).toBe(true);
  expect(filter.accept('table', { request: 7 })).toBe(true); // a later answer (e.g. a change made from Python)
  expect(filter.accept('table', { request: 6 })).toBe(false); // older than the one shown
});

it('finds classes by a search in any case, at most a limit', async () => {
  const { matchingClasses } = await import('../src/human_vs_network.js');
  const classes = ['tabby', 'tiger cat', 'Egyptian cat', 'goldfish'];
  expect(matchingClasses(classes, 'CAT')).toEqual([1, 2]);
  expect(matchingClasses(classes, '')).toEqual([0, 1, 2, 3]);
  expect(matchingClasses(classes, '', 2)).toEqual([0, 1]);
  expect(matchingClasses(classes, 'zebra')).toEqual([]);
});
