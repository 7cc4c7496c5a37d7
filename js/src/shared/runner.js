// Run / stop / reset controls for widgets whose optimization runs in the kernel's background: the buttons send
// the one-way actions "start", "stop" and "reset"; `running`, `step` and `goal` (set by Python) drive the run
// button's text and a progress bar of step / goal.
import { sendAction } from './actions.js';
import { h } from './dom.js';

/** Text of the run button: "run" at step 0, "continue" after, "stop" while running. */
export function runButtonText(running, step) {
  if (running) return 'stop';
  return step > 0 ? 'continue' : 'run';
}

/** Controls bound to `model`; returns {root, draw}. Listeners are added through `listeners`. */
export function runControls(model, listeners) {
  const run = h('button', { className: 'cnnw-run' });
  const reset = h('button', { className: 'cnnw-reset', textContent: 'reset' });
  const progress = h('progress', { className: 'cnnw-progress', max: 1, value: 0 });
  const status = h('span', { className: 'cnnw-note cnnw-status' });
  const root = h('span', { className: 'cnnw-run-controls', style: 'display: inline-flex; gap: 6px; align-items: center' }, run, reset, progress, status);
  function draw() {
    const running = Boolean(model.get('running'));
    const step = model.get('step') ?? 0;
    const goal = model.get('goal') ?? 0;
    run.textContent = runButtonText(running, step);
    progress.max = Math.max(goal, 1);
    progress.value = Math.min(step, progress.max);
    status.textContent = `step ${step}${running ? ` of ${goal}` : ''}`;
  }
  listeners.onDom(run, 'click', () => sendAction(model, model.get('running') ? 'stop' : 'start'));
  listeners.onDom(reset, 'click', () => sendAction(model, 'reset'));
  for (const name of ['running', 'step', 'goal']) listeners.onModel(model, `change:${name}`, draw);
  draw();
  return { root, draw, run, reset };
}
