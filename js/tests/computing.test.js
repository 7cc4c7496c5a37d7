import { expect, it } from 'vitest';
import { computingText, showComputing } from '../src/shared/computing.js';
import { inputNoun } from '../src/shared/frames.js';

it('says how far the kernel is while a job runs, and hides when nothing is pending', () => {
  expect(computingText(false, false, 1)).toBe('');
  expect(computingText(true, false, 0)).toBe('computing…');
  expect(computingText(true, true, 1 / 3)).toBe('computing… 33%');
  expect(computingText(false, true, 0.5)).toBe('computing…'); // a request sent, the kernel not started on it yet
  expect(computingText(true, false, 1)).toBe('computing…');
});

it('shows the state of a model in a note', () => {
  const state = { busy: true, progress: 0.5 };
  const model = { get: (name) => state[name] };
  const note = { hidden: true, textContent: '' };
  showComputing(note, model, false);
  expect(note).toEqual({ hidden: false, textContent: 'computing… 50%' });
  state.busy = false;
  showComputing(note, model, false);
  expect(note.hidden).toBe(true);
});

it('calls a clip a clip in captions', () => {
  expect(inputNoun({ shape: [16, 32, 32, 3] })).toBe('clip');
  expect(inputNoun({ shape: [224, 224, 3] })).toBe('image');
  expect(inputNoun(undefined)).toBe('image');
});
