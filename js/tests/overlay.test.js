import { expect, it } from 'vitest';
import { colormapTable } from '../src/shared/colormaps.js';
import { blendOverlay, colorbarPixels, labelIndex, searchLabels } from '../src/shared/overlay.js';

it('blendOverlay at opacity 0 is the image and at 1 the colormapped map', () => {
  const rgb = new Uint8Array([10, 20, 30, 200, 100, 0]);
  const gray = new Uint8Array([0, 255]);
  const image = blendOverlay(rgb, gray, 2, 1, 'gray', 0);
  expect(Array.from(image)).toEqual([10, 20, 30, 255, 200, 100, 0, 255]);
  const map = blendOverlay(rgb, gray, 2, 1, 'gray', 1);
  expect(Array.from(map)).toEqual([0, 0, 0, 255, 255, 255, 255, 255]);
});

it('blendOverlay mixes linearly and clamps the opacity', () => {
  const rgb = new Uint8Array([100, 100, 100]);
  const gray = new Uint8Array([255]);
  expect(Array.from(blendOverlay(rgb, gray, 1, 1, 'gray', 0.5))).toEqual([178, 178, 178, 255]);
  expect(Array.from(blendOverlay(rgb, gray, 1, 1, 'gray', 7))).toEqual([255, 255, 255, 255]);
  const table = colormapTable('inferno');
  expect(Array.from(blendOverlay(rgb, new Uint8Array([128]), 1, 1, 'inferno', 1)).slice(0, 3)).toEqual(
    Array.from(table.slice(128 * 3, 128 * 3 + 3)));
});

it('colorbarPixels runs from the first to the last colour', () => {
  const bar = colorbarPixels('gray', 3, 2);
  expect(Array.from(bar.slice(0, 12))).toEqual([0, 0, 0, 255, 128, 128, 128, 255, 255, 255, 255, 255]);
  expect(Array.from(bar.slice(12, 24))).toEqual(Array.from(bar.slice(0, 12)));
});

it('searchLabels ranks exact, prefix, word prefix, then substring matches', () => {
  const labels = ['tabby', 'tiger cat', 'Egyptian cat', 'cat', 'catamaran', 'wildcat'];
  expect(searchLabels(labels, 'cat')).toEqual([3, 4, 1, 2, 5]);
  expect(searchLabels(labels, 'TAB')).toEqual([0]);
  expect(searchLabels(labels, '  ')).toEqual([]);
  expect(searchLabels(labels, 'cat', 2)).toEqual([3, 4]);
  expect(labelIndex(labels, 'egyptian CAT ')).toBe(2);
  expect(labelIndex(labels, 'lion')).toBe(-1);
});
