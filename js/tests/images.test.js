import { afterEach, expect, it, vi } from 'vitest';
import { decodePng, grayToRGBA, rgbToImageData } from '../src/shared/images.js';

afterEach(() => vi.unstubAllGlobals());

it('rgbToImageData turns HxWx3 into opaque RGBA', () => {
  const rgba = rgbToImageData(new Uint8Array([1, 2, 3, 4, 5, 6]), 2, 1);
  expect(rgba).toBeInstanceOf(Uint8ClampedArray);
  expect(Array.from(rgba)).toEqual([1, 2, 3, 255, 4, 5, 6, 255]);
});

it('grayToRGBA repeats the gray value', () => {
  expect(Array.from(grayToRGBA(new Uint8Array([7, 200]), 1, 2))).toEqual([7, 7, 7, 255, 200, 200, 200, 255]);
});

it('decodePng hands the viewed bytes to createImageBitmap as a PNG blob', async () => {
  const createImageBitmap = vi.fn(async (blob) => ({ type: blob.type, bytes: new Uint8Array(await blob.arrayBuffer()) }));
  vi.stubGlobal('createImageBitmap', createImageBitmap);
  const bytes = new Uint8Array([0, 0, 137, 80, 78, 71, 0]);
  const bitmap = await decodePng(new DataView(bytes.buffer, 2, 4));
  expect(bitmap.type).toBe('image/png');
  expect(Array.from(bitmap.bytes)).toEqual([137, 80, 78, 71]);
});
