// Invariance probe (anywidget front end): shift / angle / scale sliders, the transformed image with its top-5,
// and one chart per transformation of the relative feature distance at several layers and the probability of
// the true class over the whole range, with a marker at the current slider value. Python transforms and
// predicts; the curves arrive once, so moving a slider only redraws markers here.
import { h } from './shared/dom.js';
import { Listeners } from './shared/listeners.js';
import { PANEL_CSS, drawError, drawMessage, drawPredictions, setSlider, slider } from './shared/panels.js';
import { scopedStyle } from './shared/styles.js';
import { drawLines, legendEntries } from './shared/plot.js';
import { throttledTraits } from './shared/requests.js';

const IMAGE_BOX = 224;
const SEND_INTERVAL_MS = 33;
const KINDS = [
  { kind: 'translate', trait: 'shift', text: 'shift', min: -60, max: 60, step: 1, format: (v) => `${v} px` },
  { kind: 'rotate', trait: 'angle', text: 'angle', min: -180, max: 180, step: 1, format: (v) => `${v}°` },
  { kind: 'scale', trait: 'scale', text: 'scale', min: 0.5, max: 2, step: 0.01, format: (v) => `${v.toFixed(2)}×` },
];

function curveSeries(curves, kind) {
  const data = curves?.[kind];
  if (!data) return [];
  return [
    ...curves.layers.map((layer) => ({ label: layer, values: data.distances[layer] })),
    { label: `p(${curves.label})`, values: data.probability, color: '#000', dashed: true },
  ];
}

function render({ model, el }) {
  const listeners = new Listeners();
  const image = h('canvas', { className: 'cnnw-image' });
  const predictions = h('div', { className: 'cnnw-predictions' });
  const error = h('div', { className: 'cnnw-error' });
  const busy = h('span', { className: 'cnnw-note', textContent: 'computing…' });
  const legend = h('div', { className: 'cnnw-legend' });
  const controls = KINDS.map((spec) => ({ ...spec, control: slider(spec.text, { ...spec, value: model.get(spec.trait) }), chart: h('canvas', { className: `cnnw-curve cnnw-curve-${spec.kind}` }) }));
  const root = h('div', { className: 'cnnw-panel cnnw-invariance-probe' },
    scopedStyle('cnnw-invariance-probe', PANEL_CSS),
    h('div', { className: 'cnnw-row' }, image, h('div', { className: 'cnnw-figure' }, predictions, h('div', { className: 'cnnw-caption cnnw-label' }))),
    h('div', { className: 'cnnw-row cnnw-controls' }, ...controls.map((c) => c.control.root), busy, error),
    h('div', { className: 'cnnw-row' }, ...controls.map((c) => h('div', { className: 'cnnw-figure' }, c.chart,
      h('div', { className: 'cnnw-caption', textContent: `${c.kind}: relative feature distance, p(true class)` })))),
    legend);
  el.append(root);
  const { commit, saveSoon } = throttledTraits(model, SEND_INTERVAL_MS);

  const drawImage = () => drawMessage(image, model.get('image'), IMAGE_BOX);
  const drawTop = () => {
    drawPredictions(predictions, model.get('predictions'), model.get('label'));
    root.querySelector('.cnnw-label').textContent = model.get('label') ? `true class: ${model.get('label')}` : '';
  };
  function drawCharts() {
    const curves = model.get('curves');
    for (const { kind, trait, chart } of controls) {
      drawLines(chart, { x: curves?.[kind]?.values, series: curveSeries(curves, kind), width: 300, height: 170,
        marker: model.get(trait), log: kind === 'scale', yRange: [0, 1.2] });
    }
    legend.replaceChildren(...legendEntries(curveSeries(curves, 'translate')).map(([label, color, dashed]) =>
      h('span', {}, h('span', { className: 'cnnw-swatch', style: `background: ${dashed ? 'repeating-linear-gradient(90deg,#000 0 4px,transparent 4px 7px)' : color}` }), label)));
  }
  const drawState = () => {
    drawError(error, model.get('error'));
    busy.hidden = !model.get('busy');
  };

  for (const { trait, control } of controls) {
    listeners.onDom(control.input, 'input', () => {
      const value = Number(control.input.value);
      control.readout.textContent = control.format(value);
      commit(trait, value);
      drawCharts();
    });
    listeners.onModel(model, `change:${trait}`, () => {
      setSlider(control, model.get(trait));
      drawCharts();
    });
  }
  listeners.onModel(model, 'change:image', drawImage);
  listeners.onModel(model, 'change:predictions', drawTop);
  listeners.onModel(model, 'change:curves', drawCharts);
  listeners.onModel(model, 'change:error', drawState);
  listeners.onModel(model, 'change:busy', drawState);
  drawImage();
  drawTop();
  drawCharts();
  drawState();
  return () => {
    listeners.removeAll();
    saveSoon.flush();
    root.remove();
  };
}

export default { render };
