// Activation maximization (anywidget front end): pick a class (or a layer and channel), set the regularizers,
// press run and watch the synthesized images change every few steps while the kernel optimizes in the
// background; stop, continue or reset at any time. Also the objective's history and each image's probability.
import { h, setOptions } from './shared/dom.js';
import { Listeners } from './shared/listeners.js';
import { PANEL_CSS, drawError, drawMessage, setSlider, slider } from './shared/panels.js';
import { scopedStyle } from './shared/styles.js';
import { drawLines } from './shared/plot.js';
import { throttledTraits } from './shared/requests.js';
import { runControls } from './shared/runner.js';

const BOX = 224;
const SEND_INTERVAL_MS = 150;
const REGULARIZERS = [
  { trait: 'jitter', text: 'jitter', min: 0, max: 32, step: 1, format: (v) => `${v} px` },
  { trait: 'scale', text: 'scale', min: 0, max: 0.5, step: 0.01, format: (v) => `±${v.toFixed(2)}` },
  { trait: 'rotate', text: 'rotate', min: 0, max: 45, step: 1, format: (v) => `±${v}°` },
  { trait: 'blur', text: 'blur', min: 0, max: 3, step: 0.1, format: (v) => `σ ${v.toFixed(1)}` },
  { trait: 'l2', text: 'L2', min: 0, max: 5, step: 0.1, format: (v) => v.toFixed(1) },
  { trait: 'tv', text: 'TV', min: 0, max: 5, step: 0.1, format: (v) => v.toFixed(1) },
  { trait: 'lr', text: 'lr', min: 0.005, max: 0.2, step: 0.005, format: (v) => v.toFixed(3) },
  { trait: 'diversity', text: 'diversity', min: 0, max: 200, step: 5, format: (v) => String(v) },
];

