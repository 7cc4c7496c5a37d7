import { expect, it } from 'vitest';
import { canvasPoint } from '../src/shared/dom.js';

it('canvasPoint maps client coordinates into canvas pixels when CSS scales the canvas', () => {
  // a 640x320 pixel canvas shown at 320x160 CSS pixels, 100px from the left, 50px from the top
  const canvas = { width: 640, height: 320, getBoundingClientRect: () => ({ left: 100, top: 50, width: 320, height: 160 }) };
  expect(canvasPoint(canvas, { clientX: 100, clientY: 50 })).toEqual({ x: 0, y: 0 });
  expect(canvasPoint(canvas, { clientX: 260, clientY: 90 })).toEqual({ x: 320, y: 80 });
});
