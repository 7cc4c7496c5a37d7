// Code inversion (anywidget front end): the original next to reconstructions from each chosen layer's code,
// shallow to deep, refreshed every few steps while the kernel optimizes in the background, with PSNR and
// relative code distance under each; run / stop / reset, and the layers and total-variation weight to use.
import { h } from './shared/dom.js';
import { Listeners } from './shared/listeners.js';
import { PANEL_CSS, drawError, drawMessage, figure, setSlider, slider } from './shared/panels.js';
import { scopedStyle } from './shared/styles.js';
import { throttledTraits } from './shared/requests.js';
import { runControls } from './shared/runner.js';

const BOX = 176;
const SEND_INTERVAL_MS = 150;

function render({ model, el }) {
  const listeners = new Listeners();
  const original = figure('cnnw-original');
  const layers = h('select', { className: 'cnnw-layers', multiple: true, size: 5 });
  const tv = slider('TV prior', { min: 0, max: 0.2, step: 0.005, value: model.get('tv'), format: (v) => v.toFixed(3) });
  const runner = runControls(model, listeners);
  const error = h('div', { className: 'cnnw-error' });
  const row = h('div', { className: 'cnnw-row cnnw-reconstructions' });
  const root = h('div', { className: 'cnnw-panel cnnw-code-inversion' },
    scopedStyle('cnnw-code-inversion', PANEL_CSS),
    h('div', { className: 'cnnw-row cnnw-controls' }, h('label', {}, 'layers', layers), tv.root, runner.root, error),
    h('div', { className: 'cnnw-row' }, original.root, row));
  el.append(root);
  const { commit, saveSoon } = throttledTraits(model, SEND_INTERVAL_MS);

  function drawLayerOptions() {
    const chosen = new Set(model.get('selected_layers') ?? []);
    layers.replaceChildren(...(model.get('layer_names') ?? []).map((name) => h('option', { value: name, textContent: name, selected: chosen.has(name) })));
  }
  function drawReconstructions() {
    drawMessage(original.canvas, model.get('original'), BOX);
    original.caption.textContent = 'original';
    const message = model.get('reconstructions');
    const names = message?.layers ?? [];
    while (row.children.length > names.length) row.lastChild.remove();
    while (row.children.length < names.length) row.append(figure('cnnw-reconstruction').root);
    const psnr = model.get('psnr') ?? [];
    const distances = model.get('distances') ?? [];
    [...row.children].forEach((cell, index) => {
      drawMessage(cell.firstChild, message, BOX, index);
      cell.lastChild.textContent = `${names[index]}: PSNR ${psnr[index]?.toFixed(1) ?? '–'} dB, code distance ${distances[index]?.toFixed(2) ?? '–'}`;
    });
  }
  const drawState = () => drawError(error, model.get('error'));

  listeners.onDom(layers, 'change', () => {
    const chosen = [...layers.selectedOptions].map((option) => option.value);
    if (chosen.length) commit('selected_layers', chosen);
  });
  listeners.onDom(tv.input, 'input', () => (tv.readout.textContent = tv.format(Number(tv.input.value))));
  listeners.onDom(tv.input, 'change', () => commit('tv', Number(tv.input.value)));
  listeners.onModel(model, 'change:tv', () => setSlider(tv, model.get('tv')));
  listeners.onModel(model, 'change:selected_layers', drawLayerOptions);
  listeners.onModel(model, 'change:layer_names', drawLayerOptions);
  for (const name of ['original', 'reconstructions', 'psnr', 'distances']) listeners.onModel(model, `change:${name}`, drawReconstructions);
  listeners.onModel(model, 'change:error', drawState);
  drawLayerOptions();
  drawReconstructions();
  drawState();
  return () => {
    listeners.removeAll();
    saveSoon.flush();
    root.remove();
  };
}

export default { render };
