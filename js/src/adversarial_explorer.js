// Adversarial explorer (anywidget front end): method, epsilon slider (levels out of 255), steps and target;
// original, magnified perturbation and adversarial image with their top-5 and saliency maps; a button that
// grows a fooling image of a chosen class from noise. Python attacks; this file draws and sends settings.
import { sendAction } from './shared/actions.js';
import { classIndexOf } from './shared/clips.js';
import { h, setOptions } from './shared/dom.js';
import { Listeners } from './shared/listeners.js';
import { PANEL_CSS, drawError, drawMessage, drawPredictions, figure, setSlider, slider } from './shared/panels.js';
import { scopedStyle } from './shared/styles.js';
import { throttledTraits } from './shared/requests.js';

const BOX = 200;
const SEND_INTERVAL_MS = 100; // attacks take a while: send slider moves at most 10 times a second

function render({ model, el }) {
  const listeners = new Listeners();
  const method = h('select', { className: 'cnnw-method' });
  setOptions(method, [['fgsm', 'FGSM (one step)'], ['pgd', 'PGD (iterative)']], model.get('method'));
  const epsilon = slider('ε', { min: 0, max: 32, step: 1, value: model.get('epsilon'), format: (v) => `${v}/255` });
  epsilon.input.className = 'cnnw-epsilon';
  const steps = h('input', { type: 'number', min: 1, max: 100, step: 1, value: model.get('steps'), className: 'cnnw-steps', style: 'width: 4em' });
  const target = h('input', { type: 'text', className: 'cnnw-target', placeholder: 'untargeted' });
  const labelList = h('datalist', { id: `cnnw-labels-${Math.random().toString(36).slice(2)}` });
  target.setAttribute('list', labelList.id);
  const foolTarget = h('input', { type: 'text', className: 'cnnw-fool-target' });
  foolTarget.setAttribute('list', labelList.id);
  const foolButton = h('button', { className: 'cnnw-fool', textContent: 'grow from noise' });
  const error = h('div', { className: 'cnnw-error' });
  const busy = h('span', { className: 'cnnw-note', textContent: 'computing…' });
  const summary = h('div', { className: 'cnnw-summary' });
  const panels = {
    original: figure('cnnw-original'), perturbation: figure('cnnw-perturbation'), adversarial: figure('cnnw-adversarial'),
    saliency_original: figure('cnnw-saliency-original'), saliency_adversarial: figure('cnnw-saliency-adversarial'),
    fooling: figure('cnnw-fooling'),
  };
  const tops = { original: h('div', { className: 'cnnw-predictions' }), adversarial: h('div', { className: 'cnnw-predictions' }), fooling: h('div', { className: 'cnnw-predictions' }) };
  panels.original.root.append(tops.original);
  panels.adversarial.root.append(tops.adversarial);
  panels.fooling.root.append(tops.fooling);
  const labelled = (text, control) => h('label', {}, text, control);
  const root = h('div', { className: 'cnnw-panel cnnw-adversarial-explorer' },
    scopedStyle('cnnw-adversarial-explorer', PANEL_CSS), labelList,
    h('div', { className: 'cnnw-row cnnw-controls' }, labelled('attack', method), epsilon.root, labelled('steps', steps),
      labelled('target', target), busy, error),
    summary,
    h('div', { className: 'cnnw-row' }, panels.original.root, panels.perturbation.root, panels.adversarial.root),
    h('div', { className: 'cnnw-row' }, panels.saliency_original.root, panels.saliency_adversarial.root),
    h('div', { className: 'cnnw-row cnnw-controls' }, labelled('fooling image of', foolTarget), foolButton),
    h('div', { className: 'cnnw-row' }, panels.fooling.root));
  el.append(root);
  const { commit, saveSoon } = throttledTraits(model, SEND_INTERVAL_MS);

  let localError = '';
  const labelOf = (index) => (index < 0 ? '' : (model.get('labels') ?? [])[index] ?? String(index));
  function drawLabels() {
    labelList.replaceChildren(...(model.get('labels') ?? []).map((label) => h('option', { value: label })));
    target.value = labelOf(model.get('target'));
    foolTarget.value = labelOf(model.get('fool_target'));
  }
  // a class typed by name or index is sent as its index (target: empty is -1, untargeted)
  function commitClass(name, input, allowEmpty) {
    const text = input.value.trim();
    const index = allowEmpty && !text ? -1 : classIndexOf(text, model.get('labels'));
    localError = index === null ? `no class named "${text}"; pick one from the list` : '';
    drawState();
    if (index !== null) commit(name, index);
  }
  function drawImages() {
    const captions = {
      original: 'original', adversarial: 'adversarial',
      perturbation: `perturbation, magnified (max ${model.get('perturbation')?.linf ?? 0}/255)`,
      saliency_original: 'saliency before', saliency_adversarial: 'saliency after',
    };
    for (const [name, caption] of Object.entries(captions)) {
      drawMessage(panels[name].canvas, model.get(name), BOX);
      panels[name].caption.textContent = caption;
    }
    const s = model.get('summary') ?? {};
    drawPredictions(tops.original, model.get('original_top'), s.label);
    drawPredictions(tops.adversarial, model.get('adversarial_top'), s.label);
    summary.textContent = s.method
      ? `${s.method}, ε = ${s.epsilon}/255, ${s.targeted ? 'toward' : 'away from'} "${s.label}": p ${(s.before * 100).toFixed(1)}% → ${(s.after * 100).toFixed(1)}%` +
        (s.flipped ? (s.targeted ? ' — reached the target' : ' — prediction flipped') : ' — not fooled yet')
      : '';
  }
  function drawFooling() {
    const fooling = model.get('fooling');
    const shown = drawMessage(panels.fooling.canvas, fooling, BOX);
    panels.fooling.caption.textContent = shown ? `grown from noise in ${fooling.steps} steps toward "${fooling.label}"` : '';
    drawPredictions(tops.fooling, model.get('fooling_top'), fooling?.label);
  }
  function drawState() {
    drawError(error, localError || model.get('error'));
    busy.hidden = !model.get('busy');
    foolButton.disabled = Boolean(model.get('busy'));
  }

  listeners.onDom(method, 'change', () => commit('method', method.value));
  listeners.onDom(epsilon.input, 'input', () => {
    epsilon.readout.textContent = epsilon.format(Number(epsilon.input.value));
    commit('epsilon', Number(epsilon.input.value));
  });
  listeners.onDom(steps, 'change', () => {
    const value = Number(steps.value);
    if (Number.isInteger(value) && value >= 1 && value <= 100) commit('steps', value);
  });
  listeners.onDom(target, 'change', () => commitClass('target', target, true));
  listeners.onDom(foolTarget, 'change', () => commitClass('fool_target', foolTarget, false));
  listeners.onDom(foolButton, 'click', () => { saveSoon.flush(); sendAction(model, 'fool'); });

  listeners.onModel(model, 'change:labels', drawLabels);
  for (const name of ['original', 'perturbation', 'adversarial', 'saliency_original', 'saliency_adversarial', 'original_top', 'adversarial_top', 'summary']) {
    listeners.onModel(model, `change:${name}`, drawImages);
  }
  listeners.onModel(model, 'change:fooling', drawFooling);
  listeners.onModel(model, 'change:fooling_top', drawFooling);
  listeners.onModel(model, 'change:error', drawState);
  listeners.onModel(model, 'change:busy', drawState);
  listeners.onModel(model, 'change:epsilon', () => setSlider(epsilon, model.get('epsilon')));
  listeners.onModel(model, 'change:method', () => (method.value = model.get('method')));
  listeners.onModel(model, 'change:steps', () => (steps.value = model.get('steps')));
  listeners.onModel(model, 'change:target', () => (target.value = labelOf(model.get('target'))));
  listeners.onModel(model, 'change:fool_target', () => (foolTarget.value = labelOf(model.get('fool_target'))));
  drawLabels();
  drawImages();
  drawFooling();
  drawState();
  return () => {
    listeners.removeAll();
    saveSoon.flush();
    root.remove();
  };
}

export default { render };
