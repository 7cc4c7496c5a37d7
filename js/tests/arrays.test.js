import { describe, expect, it } from 'vitest';
import { elementCount, isEmptyArray, toTypedArray } from '../src/shared/arrays.js';

describe('toTypedArray', () => {
  it('views uint8 data at a non-zero byteOffset without copying', () => {
    const buffer = new Uint8Array([9, 9, 9, 1, 2, 3, 4, 5, 6, 9]).buffer;
    const msg = { data: new DataView(buffer, 3, 6), shape: [2, 3], dtype: 'uint8' };
    const values = toTypedArray(msg);
    expect(values).toBeInstanceOf(Uint8Array);
    expect(Array.from(values)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(values.buffer).toBe(buffer);
  });

  it('decodes float32 at an aligned offset', () => {
    const floats = new Float32Array([0, 1.5, -2, 3.25]);
    const msg = { data: new DataView(floats.buffer, 4, 12), shape: [3], dtype: 'float32' };
    expect(Array.from(toTypedArray(msg))).toEqual([1.5, -2, 3.25]);
  });

  it('copies float32 data at a misaligned offset', () => {
    const bytes = new Uint8Array(1 + 8);
    bytes.set(new Uint8Array(new Float32Array([0.5, 7]).buffer), 1);
    const msg = { data: new DataView(bytes.buffer, 1, 8), shape: [2], dtype: 'float32' };
    expect(Array.from(toTypedArray(msg))).toEqual([0.5, 7]);
  });

  it('rejects a length that does not match the shape, and unknown dtypes', () => {
    const data = new DataView(new ArrayBuffer(5));
    expect(() => toTypedArray({ data, shape: [2, 3], dtype: 'uint8' })).toThrow(/shape/);
    expect(() => toTypedArray({ data, shape: [5], dtype: 'int64' })).toThrow(/dtype/);
  });
});

describe('isEmptyArray', () => {
  it('is true for missing messages and zero-length data', () => {
    expect(isEmptyArray(null)).toBe(true);
    expect(isEmptyArray({ data: new DataView(new ArrayBuffer(0)), shape: [0], dtype: 'uint8' })).toBe(true);
    expect(isEmptyArray({ data: new DataView(new ArrayBuffer(1)), shape: [1], dtype: 'uint8' })).toBe(false);
  });
});

it('elementCount multiplies the shape', () => {
  expect(elementCount([16, 28, 28])).toBe(12544);
  expect(elementCount([])).toBe(1);
});
