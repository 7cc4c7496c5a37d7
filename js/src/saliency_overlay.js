// Saliency overlay widget (anywidget front end): the input image with an attribution map blended over it,
// a class picker (top-5 plus search over every class name), a method picker, and a side-by-side mode that
// shows several methods on one shared 0..1 colour scale. Python sends each map as uint8 bytes; opacity and
// colormap are applied here, so moving the slider or switching colormap needs no round trip.
// Answers echo the request id of the control change they answer; only the newest is shown.
// On a video model the image is a clip [T,H,W,3] and each map a [T,H,W] volume: the frame slider and play
// button blend frame by frame here.
import { sendAction } from './shared/actions.js';
import { isEmptyArray, toTypedArray } from './shared/arrays.js';
import { colormapNames } from './shared/colormaps.js';
import { showComputing } from './shared/computing.js';
import { h, setOptions } from './shared/dom.js';
import { rgbaToCanvas } from './shared/images.js';
import { clampFrame, FRAMES_CSS, frameControls, itemOf } from './shared/frames.js';
import { Listeners } from './shared/listeners.js';
import { blendOverlay, colorbarPixels, labelIndex, searchLabels } from './shared/overlay.js';
import { throttledTraits } from './shared/requests.js';
import { ViewRequests } from './shared/view_requests.js';
import { scopedStyle } from './shared/styles.js';
import { drawError } from './shared/panels.js';

const SINGLE_SIZE = 336;
const SIDE_SIZE = 224;
const THUMB_SIZE = 64;
const MATCHES_SHOWN = 8;
const SEND_INTERVAL_MS = 33;
const CURVE_WIDTH = 420;
const CURVE_HEIGHT = 180;
const CURVE_COLORS = ['#1976d2', '#e53935', '#43a047', '#fb8c00', '#8e24aa', '#00897b'];

const CSS = `
.cnnw-row { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; }
.cnnw-row label { display: inline-flex; gap: 4px; align-items: center; }
.cnnw-maps { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
.cnnw-panel { display: flex; flex-direction: column; align-items: center; gap: 2px; }
.cnnw-panel canvas { image-rendering: auto; }
.cnnw-title, .cnnw-note, .cnnw-caption, .cnnw-methods-note { color: var(--jp-ui-font-color2, #666); font-size: 12px; }
.cnnw-title { font-weight: 600; color: inherit; }
.cnnw-matches { display: flex; flex-wrap: wrap; gap: 4px; }
.cnnw-matches button { font-size: 11px; padding: 1px 6px; cursor: pointer; }
.cnnw-compare-list { display: flex; flex-wrap: wrap; gap: 8px; }
.cnnw-colorbar-row { display: flex; gap: 6px; align-items: center; }
.cnnw-sanity { border-top: 1px solid var(--jp-border-color2, #ddd); padding-top: 6px; display: flex; flex-direction: column; align-items: flex-start; gap: 6px; }
.cnnw-sanity-maps { display: grid; gap: 2px; align-items: center; }
${FRAMES_CSS}`;

