// Confusion view widget (anywidget front end): two classes of a video model on one clip, frame by frame — where
// the evidence for and against each lies (Grad-CAM per class, signed, one shared scale), their difference (red: the
// first class, blue: the second), both probabilities, and each map's mean per frame. Python sends every frame's
// maps as uint8 (128 = 0) once per class / layer pick (answers echo the request id); the frame slider, play and
// opacity redraw here.
import { isEmptyArray, toTypedArray } from './shared/arrays.js';
import { showComputing } from './shared/computing.js';
import { h, setOptions } from './shared/dom.js';
import { clampFrame, FRAMES_CSS, frameControls, itemOf } from './shared/frames.js';
import { Listeners } from './shared/listeners.js';
import { blendOverlay } from './shared/overlay.js';
import { drawError, drawPredictions, PANEL_CSS } from './shared/panels.js';
import { drawLines, legendEntries } from './shared/plot.js';
import { throttledTraits } from './shared/requests.js';
import { scopedStyle } from './shared/styles.js';
import { ViewRequests } from './shared/view_requests.js';

const PANEL_SIZE = 200;
const SEND_INTERVAL_MS = 33;
const EVIDENCE_COLORMAP = 'coolwarm'; // signed maps: blue against, white none, red for
const FIRST_COLOR = '#e53935';
const SECOND_COLOR = '#1976d2';
const PANELS = ['first', 'second', 'difference'];

const CSS = `${PANEL_CSS}
.cnnw-panels { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
.cnnw-panel { display: flex; flex-direction: column; align-items: center; gap: 2px; }
.cnnw-panel canvas { width: ${PANEL_SIZE}px; image-rendering: auto; }
.cnnw-title { font-weight: 600; font-size: 12px; }
.cnnw-two { display: grid; grid-template-columns: minmax(60px, max-content) 160px 4em; gap: 2px 6px; align-items: center; font-size: 12px; }
.cnnw-timeline-box { display: flex; flex-direction: column; gap: 2px; }
${FRAMES_CSS}`;

function buildView(onFrame) {
  const select = (className) => h('select', { className });
  const ui = {
    first: select('cnnw-first'),
    second: select('cnnw-second'),
    layer: select('cnnw-layer'),
    opacity: h('input', { className: 'cnnw-opacity', type: 'range', min: 0, max: 1, step: 0.01 }),
    computing: h('span', { className: 'cnnw-note', textContent: 'computing…' }),
    error: h('div', { className: 'cnnw-error' }),
    two: h('div', { className: 'cnnw-two' }),
    predictions: h('div', { className: 'cnnw-predictions' }),
    panels: h('div', { className: 'cnnw-panels' }),
    timeline: h('canvas', { className: 'cnnw-timeline' }),
    legend: h('div', { className: 'cnnw-legend' }),
    caption: h('div', { className: 'cnnw-caption' }),
    frames: frameControls(onFrame),
  };
  ui.canvases = PANELS.map((name) => h('canvas', { className: `cnnw-evidence cnnw-evidence-${name}` }));
  ui.titles = PANELS.map(() => h('div', { className: 'cnnw-title' }));
  ui.panels.append(...PANELS.map((_, index) => h('div', { className: 'cnnw-panel' }, ui.titles[index], ui.canvases[index])));
  ui.panels.append(h('div', { className: 'cnnw-timeline-box' }, ui.timeline, ui.legend));
  const labelled = (text, control) => h('label', {}, text, control);
  ui.root = h('div', { className: 'cnnw-confusion-view' },
    scopedStyle('cnnw-confusion-view', CSS),
    h('div', { className: 'cnnw-row cnnw-controls' }, labelled('class', ui.first), labelled('vs', ui.second),
      labelled('Grad-CAM at', ui.layer), ui.computing, ui.error),
    h('div', { className: 'cnnw-row' }, ui.two, h('div', {}, h('div', { className: 'cnnw-caption', textContent: 'top predictions' }), ui.predictions)),
    ui.panels,
    ui.frames.root,
    h('div', { className: 'cnnw-row cnnw-controls' }, labelled('opacity', ui.opacity)),
    ui.caption);
  return ui;
}

