// Occlusion slider (anywidget front end): the image with a gray square the user drags (or moves with x/y
// sliders) and a readout of the chosen class's probability under it; the occlusion heatmap over the image
// (it fills in coarse to fine while Python computes); the "which class wins where" map; and, with a layer
// and channel picked, that feature map's total activation under occlusion. Python computes the numbers;
// this file draws them, colours them (colormap and opacity change here only) and keeps the drag responsive:
// sends are throttled to ~30 per second, and answers older than the newest request are dropped.
// On a clip (`length` > 0) the occluder is a tube over `frames` frames centred on the frame shown: a frame
// slider (and play) moves through the clip, and the heatmap is the score drop of the tubes centred there.
import { isEmptyArray, toTypedArray } from './shared/arrays.js';
import { colormapNames } from './shared/colormaps.js';
import { canvasPoint, h, setOptions } from './shared/dom.js';
import { rgbaToCanvas, rgbToImageData } from './shared/images.js';
import { Listeners } from './shared/listeners.js';
import { centeredBox, clampPoint, classColors, heatmapRGBA, mapPlacement, percent, readoutText } from './shared/occlusion.js';
import { throttledTraits } from './shared/requests.js';
import { scopedStyle } from './shared/styles.js';
import { drawError } from './shared/panels.js';
import { ViewRequests } from './shared/view_requests.js';

const MAIN_BOX = 384;
const PANEL_BOX = 224;
const SEND_INTERVAL_MS = 33;
const OCCLUDER_FILL = 'rgba(128, 128, 128, 0.85)';
const OCCLUDER_EDGE = '#ffffff';
const PLAY_INTERVAL_MS = 250; // 4 frames a second: each frame asks Python for its readout and heatmap

const CSS = `
.cnnw-occlusion .cnnw-row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.cnnw-occlusion .cnnw-column { display: flex; flex-direction: column; gap: 6px; }
.cnnw-occlusion .cnnw-controls { display: grid; grid-template-columns: max-content 180px 4em; gap: 4px 8px; align-items: center; }
.cnnw-occlusion canvas.cnnw-main { cursor: grab; touch-action: none; }
.cnnw-occlusion canvas.cnnw-main.cnnw-dragging { cursor: grabbing; }
.cnnw-occlusion .cnnw-readout { font-size: 15px; max-width: 420px; }
.cnnw-occlusion .cnnw-readout.cnnw-pending { opacity: 0.6; }
.cnnw-occlusion .cnnw-probability { font-size: 28px; font-weight: 600; font-variant-numeric: tabular-nums; }
.cnnw-occlusion .cnnw-bar-track { height: 10px; width: 260px; background: var(--jp-layout-color2, #eee); }
.cnnw-occlusion .cnnw-bar { height: 100%; background: var(--jp-brand-color1, #1976d2); }
.cnnw-occlusion .cnnw-error { flex: none; white-space: normal; overflow: visible; max-width: 640px; }
.cnnw-occlusion .cnnw-legend { display: flex; flex-direction: column; gap: 2px; font-size: 12px; }
.cnnw-occlusion .cnnw-swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
.cnnw-occlusion progress { width: 260px; }
.cnnw-occlusion select.cnnw-target { max-width: 260px; }
`;

function range(min, max, step) {
  return h('input', { type: 'range', min, max, step });
}

