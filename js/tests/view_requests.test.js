import { expect, it } from 'vitest';
import { ViewRequests } from '../src/shared/view_requests.js';
import { clampFrame, centreFrame, itemOf, nextFrame, spanText, timeSlice } from '../src/shared/frames.js';

function fakeModel(values = {}) {
  return { values, get(name) { return this.values[name]; }, set(name, value) { this.values[name] = value; } };
}

it('ViewRequests stamps ids after the model\u2019s and draws only the newest answer', () => {
  const model = fakeModel({ request: 7 });
  const requests = new ViewRequests(model);
  expect(requests.accept(7)).toBe(true); // Python's own answer before this view asked anything
  expect(requests.stamp()).toBe(1);
  expect(model.get('request')).toBe(8);
  requests.stamp();
  expect(model.get('request')).toBe(9);
  expect(requests.pending()).toBe(true);
  expect(requests.accept(9)).toBe(true);
  expect(requests.accept(8)).toBe(false); // an older answer arriving late is dropped
  expect(requests.accept(9)).toBe(true); // a second answer to the newest request (two traits changed) is drawn
  expect(requests.accept(7)).toBe(false); // from before this view's requests
  expect(requests.pending()).toBe(false);
});

it('ViewRequests.committing stamps a request before the trait it sends', () => {
  const model = fakeModel({ request: 2 });
  const sent = [];
  const request = new ViewRequests(model).committing((name, value) => sent.push([name, value, model.get('request')]));
  request('layer', 'conv2');
  expect(sent).toEqual([['layer', 'conv2', 3]]);
});

it('ViewRequests settles when Python rolls a refused request back', () => {
  const model = fakeModel({ request: 0 });
  const requests = new ViewRequests(model);
  requests.stamp();
  requests.settle(); // the local set itself: still waiting
  expect(requests.pending()).toBe(true);
  model.set('request', 0); // Python sent the old id back with the rolled-back values
  requests.settle();
  expect(requests.pending()).toBe(false);
});

it('frame helpers loop, clamp, name spans and slice time steps', () => {
  expect(nextFrame(14, 15)).toBe(0);
  expect(nextFrame(3, 15)).toBe(4);
  expect(clampFrame(20, 16)).toBe(15);
  expect(clampFrame(-2, 16)).toBe(0);
  expect(spanText([2, 5])).toBe('input frames 2\u20135');
  expect(spanText([4, 4])).toBe('input frame 4');
  expect(spanText([])).toBe('');
  expect(centreFrame([2, 5])).toBe(3);
  expect(centreFrame(undefined, 9)).toBe(9);
  // [C=2, T=3, H·W=2]: channel-major; time step 1 is [c0t1, c1t1]
  const values = Uint8Array.from([0, 1, 10, 11, 20, 21, 100, 101, 110, 111, 120, 121]);
  expect(Array.from(timeSlice(values, [2, 3, 1, 2], 1))).toEqual([10, 11, 110, 111]);
  expect(Array.from(itemOf(values, [3, 2, 2], 2))).toEqual([110, 111, 120, 121]);
});