function render({ model, el }) {
  const listeners = new Listeners();
  const { commit, saveSoon } = throttledTraits(model, SEND_INTERVAL_MS);
  const ui = buildView((frame) => commit('frame', frame)); // the change event redraws
  el.append(ui.root);
  const requests = new ViewRequests(model);
  let shown = null; // the evidence message on screen (kept while a newer one is computing)
  let clip = null; // decoded frames

  const showError = () => drawError(ui.error, model.get('error'));

  function acceptImage() {
    const image = model.get('image');
    clip = isEmptyArray(image) ? null : { values: toTypedArray(image), shape: image.shape };
  }

  function acceptEvidence() {
    const evidence = model.get('evidence');
    if (isEmptyArray(evidence) || evidence === shown?.message) return;
    if (!requests.accept(evidence.request)) return; // an answer to an older request
    const [, steps, height, width] = evidence.shape;
    shown = { message: evidence, values: toTypedArray(evidence), steps, height, width };
  }

  function drawControls() {
    const labels = model.get('labels') ?? [];
    const pairs = labels.map((label, index) => [index, label]);
    setOptions(ui.first, pairs, model.get('first'));
    setOptions(ui.second, pairs, model.get('second'));
    setOptions(ui.layer, (model.get('layers') ?? []).map((name) => [name, name]), model.get('layer'));
    ui.opacity.value = model.get('opacity');
    drawPredictions(ui.predictions, model.get('predictions'));
  }

  function drawEvidence() {
    showComputing(ui.computing, model, requests.pending());
    const steps = clip?.shape[0] ?? 1;
    const frame = clampFrame(model.get('frame'), steps);
    ui.frames.show(frame, steps, `frame ${frame} of ${steps}`);
    if (!shown || !clip || shown.steps !== steps) return;
    const { message, values, height, width } = shown;
    const [first, second] = message.names;
    const rgb = itemOf(clip.values, clip.shape, frame);
    PANELS.forEach((_, index) => {
      const canvas = ui.canvases[index];
      canvas.width = width;
      canvas.height = height;
      const gray = itemOf(values, [3 * steps, height, width], index * steps + frame);
      const rgba = blendOverlay(rgb, gray, width, height, EVIDENCE_COLORMAP, model.get('opacity'));
      canvas.getContext('2d').putImageData(new ImageData(rgba, width, height), 0, 0);
    });
    ui.titles[0].textContent = `${first}: red for, blue against`;
    ui.titles[1].textContent = `${second}: red for, blue against`;
    ui.titles[2].textContent = `${first} (red) vs ${second} (blue)`;
    ui.two.replaceChildren(...message.names.flatMap((name, index) => [
      h('span', { textContent: name, style: `color: ${index ? SECOND_COLOR : FIRST_COLOR}` }),
      h('div', { className: 'cnnw-bar-track' }, h('div', { className: 'cnnw-bar', style: `width: ${message.probabilities[index] * 100}%; background: ${index ? SECOND_COLOR : FIRST_COLOR}` })),
      h('span', { className: 'cnnw-percent', textContent: `${(message.probabilities[index] * 100).toFixed(1)}%` }),
    ]));
    const series = [
      { label: `${first} (mean per frame)`, values: message.totals[0], color: FIRST_COLOR },
      { label: second, values: message.totals[1], color: SECOND_COLOR },
      { label: 'difference', values: message.totals[2], color: '#444', dashed: true },
    ];
    drawLines(ui.timeline, { series, width: 280, height: PANEL_SIZE - 40, marker: frame, xLabel: 'frame' });
    ui.legend.replaceChildren(...legendEntries(series).map(([label, color, dashed]) => h('span', {},
      h('span', { className: 'cnnw-swatch', style: `background: ${color}${dashed ? '; opacity: 0.6' : ''}` }), label)));
    const margin = message.scores[0] - message.scores[1];
    const peak = message.totals[2].reduce((best, value, index, all) => (Math.abs(value) > Math.abs(all[best]) ? index : best), 0);
    ui.caption.textContent = `Grad-CAM at ${message.layer}; scores ${message.scores[0].toFixed(2)} vs ${message.scores[1].toFixed(2)} `
      + `(${first} ${margin >= 0 ? 'ahead' : 'behind'} by ${Math.abs(margin).toFixed(2)}); the evidence differs most at frame ${peak}. `
      + `The two classes' maps share one scale (\u00b1${Number(message.scale).toPrecision(3)}); the difference spans \u00b1${Number(message.bound).toPrecision(3)}.`;
  }

  const onModel = (events, fn) => events.split(' ').forEach((event) => listeners.onModel(model, event, fn));
  onModel('change:error', showError);
  onModel('change:image', () => {
    acceptImage();
    drawEvidence();
  });
  onModel('change:labels change:first change:second change:layers change:layer change:predictions', drawControls);
  onModel('change:evidence', () => {
    acceptEvidence();
    drawEvidence();
  });
  onModel('change:request', () => {
    requests.settle();
    drawEvidence();
  });
  onModel('change:frame change:opacity change:busy change:progress', () => {
    ui.opacity.value = model.get('opacity');
    drawEvidence();
  });

  const request = requests.committing(commit);
  listeners.onDom(ui.first, 'change', () => request('first', Number(ui.first.value)));
  listeners.onDom(ui.second, 'change', () => request('second', Number(ui.second.value)));
  listeners.onDom(ui.layer, 'change', () => request('layer', ui.layer.value));
  listeners.onDom(ui.opacity, 'input', () => commit('opacity', Number(ui.opacity.value)));

  showError();
  acceptImage();
  drawControls();
  acceptEvidence();
  drawEvidence();

  return () => {
    ui.frames.dispose();
    listeners.removeAll();
    saveSoon.flush();
    ui.root.remove();
  };
}

export default { render };