function buildView() {
  const ui = {
    main: h('canvas', { className: 'cnnw-main' }),
    scale: h('div', { className: 'cnnw-caption cnnw-scale' }),
    probability: h('div', { className: 'cnnw-probability' }),
    bar: h('div', { className: 'cnnw-bar' }),
    readoutText: h('div', { className: 'cnnw-readout-text' }),
    target: h('select', { className: 'cnnw-target' }),
    patch: range(4, 224, 1), patchValue: h('span'),
    stride: range(1, 64, 1), strideValue: h('span'),
    x: range(0, 224, 1), xValue: h('span'),
    y: range(0, 224, 1), yValue: h('span'),
    opacity: range(0, 1, 0.05), opacityValue: h('span'),
    fill: h('select', { className: 'cnnw-fill' }),
    colormap: h('select', { className: 'cnnw-colormap' }),
    showHeatmap: h('input', { type: 'checkbox', className: 'cnnw-show-heatmap' }),
    progress: h('progress', { className: 'cnnw-progress', max: 1 }),
    progressNote: h('span', { className: 'cnnw-note' }),
    error: h('div', { className: 'cnnw-error' }),
    topCanvas: h('canvas', { className: 'cnnw-top-map' }),
    legend: h('div', { className: 'cnnw-legend' }),
    topCaption: h('div', { className: 'cnnw-caption' }),
    featureCanvas: h('canvas', { className: 'cnnw-feature-map' }),
    featureCaption: h('div', { className: 'cnnw-caption' }),
    layer: h('select', { className: 'cnnw-layer' }),
    channel: h('input', { type: 'number', min: -1, step: 1, className: 'cnnw-channel', style: 'width: 5em' }),
    frame: range(0, 15, 1), frameValue: h('span'),
    frames: range(1, 16, 1), framesValue: h('span'),
    play: h('button', { className: 'cnnw-play', textContent: '▶', title: 'play the clip' }),
  };
  ui.readout = h('div', { className: 'cnnw-readout' }, ui.probability,
    h('div', { className: 'cnnw-bar-track' }, ui.bar), ui.readoutText);
  const row = (label, control, value = h('span')) => [h('label', { textContent: label }), control, value];
  ui.controls = h('div', { className: 'cnnw-controls' },
    ...row('class', ui.target),
    ...(ui.frameRow = row('frame', h('span', {}, ui.frame, ui.play), ui.frameValue)),
    ...(ui.framesRow = row('tube frames', ui.frames, ui.framesValue)),
    ...row('patch', ui.patch, ui.patchValue),
    ...row('stride', ui.stride, ui.strideValue),
    ...row('fill', ui.fill),
    ...row('x', ui.x, ui.xValue),
    ...row('y', ui.y, ui.yValue),
    ...row('heatmap', h('span', {}, ui.showHeatmap, ' show')),
    ...row('opacity', ui.opacity, ui.opacityValue),
    ...row('colormap', ui.colormap));
  ui.topPanel = h('div', { className: 'cnnw-column' }, h('div', { className: 'cnnw-caption', textContent: 'which class wins where (top-1 under the square)' }),
    h('div', { className: 'cnnw-row' }, ui.topCanvas, ui.legend), ui.topCaption);
  ui.featurePanel = h('div', { className: 'cnnw-column' },
    h('div', { className: 'cnnw-caption' }, 'feature map under occlusion: layer ', ui.layer, ' channel ', ui.channel),
    ui.featureCanvas, ui.featureCaption);
  ui.root = h('div', { className: 'cnnw-occlusion' },
    scopedStyle('cnnw-occlusion', CSS),
    h('div', { className: 'cnnw-row' },
      ui.main,
      h('div', { className: 'cnnw-column' }, ui.readout, ui.scale, ui.controls,
        h('div', {}, ui.progress, ' ', ui.progressNote), ui.error)),
    h('div', { className: 'cnnw-row' }, ui.topPanel, ui.featurePanel));
  setOptions(ui.fill, [['gray', 'gray (dataset mean)'], ['mean', 'image mean colour'], ['blur', 'blurred image']], 'gray');
  setOptions(ui.colormap, colormapNames.map((name) => [name, name]), colormapNames[0]);
  return ui;
}

/** A float32 [ny, nx] map message as an offscreen canvas through `colormap` (low..high). */
function mapCanvas(message, colormap, low, high) {
  const [ny, nx] = message.shape;
  return rgbaToCanvas(heatmapRGBA(toTypedArray(message), nx, ny, low, high, colormap), nx, ny);
}

/** Colour range of the probability heatmap: its lowest value to the higher of its highest and the unoccluded one. */
function heatmapRange(heatmap) {
  let low = Infinity;
  let high = Number.isFinite(heatmap.unoccluded) ? heatmap.unoccluded : -Infinity;
  for (const value of toTypedArray(heatmap)) {
    if (!Number.isFinite(value)) continue;
    low = Math.min(low, value);
    high = Math.max(high, value);
  }
  return Number.isFinite(low) ? [low, high] : [0, 1];
}

