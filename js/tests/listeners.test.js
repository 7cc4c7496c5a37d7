import { expect, it, vi } from 'vitest';
import { Listeners } from '../src/shared/listeners.js';

it('removeAll undoes every model.on and addEventListener', () => {
  const model = { on: vi.fn(), off: vi.fn() };
  const target = new EventTarget();
  const onModel = () => {};
  const onClick = vi.fn();
  const listeners = new Listeners();
  listeners.onModel(model, 'change:layer', onModel);
  listeners.onDom(target, 'click', onClick);
  target.dispatchEvent(new Event('click'));
  expect(onClick).toHaveBeenCalledTimes(1);

  listeners.removeAll();
  expect(model.off).toHaveBeenCalledWith('change:layer', onModel);
  target.dispatchEvent(new Event('click'));
  expect(onClick).toHaveBeenCalledTimes(1);
  listeners.removeAll(); // nothing left to remove
  expect(model.off).toHaveBeenCalledTimes(1);
});
