import { expect, it } from 'vitest';
import { applyColormap, colormapNames, colormapTable } from '../src/shared/colormaps.js';

const entry = (name, i) => Array.from(colormapTable(name).slice(i * 3, i * 3 + 3));

it('offers the five colormaps', () => {
  expect(colormapNames).toEqual(['viridis', 'magma', 'inferno', 'gray', 'coolwarm']);
});

it('matches matplotlib at the ends', () => {
  expect(entry('viridis', 0)).toEqual([68, 1, 84]);
  expect(entry('viridis', 255)).toEqual([253, 231, 37]);
  expect(entry('magma', 0)).toEqual([0, 0, 4]);
  expect(entry('magma', 255)).toEqual([252, 253, 191]);
  expect(entry('gray', 0)).toEqual([0, 0, 0]);
  expect(entry('gray', 255)).toEqual([255, 255, 255]);
});

it('stays within 8 units of matplotlib in between', () => {
  // reference values: (matplotlib.colormaps[name](i / 255)[:3] * 255).round()
  const references = [['viridis', 100, [42, 118, 142]], ['magma', 128, [183, 55, 121]], ['inferno', 200, [251, 157, 7]], ['coolwarm', 128, [221, 220, 220]]];
  for (const [name, i, expected] of references) {
    entry(name, i).forEach((value, k) => expect(Math.abs(value - expected[k])).toBeLessThanOrEqual(8));
  }
  expect(entry('gray', 77)).toEqual([77, 77, 77]);
});

it('applyColormap maps gray values to opaque RGBA', () => {
  const rgba = applyColormap(new Uint8Array([0, 255]), 2, 1, 'viridis');
  expect(rgba).toBeInstanceOf(Uint8ClampedArray);
  expect(Array.from(rgba)).toEqual([68, 1, 84, 255, 253, 231, 37, 255]);
});

it('rejects unknown names', () => {
  expect(() => colormapTable('jet')).toThrow(/unknown colormap/);
});