function render({ model, el }) {
  const ui = buildView();
  el.append(ui.root);
  const listeners = new Listeners();
  const { commit, saveSoon } = throttledTraits(model, SEND_INTERVAL_MS);
  const requests = new ViewRequests(model); // readouts echo the request id of the move or frame they answer
  let shownReadout = null;
  let imageCanvas = null;
  let dragging = false;
  let local = null; // the occluder position while the user moves it, ahead of Python's trait echo
  let playing = null; // the interval timer while the clip plays

  const size = () => model.get('size') ?? [224, 224];
  const scale = () => MAIN_BOX / Math.max(...size());
  const colormap = () => (colormapNames.includes(model.get('colormap')) ? model.get('colormap') : colormapNames[0]);
  const position = () => local ?? { x: model.get('x'), y: model.get('y') };
  const currentMap = (message) => !isEmptyArray(message) && message.patch === model.get('patch') && message.stride === model.get('stride');

  function decodeImage() {
    const image = model.get('image');
    if (isEmptyArray(image)) return;
    const [height, width] = image.shape;
    imageCanvas = rgbaToCanvas(rgbToImageData(toTypedArray(image), width, height), width, height);
  }

  function drawMapOver(ctx, source, message, alpha) {
    const [ny, nx] = message.shape;
    const place = mapPlacement(message.patch, message.stride, ny, nx);
    ctx.save();
    ctx.globalAlpha = alpha;
    ctx.imageSmoothingEnabled = message.done; // coarse previews stay blocky so they read as previews
    ctx.drawImage(source, 0, 0, nx, ny, place.left, place.top, place.width, place.height);
    ctx.restore();
  }

  function drawMain() {
    const [height, width] = size();
    const s = scale();
    ui.main.width = Math.round(width * s);
    ui.main.height = Math.round(height * s);
    const ctx = ui.main.getContext('2d');
    ctx.setTransform(s, 0, 0, s, 0, 0);
    if (imageCanvas) {
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(imageCanvas, 0, 0, width, height);
    }
    const heatmap = model.get('heatmap');
    if (model.get('show_heatmap') && currentMap(heatmap)) {
      const [low, high] = heatmapRange(heatmap);
      drawMapOver(ctx, mapCanvas(heatmap, colormap(), low, high), heatmap, model.get('opacity'));
      ui.scale.textContent = heatmap.kind === 'drop'
        ? `score drop of ${heatmap.label} with a tube over frames ${heatmap.frames[0]}–${heatmap.frames[1] - 1} centred there: ` +
          `dark ${low.toPrecision(3)}, bright ${high.toPrecision(3)}`
        : `heatmap of P(${heatmap.label}) with the square centred there: dark ${percent(low)}, bright ${percent(high)}`;
    } else {
      ui.scale.textContent = '';
    }
    const { x, y } = position();
    const box = centeredBox(x, y, model.get('patch'), size());
    ctx.fillStyle = OCCLUDER_FILL;
    ctx.fillRect(box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0);
    ctx.strokeStyle = OCCLUDER_EDGE;
    ctx.lineWidth = 1.5 / s;
    ctx.strokeRect(box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  }

  function drawPanel(canvas, draw) {
    const [height, width] = size();
    const s = PANEL_BOX / Math.max(height, width);
    canvas.width = Math.round(width * s);
    canvas.height = Math.round(height * s);
    const ctx = canvas.getContext('2d');
    ctx.setTransform(s, 0, 0, s, 0, 0);
    if (imageCanvas) ctx.drawImage(imageCanvas, 0, 0, width, height);
    draw(ctx);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  }

  function drawTopMap() {
    const top = model.get('top_map');
    ui.topPanel.hidden = !model.get('show_heatmap') || !currentMap(top);
    if (ui.topPanel.hidden) return;
    const [ny, nx] = top.shape;
    const { rgba, legend } = classColors(top.classes, toTypedArray(top), nx, ny);
    const source = rgbaToCanvas(rgba, nx, ny);
    drawPanel(ui.topCanvas, (ctx) => drawMapOver(ctx, source, top, model.get('opacity')));
    ui.legend.replaceChildren(...legend.map(({ index, count, color }) => h('div', {},
      h('span', { className: 'cnnw-swatch', style: `background: rgb(${color.join(',')})` }),
      `${top.names?.[index] ?? `class ${index}`} (${count})`)));
    ui.topCaption.textContent = 'darker: the winning class is less sure';
  }

  function drawFeatureMap() {
    ui.featurePanel.hidden = (model.get('length') ?? 0) > 0; // the channel panel is for image models
    const feature = model.get('feature_map');
    const ok = model.get('show_heatmap') && currentMap(feature) && feature.layer === model.get('layer') && feature.channel === model.get('channel');
    ui.featureCanvas.hidden = !ok;
    if (!ok) {
      ui.featureCaption.textContent = model.get('layer') && model.get('channel') >= 0 ? 'computing…' : 'pick a layer and a channel';
      return;
    }
    const values = toTypedArray(feature);
    let low = Infinity;
    let high = -Infinity;
    for (const value of values) if (Number.isFinite(value)) [low, high] = [Math.min(low, value), Math.max(high, value)];
    drawPanel(ui.featureCanvas, (ctx) => drawMapOver(ctx, mapCanvas(feature, colormap(), low, high), feature, model.get('opacity')));
    ui.featureCaption.textContent = `total activation ${low.toPrecision(3)} … ${high.toPrecision(3)} (unoccluded ${Number(feature.unoccluded).toPrecision(3)})`;
  }

  function acceptReadout() {
    const readout = model.get('readout');
    if (!readout || readout === shownReadout) return;
    if (!requests.accept(readout.request)) return; // an answer to an older move: keep the newer one shown
    shownReadout = readout;
    drawReadout();
  }

  function drawReadout() {
    const readout = shownReadout;
    if (!readout) return;
    ui.probability.textContent = percent(readout.probability);
    ui.bar.style.width = `${Math.min(1, Math.max(0, readout.probability)) * 100}%`;
    ui.readoutText.textContent = readoutText(readout);
    const { x, y } = position();
    const pending = Math.abs(readout.x - x) > 1e-6 || Math.abs(readout.y - y) > 1e-6;
    ui.readout.classList.toggle('cnnw-pending', pending);
  }

  function drawControls() {
    const [height, width] = size();
    const { x, y } = position();
    ui.patch.max = Math.min(height, width);
    ui.patch.value = model.get('patch');
    ui.patchValue.textContent = `${model.get('patch')} px`;
    ui.stride.value = model.get('stride');
    ui.strideValue.textContent = `${model.get('stride')} px`;
    ui.x.max = width;
    ui.y.max = height;
    ui.x.value = x;
    ui.y.value = y;
    ui.xValue.textContent = Math.round(x);
    ui.yValue.textContent = Math.round(y);
    ui.fill.value = model.get('fill');
    ui.colormap.value = colormap();
    ui.opacity.value = model.get('opacity');
    ui.opacityValue.textContent = Number(model.get('opacity')).toFixed(2);
    ui.showHeatmap.checked = model.get('show_heatmap');
    const length = model.get('length') ?? 0;
    [...ui.frameRow, ...ui.framesRow].forEach((element) => (element.hidden = !length));
    ui.fill.disabled = length > 0; // a tube is filled with the baseline 0 only
    if (length) {
      ui.frame.max = length - 1;
      ui.frame.value = model.get('frame');
      ui.frameValue.textContent = `${model.get('frame')} / ${length - 1}`;
      ui.frames.max = length;
      ui.frames.value = model.get('frames');
      ui.framesValue.textContent = `${model.get('frames')}`;
    }
  }

  function drawTargets() {
    const labels = model.get('labels') ?? [];
    const top = (model.get('predictions') ?? []).map(({ index, label, probability }) => [index, `${label} (${percent(probability)})`]);
    const topIndices = new Set(top.map(([index]) => index));
    const rest = labels.map((label, index) => [index, label]).filter(([index]) => !topIndices.has(index));
    setOptions(ui.target, [...top, ...rest], model.get('target'));
  }

  function drawLayers() {
    setOptions(ui.layer, [['', '(none)'], ...(model.get('layers') ?? []).map((name) => [name, name])], model.get('layer'));
    ui.channel.value = model.get('channel');
  }

  function drawProgress() {
    const progress = model.get('progress');
    const heatmap = model.get('heatmap');
    ui.progress.hidden = !(progress < 1) || !model.get('show_heatmap');
    ui.progress.value = progress;
    ui.progressNote.textContent = ui.progress.hidden ? '' :
      `computing the maps… ${Math.round(progress * 100)}%${heatmap?.level > 1 ? ' (coarse preview, refining)' : ''}`;
  }

  function showError() {
    drawError(ui.error, model.get('error'));
  }

  function drawMaps() {
    drawMain();
    drawTopMap();
    drawFeatureMap();
  }

  // --- moving the occluder -----------------------------------------------------------------------------------
  function moveTo(x, y) {
    local = clampPoint(x, y, size());
    model.set('x', local.x);
    model.set('y', local.y);
    requests.stamp();
    saveSoon();
    drawMain();
    drawControls();
    drawReadout();
  }

  const pointerToImage = (event) => {
    const point = canvasPoint(ui.main, event);
    return { x: point.x / scale(), y: point.y / scale() };
  };
  listeners.onDom(ui.main, 'pointerdown', (event) => {
    dragging = true;
    ui.main.classList.add('cnnw-dragging');
    ui.main.setPointerCapture?.(event.pointerId);
    const { x, y } = pointerToImage(event);
    moveTo(x, y);
  });
  listeners.onDom(ui.main, 'pointermove', (event) => {
    if (!dragging) return;
    const { x, y } = pointerToImage(event);
    moveTo(x, y);
  });
  const stopDrag = () => {
    if (!dragging) return;
    dragging = false;
    ui.main.classList.remove('cnnw-dragging');
    saveSoon.flush();
  };
  listeners.onDom(ui.main, 'pointerup', stopDrag);
  listeners.onDom(ui.main, 'pointercancel', stopDrag);
  listeners.onDom(ui.x, 'input', () => moveTo(Number(ui.x.value), position().y));
  listeners.onDom(ui.y, 'input', () => moveTo(position().x, Number(ui.y.value)));

  // --- settings ----------------------------------------------------------------------------------------------
  const showFrame = (frame) => {
    model.set('frame', frame);
    requests.stamp(); // the readout under the tube changes with the frame
    saveSoon();
  };
  const stopPlaying = () => {
    if (playing === null) return;
    clearInterval(playing);
    playing = null;
    ui.play.textContent = '▶';
  };
  listeners.onDom(ui.frame, 'input', () => {
    stopPlaying();
    showFrame(Number(ui.frame.value));
  });
  listeners.onDom(ui.play, 'click', () => {
    if (playing !== null) return stopPlaying();
    ui.play.textContent = '❚❚';
    playing = setInterval(() => showFrame(((model.get('frame') ?? 0) + 1) % Math.max(1, model.get('length') ?? 1)), PLAY_INTERVAL_MS);
  });
  listeners.onDom(ui.frames, 'input', () => (ui.framesValue.textContent = `${ui.frames.value}`));
  listeners.onDom(ui.frames, 'change', () => commit('frames', Number(ui.frames.value)));
  listeners.onDom(ui.patch, 'input', () => (ui.patchValue.textContent = `${ui.patch.value} px`));
  listeners.onDom(ui.stride, 'input', () => (ui.strideValue.textContent = `${ui.stride.value} px`));
  listeners.onDom(ui.patch, 'change', () => commit('patch', Number(ui.patch.value)));
  listeners.onDom(ui.stride, 'change', () => commit('stride', Number(ui.stride.value)));
  listeners.onDom(ui.fill, 'change', () => commit('fill', ui.fill.value));
  listeners.onDom(ui.target, 'change', () => commit('target', Number(ui.target.value)));
  listeners.onDom(ui.showHeatmap, 'change', () => commit('show_heatmap', ui.showHeatmap.checked));
  listeners.onDom(ui.opacity, 'input', () => commit('opacity', Number(ui.opacity.value)));
  listeners.onDom(ui.colormap, 'change', () => commit('colormap', ui.colormap.value));
  listeners.onDom(ui.layer, 'change', () => {
    model.set('layer', ui.layer.value);
    if (!ui.layer.value) model.set('channel', -1);
    else if (model.get('channel') < 0) model.set('channel', 0);
    saveSoon();
  });
  listeners.onDom(ui.channel, 'change', () => {
    const channel = Number(ui.channel.value);
    if (Number.isInteger(channel) && channel >= -1) commit('channel', channel);
  });

  // --- Python -> view ------------------------------------------------------------------------------------------
  const onModel = (events, fn) => events.split(' ').forEach((event) => listeners.onModel(model, event, fn));
  onModel('change:image change:size', () => {
    decodeImage();
    drawMaps();
  });
  onModel('change:x change:y', () => {
    // an echo of our own drag, or a move made from Python; outside a drag, Python's value wins
    if (!dragging) local = null;
    drawMain();
    drawControls();
  });
  onModel('change:readout', acceptReadout);
  onModel('change:heatmap change:opacity change:colormap change:show_heatmap', () => {
    drawMaps();
    drawControls();
    drawProgress();
  });
  onModel('change:top_map', drawTopMap);
  onModel('change:feature_map change:layer change:channel', () => {
    drawLayers();
    drawFeatureMap();
  });
  onModel('change:length', drawFeatureMap);
  onModel('change:patch change:stride change:fill change:frame change:frames change:length', () => {
    drawControls();
    drawMaps();
  });
  onModel('change:target change:labels change:predictions', drawTargets);
  onModel('change:layers', drawLayers);
  onModel('change:progress', drawProgress);
  onModel('change:error', showError);

  decodeImage();
  drawTargets();
  drawLayers();
  drawControls();
  drawMaps();
  drawProgress();
  showError();
  shownReadout = model.get('readout') ?? null;
  drawReadout();

  return () => {
    stopPlaying();
    listeners.removeAll();
    saveSoon.flush();
    ui.root.remove();
  };
}

export default { render };