function buildView(onFrame) {
  const ui = {
    frames: frameControls(onFrame),
    methodsNote: h('div', { className: 'cnnw-methods-note' }), // not .cnnw-caption: the caption below is the first one
    classSelect: h('select', { className: 'cnnw-class' }),
    search: h('input', { className: 'cnnw-search', type: 'search', placeholder: 'any class…', size: 16 }),
    matches: h('div', { className: 'cnnw-matches' }),
    method: h('select', { className: 'cnnw-method' }),
    layer: h('select', { className: 'cnnw-layer' }),
    reduce: h('select', { className: 'cnnw-reduce' }),
    opacity: h('input', { className: 'cnnw-opacity', type: 'range', min: 0, max: 1, step: 0.01 }),
    colormap: h('select', { className: 'cnnw-colormap' }),
    sideBySide: h('input', { className: 'cnnw-side-by-side', type: 'checkbox' }),
    compare: h('div', { className: 'cnnw-compare-list' }),
    samples: h('input', { className: 'cnnw-samples', type: 'number', min: 1, max: 200, step: 1, size: 4 }),
    noise: h('input', { className: 'cnnw-noise', type: 'range', min: 0, max: 0.5, step: 0.01 }),
    noiseValue: h('span', { className: 'cnnw-note' }),
    steps: h('input', { className: 'cnnw-steps', type: 'number', min: 2, max: 300, step: 1, size: 4 }),
    baseline: h('select', { className: 'cnnw-baseline' }),
    computing: h('span', { className: 'cnnw-note cnnw-computing', textContent: 'computing…' }),
    error: h('div', { className: 'cnnw-error' }),
    maps: h('div', { className: 'cnnw-maps' }),
    colorbar: h('canvas', { className: 'cnnw-colorbar', width: 160, height: 10 }),
    caption: h('div', { className: 'cnnw-caption' }),
    sanityRun: h('button', { className: 'cnnw-sanity-run', textContent: 'run sanity check' }),
    sanityNote: h('span', { className: 'cnnw-note' }),
    sanityCurve: h('canvas', { className: 'cnnw-sanity-curve', width: CURVE_WIDTH, height: CURVE_HEIGHT }),
    sanityMaps: h('div', { className: 'cnnw-sanity-maps' }),
  };
  const labelled = (text, control) => h('label', {}, text, control);
  ui.layerLabel = labelled('layer', ui.layer);
  ui.methodLabel = labelled('method', ui.method);
  ui.compareRow = h('div', { className: 'cnnw-row' }, h('span', { className: 'cnnw-note', textContent: 'compare:' }), ui.compare);
  ui.smoothRow = h('div', { className: 'cnnw-row cnnw-smooth-options' }, h('span', { className: 'cnnw-title', textContent: 'SmoothGrad' }),
    labelled('samples', ui.samples), labelled('noise', ui.noise), ui.noiseValue);
  ui.igRow = h('div', { className: 'cnnw-row cnnw-ig-options' }, h('span', { className: 'cnnw-title', textContent: 'Integrated gradients' }),
    labelled('steps', ui.steps), labelled('baseline', ui.baseline));
  ui.root = h('div', { className: 'cnnw-saliency-overlay' },
    scopedStyle('cnnw-saliency-overlay', CSS),
    h('div', { className: 'cnnw-row' }, labelled('class', ui.classSelect), ui.search, ui.matches),
    h('div', { className: 'cnnw-row' }, ui.methodLabel, ui.layerLabel, labelled('map', ui.reduce),
      labelled('side by side', ui.sideBySide), ui.computing, ui.error),
    ui.methodsNote,
    ui.compareRow,
    ui.smoothRow,
    ui.igRow,
    h('div', { className: 'cnnw-row' }, labelled('opacity', ui.opacity), labelled('colormap', ui.colormap),
      h('div', { className: 'cnnw-colorbar-row' }, h('span', { className: 'cnnw-note', textContent: '0' }), ui.colorbar,
        h('span', { className: 'cnnw-note', textContent: '1 (each map\u2019s 99.5th percentile)' }))),
    ui.maps,
    ui.frames.root,
    ui.caption,
    h('div', { className: 'cnnw-sanity' },
      h('div', { className: 'cnnw-row' }, ui.sanityRun, ui.sanityNote),
      ui.sanityCurve, ui.sanityMaps));
  setOptions(ui.reduce, [['abs', '|value| (max over channels)'], ['positive', 'positive part']], 'abs');
  setOptions(ui.colormap, colormapNames.map((name) => [name, name]), colormapNames[0]);
  setOptions(ui.baseline, [['zero', 'zero input (mean color)'], ['black', 'black'], ['blur', 'blurred image']], 'zero');
  return ui;
}

const OPTION_TRAITS = ['smoothgrad_samples', 'smoothgrad_noise', 'ig_steps', 'ig_baseline'];

/** The methods shown for the model state right now. */
function shownMethods(model) {
  return model.get('side_by_side') ? model.get('compare') ?? [] : [model.get('method')];
}

/** Decoded maps: [K,H,W] for an image, [K,T,H,W] for a clip; `plane(k, t)` is method k's map at frame t. */
function decodeMaps(maps) {
  const video = maps.shape.length === 4;
  const [count, steps, height, width] = video ? maps.shape : [maps.shape[0], 1, ...maps.shape.slice(1)];
  const values = toTypedArray(maps);
  const plane = (index, step) => itemOf(values, [count * steps, height, width], index * steps + step);
  return { message: maps, count, steps, plane, width, height, titles: maps.titles ?? maps.methods };
}

