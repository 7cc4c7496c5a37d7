import { expect, it } from 'vitest';
import { BOX, boxLayout, edgeCurve, formatCount, unitAt } from '../src/shared/graph.js';

it('formatCount shortens counts as the map shows them', () => {
  expect(formatCount(950)).toBe('950');
  expect(formatCount(36864)).toBe('36.9 k');
  expect(formatCount(11689512)).toBe('11.7 M');
  expect(formatCount(138357544)).toBe('138 M');
  expect(formatCount(1814073344)).toBe('1.8 G');
  expect(formatCount(null)).toBe('–');
});

it('boxLayout places ranks top to bottom and lanes left to right; unitAt finds the box under a point', () => {
  const units = [{ rank: 0, lane: 0 }, { rank: 1, lane: 0 }, { rank: 1, lane: 1 }];
  const { boxes, height } = boxLayout(units);
  expect(boxes[1].y).toBe(BOX.margin + BOX.height + BOX.rankGap);
  expect(boxes[2].x).toBe(BOX.margin + BOX.width + BOX.laneGap);
  expect(height).toBe(boxes[1].y + BOX.height + BOX.margin);
  expect(unitAt(boxes, { x: boxes[2].x + 5, y: boxes[2].y + 5 })).toBe(2);
  expect(unitAt(boxes, { x: 1, y: 1 })).toBe(-1);
});

it('edgeCurve is straight between neighbouring ranks and bends right around skipped boxes', () => {
  const { boxes } = boxLayout([{ rank: 0, lane: 0 }, { rank: 1, lane: 0 }, { rank: 4, lane: 0 }]);
  const [start, c1, , end] = edgeCurve(boxes[0], boxes[1]);
  expect(c1).toEqual(start);
  expect(end.y).toBe(boxes[1].y);
  const skip = edgeCurve(boxes[0], boxes[2]);
  expect(skip[1].x).toBeGreaterThan(boxes[0].x + boxes[0].width);
});
