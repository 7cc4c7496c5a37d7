import { expect, it } from 'vitest';
import { runButtonText } from '../src/shared/runner.js';

it('the run button says run, stop or continue', () => {
  expect(runButtonText(false, 0)).toBe('run');
  expect(runButtonText(true, 0)).toBe('stop');
  expect(runButtonText(true, 12)).toBe('stop');
  expect(runButtonText(false, 12)).toBe('continue');
});