function render({ model, el }) {
  const listeners = new Listeners();
  const labelList = h('datalist', { id: `cnnw-classes-${Math.random().toString(36).slice(2)}` });
  const target = h('input', { type: 'text', className: 'cnnw-target', value: model.get('target') });
  target.setAttribute('list', labelList.id);
  const layer = h('select', { className: 'cnnw-layer' });
  const diversityLayer = h('select', { className: 'cnnw-diversity-layer' });
  const channel = h('input', { type: 'number', min: 0, step: 1, value: model.get('channel'), className: 'cnnw-channel', style: 'width: 4em' });
  const param = h('select', { className: 'cnnw-param' });
  setOptions(param, [['fourier', 'Fourier, decorrelated'], ['pixel', 'pixels']], model.get('param'));
  const count = h('input', { type: 'number', min: 1, max: 8, step: 1, value: model.get('count'), className: 'cnnw-count', style: 'width: 3em' });
  const sliders = REGULARIZERS.map((spec) => ({ ...spec, control: slider(spec.text, { ...spec, value: model.get(spec.trait) }) }));
  const runner = runControls(model, listeners);
  const error = h('div', { className: 'cnnw-error' });
  const images = h('div', { className: 'cnnw-row cnnw-images' });
  const history = h('canvas', { className: 'cnnw-history' });
  const description = h('div', { className: 'cnnw-caption cnnw-description' });
  const similarity = h('div', { className: 'cnnw-caption cnnw-similarity' });
  const labelled = (text, control) => h('label', {}, text, control);
  const root = h('div', { className: 'cnnw-panel cnnw-activation-maximization' },
    scopedStyle('cnnw-activation-maximization', PANEL_CSS), labelList,
    h('div', { className: 'cnnw-row cnnw-controls' }, labelled('class', target), labelled('or layer', layer), labelled('channel', channel),
      labelled('images', count), labelled('parameterization', param), labelled('diversity at', diversityLayer)),
    h('div', { className: 'cnnw-row cnnw-controls' }, ...sliders.map((s) => s.control.root)),
    h('div', { className: 'cnnw-row cnnw-controls' }, runner.root, error),
    description, similarity,
    h('div', { className: 'cnnw-row' }, images, h('div', { className: 'cnnw-figure' }, history, h('div', { className: 'cnnw-caption', textContent: 'objective per step' }))));
  el.append(root);
  const { commit, saveSoon } = throttledTraits(model, SEND_INTERVAL_MS);

  function drawChoices() {
    labelList.replaceChildren(...(model.get('labels') ?? []).map((label) => h('option', { value: label })));
    const names = (model.get('layer_names') ?? []).map((name) => [name, name]);
    setOptions(layer, [['', '— (class logit)'], ...names], model.get('layer'));
    setOptions(diversityLayer, [['', 'middle layer (default)'], ...names], model.get('diversity_layer'));
    channel.disabled = !model.get('layer');
    const single = model.get('count') < 2;  // diversity compares the images of a batch
    diversityLayer.disabled = single;
    sliders.find((s) => s.trait === 'diversity').control.input.disabled = single;
    target.disabled = Boolean(model.get('layer'));
  }
  function drawImages() {
    const message = model.get('images');
    const countShown = message?.shape?.[0] ?? 0;
    while (images.children.length > countShown) images.lastChild.remove();
    while (images.children.length < countShown) images.append(h('div', { className: 'cnnw-figure' }, h('canvas', { className: 'cnnw-result' }), h('div', { className: 'cnnw-caption' })));
    const probabilities = model.get('probabilities') ?? [];
    const predictions = model.get('predictions') ?? [];
    [...images.children].forEach((cell, index) => {
      drawMessage(cell.firstChild, message, countShown > 1 ? BOX / 1.5 : BOX, index);
      const top = predictions[index]?.[0];
      cell.lastChild.textContent = probabilities.length
        ? `p = ${(probabilities[index] * 100).toFixed(1)}%${top ? `, top: ${top.label}` : ''}`
        : '';
    });
    description.textContent = `maximizing ${model.get('description')}`;
    const spread = model.get('similarity') ?? {};
    similarity.textContent = spread.layer ? `images' mean pairwise Gram similarity at ${spread.layer}: ${spread.value.toFixed(2)} (1 = alike)` : '';
  }
  function drawHistory() {
    drawLines(history, { series: [{ label: 'objective', values: model.get('history') ?? [] }], width: 260, height: 160 });
  }
  const drawState = () => drawError(error, model.get('error'));

  listeners.onDom(target, 'change', () => commit('target', target.value.trim()));
  listeners.onDom(layer, 'change', () => commit('layer', layer.value));
  listeners.onDom(channel, 'change', () => {
    const value = Number(channel.value);
    if (Number.isInteger(value) && value >= 0) commit('channel', value);
  });
  listeners.onDom(count, 'change', () => {
    const value = Number(count.value);
    if (Number.isInteger(value) && value >= 1 && value <= 8) commit('count', value);
  });
  listeners.onDom(param, 'change', () => commit('param', param.value));
  listeners.onDom(diversityLayer, 'change', () => commit('diversity_layer', diversityLayer.value));
  for (const { trait, control } of sliders) {
    listeners.onDom(control.input, 'change', () => commit(trait, Number(control.input.value)));
    listeners.onDom(control.input, 'input', () => (control.readout.textContent = control.format(Number(control.input.value))));
    listeners.onModel(model, `change:${trait}`, () => setSlider(control, model.get(trait)));
  }
  listeners.onModel(model, 'change:labels', drawChoices);
  listeners.onModel(model, 'change:layer_names', drawChoices);
  listeners.onModel(model, 'change:layer', drawChoices);
  listeners.onModel(model, 'change:diversity_layer', drawChoices);
  listeners.onModel(model, 'change:target', () => (target.value = model.get('target')));
  listeners.onModel(model, 'change:channel', () => (channel.value = model.get('channel')));
  listeners.onModel(model, 'change:count', () => {
    count.value = model.get('count');
    drawChoices();
  });
  listeners.onModel(model, 'change:param', () => (param.value = model.get('param')));
  listeners.onModel(model, 'change:images', drawImages);
  listeners.onModel(model, 'change:probabilities', drawImages);
  listeners.onModel(model, 'change:similarity', drawImages);
  listeners.onModel(model, 'change:history', drawHistory);
  listeners.onModel(model, 'change:error', drawState);
  drawChoices();
  drawImages();
  drawHistory();
  drawState();
  return () => {
    listeners.removeAll();
    saveSoon.flush();
    root.remove();
  };
}

export default { render };