function drawCurves(canvas, sanity) {
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, width, height);
  const steps = (sanity.steps?.length ?? 0) + 1;
  const [left, right, top, bottom] = [36, 8, 8, 20];
  const x = (i) => left + ((width - left - right) * i) / Math.max(1, steps - 1);
  const y = (v) => top + ((height - top - bottom) * (1 - (v + 0.2) / 1.2));
  ctx.strokeStyle = '#bbb';
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(left, y(0));
  ctx.lineTo(width - right, y(0));
  ctx.stroke();
  ctx.fillStyle = '#666';
  ctx.font = '10px sans-serif';
  ctx.fillText('1', 22, y(1) + 3);
  ctx.fillText('0', 22, y(0) + 3);
  ctx.fillText('trained → randomized, top layer first', left, height - 5);
  (sanity.correlations ?? []).forEach((values, index) => {
    ctx.strokeStyle = CURVE_COLORS[index % CURVE_COLORS.length];
    ctx.lineWidth = 2;
    ctx.beginPath();
    values.forEach((value, step) => (step === 0 ? ctx.moveTo(x(step), y(value)) : ctx.lineTo(x(step), y(value))));
    ctx.stroke();
  });
}

function render({ model, el }) {
  const listeners = new Listeners();
  const { commit, saveSoon } = throttledTraits(model, SEND_INTERVAL_MS);
  const ui = buildView((frame) => commit('frame', frame)); // the change event redraws
  el.append(ui.root);
  const requests = new ViewRequests(model); // maps answers echo the request id of the control change
  let shown = null; // decoded maps on screen (kept while a newer view is computing)
  let photo = null; // decoded RGB image
  let decodeError = '';

  const colormap = () => (colormapNames.includes(model.get('colormap')) ? model.get('colormap') : colormapNames[0]);
  const methodInfo = () => new Map((model.get('methods') ?? []).map((info) => [info.name, info]));

  function showError() {
    drawError(ui.error, model.get('error') || decodeError);
  }

  function acceptImage() {
    const image = model.get('image');
    if (isEmptyArray(image)) {
      photo = null;
      return;
    }
    const clip = image.shape.length === 4;
    const [steps, height, width] = clip ? image.shape : [1, ...image.shape];
    const rgb = toTypedArray(image);
    photo = { steps, height, width, frame: (step) => (clip ? itemOf(rgb, image.shape, step) : rgb) };
  }

  function acceptMaps() {
    const maps = model.get('maps');
    if (isEmptyArray(maps) || maps === shown?.message) return;
    if (!requests.accept(maps.request)) return; // an answer to an older request: keep the previous maps
    try {
      shown = decodeMaps(maps);
      decodeError = '';
    } catch (error) {
      decodeError = `maps: ${error.message}`;
    }
    showError();
  }

  function drawMaps() {
    const fresh = shown && photo && shown.width === photo.width && shown.height === photo.height && shown.steps === photo.steps;
    showComputing(ui.computing, model, requests.pending());
    ui.frames.show(model.get('frame'), photo?.steps ?? 1, `frame ${model.get('frame')} of ${photo?.steps ?? 1}`);
    if (!fresh) return;
    const size = shown.count > 1 ? SIDE_SIZE : SINGLE_SIZE;
    const opacity = model.get('opacity');
    const step = clampFrame(model.get('frame'), shown.steps);
    const panels = shown.message.methods.map((method, index) => {
      const canvas = h('canvas', { className: 'cnnw-overlay', width: shown.width, height: shown.height });
      canvas.style.width = `${size}px`;
      canvas.dataset.method = method;
      const rgba = blendOverlay(photo.frame(step), shown.plane(index, step), shown.width, shown.height, colormap(), opacity);
      canvas.getContext('2d').putImageData(new ImageData(rgba, shown.width, shown.height), 0, 0);
      return h('div', { className: 'cnnw-panel' }, h('div', { className: 'cnnw-title', textContent: shown.titles[index] }), canvas);
    });
    ui.maps.replaceChildren(...panels);
    const layerNote = shown.message.methods.some((name) => methodInfo().get(name)?.cam) ? `, CAMs at ${shown.message.layer}` : '';
    const notes = (shown.message.notes ?? []).map((note) => ` \u2014 ${note}`).join('');
    ui.caption.textContent = `class ${shown.message.target}: ${shown.message.label}${layerNote}${notes}`;
  }

  function drawColorbar() {
    const { width, height } = ui.colorbar;
    ui.colorbar.getContext('2d').putImageData(new ImageData(colorbarPixels(colormap(), width, height), width, height), 0, 0);
  }

  function drawClassOptions() {
    const predictions = model.get('predictions') ?? [];
    const labels = model.get('labels') ?? [];
    const target = model.get('target');
    const pairs = predictions.map(({ label, index, probability }) => [index, `${label} — ${(probability * 100).toFixed(1)}%`]);
    if (target >= 0 && !predictions.some(({ index }) => index === target)) pairs.push([target, `${labels[target] ?? `class ${target}`}`]);
    setOptions(ui.classSelect, pairs, target);
  }

  function drawMatches() {
    const labels = model.get('labels') ?? [];
    const found = searchLabels(labels, ui.search.value, MATCHES_SHOWN);
    ui.matches.replaceChildren(...found.map((index) => {
      const button = h('button', { className: 'cnnw-match', textContent: labels[index], type: 'button' });
      button.dataset.index = index;
      return button;
    }));
  }

  function drawControls() {
    const info = methodInfo();
    const names = [...info.keys()];
    setOptions(ui.method, names.map((name) => [name, info.get(name).title]), model.get('method'));
    setOptions(ui.layer, (model.get('layers') ?? []).map((name) => [name, name]), model.get('layer'));
    const compare = new Set(model.get('compare') ?? []);
    ui.compare.replaceChildren(...names.map((name) => {
      const box = h('input', { type: 'checkbox', checked: compare.has(name), value: name, className: 'cnnw-compare' });
      return h('label', {}, box, info.get(name).title);
    }));
    const side = Boolean(model.get('side_by_side'));
    ui.sideBySide.checked = side;
    ui.compareRow.hidden = !side;
    ui.methodLabel.hidden = side;
    const shown = shownMethods(model);
    ui.layerLabel.hidden = !shown.some((name) => info.get(name)?.cam);
    ui.smoothRow.hidden = !shown.includes('smoothgrad');
    ui.igRow.hidden = !shown.includes('integrated_gradients');
    ui.samples.value = model.get('smoothgrad_samples');
    ui.noise.value = model.get('smoothgrad_noise');
    ui.noiseValue.textContent = `${Math.round(model.get('smoothgrad_noise') * 100)}% of the input range`;
    ui.steps.value = model.get('ig_steps');
    ui.baseline.value = model.get('ig_baseline');
    ui.reduce.value = model.get('reduce');
    ui.opacity.value = model.get('opacity');
    ui.colormap.value = colormap();
  }

  function drawSanity() {
    ui.methodsNote.textContent = model.get('methods_note') ?? '';
    ui.methodsNote.hidden = !ui.methodsNote.textContent;
    const sanity = model.get('sanity');
    const has = !isEmptyArray(sanity);
    ui.sanityCurve.hidden = !has;
    ui.sanityMaps.hidden = !has;
    ui.sanityNote.textContent = has
      ? `rank correlation with the trained model's map as layers are re-initialized top down (class ${sanity.label}); `
        + 'a map that stays the same does not depend on what the model learned'
      : 'randomize the model\u2019s layers (on a copy) and see which maps change';
    if (!has) return;
    drawCurves(ui.sanityCurve, sanity);
    const [methods, steps, height, width] = sanity.shape;
    const values = toTypedArray(sanity);
    const cells = [];
    ui.sanityMaps.style.gridTemplateColumns = `120px repeat(${steps}, ${THUMB_SIZE}px)`;
    for (let m = 0; m < methods; m++) {
      const color = CURVE_COLORS[m % CURVE_COLORS.length];
      cells.push(h('span', { className: 'cnnw-title', textContent: sanity.titles[m], style: `color: ${color}` }));
      for (let s = 0; s < steps; s++) {
        const offset = (m * steps + s) * height * width;
        const rgb = new Uint8Array(height * width * 3); // black: the map alone, opacity 1
        const rgba = blendOverlay(rgb, values.subarray(offset, offset + height * width), width, height, colormap(), 1);
        const canvas = rgbaToCanvas(rgba, width, height);
        canvas.style.width = `${THUMB_SIZE}px`;
        canvas.title = s === 0 ? 'trained' : `after re-initializing ${sanity.steps.slice(0, s).join(', ')}`;
        cells.push(canvas);
      }
    }
    ui.sanityMaps.replaceChildren(...cells);
  }

  const onModel = (events, fn) => events.split(' ').forEach((event) => listeners.onModel(model, event, fn));
  onModel('change:error', showError);
  onModel('change:image', () => {
    acceptImage();
    drawMaps();
    drawSanity();
  });
  onModel('change:predictions change:labels change:target', drawClassOptions);
  const optionEvents = OPTION_TRAITS.map((name) => `change:${name}`).join(' ');
  onModel(`change:methods change:layers change:compare change:side_by_side change:method change:layer change:reduce ${optionEvents}`, drawControls);
  onModel('change:request', () => {
    requests.settle();
    drawMaps();
  });
  onModel('change:frame', drawMaps);
  onModel('change:methods_note', drawSanity);
  onModel('change:maps', () => {
    acceptMaps();
    drawMaps();
  });
  onModel('change:busy change:progress', drawMaps);
  onModel('change:opacity', () => {
    ui.opacity.value = model.get('opacity');
    drawMaps();
  });
  onModel('change:colormap', () => {
    ui.colormap.value = colormap();
    drawMaps();
    drawColorbar();
    drawSanity();
  });
  onModel('change:sanity', drawSanity);

  const request = requests.committing(commit);
  listeners.onDom(ui.classSelect, 'change', () => request('target', Number(ui.classSelect.value)));
  listeners.onDom(ui.search, 'input', drawMatches);
  listeners.onDom(ui.search, 'keydown', (event) => {
    if (event.key !== 'Enter') return;
    const labels = model.get('labels') ?? [];
    const exact = labelIndex(labels, ui.search.value);
    const index = exact >= 0 ? exact : searchLabels(labels, ui.search.value, 1)[0];
    if (index !== undefined && index >= 0) request('target', index);
  });
  listeners.onDom(ui.matches, 'click', (event) => {
    const index = Number(event.target?.dataset?.index);
    if (Number.isInteger(index)) request('target', index);
  });
  listeners.onDom(ui.method, 'change', () => request('method', ui.method.value));
  listeners.onDom(ui.layer, 'change', () => request('layer', ui.layer.value));
  listeners.onDom(ui.reduce, 'change', () => request('reduce', ui.reduce.value));
  listeners.onDom(ui.sideBySide, 'change', () => request('side_by_side', ui.sideBySide.checked));
  listeners.onDom(ui.compare, 'change', () => {
    const picked = [...ui.compare.querySelectorAll('input:checked')].map((box) => box.value);
    if (picked.length) request('compare', picked);
    else drawControls(); // keep at least one method
  });
  const commitNumber = (name, input) => {
    const value = Number(input.value);
    const [low, high] = [Number(input.min), Number(input.max)];
    if (Number.isFinite(value) && value >= low && value <= high) request(name, value);
    else drawControls(); // out of range: show the current value again
  };
  listeners.onDom(ui.samples, 'change', () => commitNumber('smoothgrad_samples', ui.samples));
  listeners.onDom(ui.noise, 'change', () => commitNumber('smoothgrad_noise', ui.noise));
  listeners.onDom(ui.noise, 'input', () => { ui.noiseValue.textContent = `${Math.round(Number(ui.noise.value) * 100)}% of the input range`; });
  listeners.onDom(ui.steps, 'change', () => commitNumber('ig_steps', ui.steps));
  listeners.onDom(ui.baseline, 'change', () => request('ig_baseline', ui.baseline.value));
  listeners.onDom(ui.opacity, 'input', () => commit('opacity', Number(ui.opacity.value)));
  listeners.onDom(ui.colormap, 'change', () => commit('colormap', ui.colormap.value));
  listeners.onDom(ui.sanityRun, 'click', () => { saveSoon.flush(); sendAction(model, 'run_sanity_check'); });

  showError();
  acceptImage();
  drawClassOptions();
  drawControls();
  drawColorbar();
  acceptMaps();
  drawMaps();
  drawSanity();

  return () => {
    ui.frames.dispose();
    listeners.removeAll();
    saveSoon.flush();
    ui.root.remove();
  };
}

export default { render };
