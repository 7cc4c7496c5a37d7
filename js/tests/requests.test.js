import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RequestStamp, throttle, throttledTraits } from '../src/shared/requests.js';

describe('throttle', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('runs the first call at once and one trailing call with the latest args', () => {
    const fn = vi.fn();
    const throttled = throttle(fn, 33);
    throttled(1);
    expect(fn).toHaveBeenCalledTimes(1);
    expect(fn).toHaveBeenLastCalledWith(1);
    throttled(2);
    throttled(3);
    expect(fn).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(32);
    expect(fn).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(1);
    expect(fn).toHaveBeenCalledTimes(2);
    expect(fn).toHaveBeenLastCalledWith(3);
  });

  it('calls at most once per interval under a steady stream', () => {
    const fn = vi.fn();
    const throttled = throttle(fn, 33);
    for (let t = 0; t < 330; t += 5) {
      throttled(t);
      vi.advanceTimersByTime(5);
    }
    vi.runAllTimers();
    expect(fn.mock.calls.length).toBeGreaterThanOrEqual(10);
    expect(fn.mock.calls.length).toBeLessThanOrEqual(12);
    expect(fn).toHaveBeenLastCalledWith(325);
  });

  it('runs a later call at once after a quiet interval', () => {
    const fn = vi.fn();
    const throttled = throttle(fn, 33);
    throttled('a');
    vi.advanceTimersByTime(100);
    throttled('b');
    expect(fn.mock.calls).toEqual([['a'], ['b']]);
  });

  it('flush runs the pending trailing call now, and only once', () => {
    const fn = vi.fn();
    const throttled = throttle(fn, 33);
    throttled('a');
    throttled('b');
    throttled.flush();
    expect(fn.mock.calls).toEqual([['a'], ['b']]);
    vi.runAllTimers();
    throttled.flush();
    expect(fn).toHaveBeenCalledTimes(2);
  });
});

describe('RequestStamp', () => {
  it('issues increasing ids; only the newest is current', () => {
    const stamps = new RequestStamp();
    const first = stamps.next();
    const second = stamps.next();
    expect(second).toBeGreaterThan(first);
    expect(stamps.isCurrent(first)).toBe(false);
    expect(stamps.isCurrent(second)).toBe(true);
  });

  it('drops answers older than the newest accepted one', () => {
    const stamps = new RequestStamp();
    const a = stamps.next();
    const b = stamps.next();
    const c = stamps.next();
    expect(stamps.accept(b)).toBe(true); // newer than anything shown so far
    expect(stamps.accept(a)).toBe(false); // arrived late: stale
    expect(stamps.accept(b)).toBe(true); // a repeated answer to the same request is fine
    expect(stamps.accept(c)).toBe(true);
    expect(stamps.accept(b)).toBe(false);
  });

  it('rejects ids that were never issued', () => {
    const stamps = new RequestStamp();
    expect(stamps.accept(1)).toBe(false);
    expect(stamps.accept(undefined)).toBe(false);
    expect(stamps.isCurrent(undefined)).toBe(false);
  });
});

describe('throttledTraits', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('sets every value at once but saves at most once per interval, the last value winning', () => {
    const state = {};
    const saved = [];
    const model = { set: (name, value) => { state[name] = value; }, save_changes: () => saved.push({ ...state }) };
    const { commit, saveSoon } = throttledTraits(model, 33);
    commit('channel', 1);
    commit('channel', 2);
    commit('channel', 3);
    expect(state.channel).toBe(3);
    expect(saved).toEqual([{ channel: 1 }]);
    saveSoon.flush();
    expect(saved).toEqual([{ channel: 1 }, { channel: 3 }]);
  });
});
