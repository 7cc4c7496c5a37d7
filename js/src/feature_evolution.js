// FeatureEvolution widget (anywidget front end): an epoch slider with play/pause over training checkpoints;
// first-layer filters at that epoch, a grid of features (rows) by epochs (columns) showing each feature's
// strongest image and its deconvnet projection, and curves over epochs. Python sends every epoch's data at
// once, so moving the slider redraws here without a round trip.
import { isEmptyArray, toTypedArray } from './shared/arrays.js';
import { h } from './shared/dom.js';
import { rgbaToCanvas, rgbToImageData } from './shared/images.js';
import { Listeners } from './shared/listeners.js';
import { throttledTraits } from './shared/requests.js';
import { drawFilterGrid } from './shared/tiles.js';
import { scopedStyle } from './shared/styles.js';
import { drawError } from './shared/panels.js';
import { ViewRequests } from './shared/view_requests.js';

const FILTER_GRID_WIDTH = 160;
const CELL_GAP = 2;
const LABEL_WIDTH = 110;
const PLAY_INTERVAL_MS = 700;
const SEND_INTERVAL_MS = 33;
const CURVE_WIDTH = 260;
const CURVE_HEIGHT = 120;
const HIGHLIGHT_COLOR = '#00b8d4';
const LINE_COLORS = ['#1976d2', '#e53935', '#43a047', '#fb8c00', '#8e24aa', '#00897b', '#6d4c41', '#546e7a'];

const CSS = `
.cnnw-feature-evolution canvas { image-rendering: pixelated; max-width: 100%; }
.cnnw-fe-row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.cnnw-fe-controls { display: flex; gap: 8px; align-items: center; }
.cnnw-fe-controls input[type=range] { width: 260px; }
.cnnw-fe-epoch { font-weight: 600; min-width: 6em; }
.cnnw-fe-caption { color: var(--jp-ui-font-color2, #666); font-size: 12px; }
.cnnw-fe-panel { display: flex; flex-direction: column; gap: 4px; }
.cnnw-fe-error { padding: 2px 8px; border-radius: 3px; background: var(--jp-error-color1, #c62828); color: var(--jp-ui-inverse-font-color0, #fff); }
`;

function buildView() {
  const ui = {
    play: h('button', { className: 'cnnw-fe-play', textContent: '▶ play' }),
    slider: h('input', { className: 'cnnw-fe-slider', type: 'range', min: 0, max: 0, step: 1, value: 0 }),
    epochLabel: h('span', { className: 'cnnw-fe-epoch' }),
    error: h('div', { className: 'cnnw-fe-error' }),
    filters: h('canvas', { className: 'cnnw-fe-filters' }),
    filtersInfo: h('div', { className: 'cnnw-fe-caption' }),
    grid: h('canvas', { className: 'cnnw-fe-grid' }),
    curves: h('div', { className: 'cnnw-fe-row cnnw-fe-curves' }),
  };
  ui.root = h('div', { className: 'cnnw-feature-evolution' },
    scopedStyle('cnnw-feature-evolution', CSS),
    h('div', { className: 'cnnw-fe-controls' }, ui.play, ui.slider, ui.epochLabel),
    ui.error,
    h('div', { className: 'cnnw-fe-row' },
      h('div', { className: 'cnnw-fe-panel' }, ui.filters, ui.filtersInfo),
      h('div', { className: 'cnnw-fe-panel' }, ui.grid,
        h('div', { className: 'cnnw-fe-caption', textContent: 'each feature: its strongest image (left) and deconvnet projection (right), by epoch' }))),
    ui.curves);
  return ui;
}

/** Canvas holding the [F, E, 2, S, S, 3] tiles as rows of features and columns of epochs (image | projection). */
function tilesCanvas(tiles) {
  const [features, epochs, pair, size] = tiles.shape;
  const cellWidth = pair * size + CELL_GAP;
  const width = epochs * (cellWidth + CELL_GAP);
  const height = features * (size + CELL_GAP);
  const rgb = new Uint8Array(width * height * 3).fill(255);
  const values = toTypedArray(tiles);
  for (let f = 0; f < features; f++) {
    for (let e = 0; e < epochs; e++) {
      for (let p = 0; p < pair; p++) {
        const source = (((f * epochs + e) * pair + p) * size * size) * 3;
        const left = e * (cellWidth + CELL_GAP) + p * (size + CELL_GAP);
        const top = f * (size + CELL_GAP);
        for (let row = 0; row < size; row++) {
          rgb.set(values.subarray(source + row * size * 3, source + (row + 1) * size * 3), ((top + row) * width + left) * 3);
        }
      }
    }
  }
  return { canvas: rgbaToCanvas(rgbToImageData(rgb, width, height), width, height), cellWidth, size };
}

/** A small line chart of `series` ({name: [values per epoch]}) with a marker at epoch index `current`. */
function drawCurve(canvas, title, epochs, series, current) {
  canvas.width = CURVE_WIDTH;
  canvas.height = CURVE_HEIGHT;
  const ctx = canvas.getContext('2d');
  const pad = { left: 34, right: 6, top: 16, bottom: 16 };
  const all = Object.values(series).flat().filter((v) => v !== null && Number.isFinite(v));
  const low = Math.min(0, ...all);
  const high = Math.max(low + 1e-9, ...all);
  const first = epochs[0];
  const last = epochs[epochs.length - 1];
  const x = (epoch) => pad.left + ((epoch - first) / Math.max(1e-9, last - first)) * (CURVE_WIDTH - pad.left - pad.right);
  const y = (v) => CURVE_HEIGHT - pad.bottom - ((v - low) / (high - low)) * (CURVE_HEIGHT - pad.top - pad.bottom);
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, CURVE_WIDTH, CURVE_HEIGHT);
  ctx.fillStyle = '#333';
  ctx.font = '11px sans-serif';
  ctx.fillText(title, pad.left, 11);
  ctx.fillText(String(Number(high.toPrecision(2))), 2, pad.top + 8);
  ctx.fillText(String(Number(low.toPrecision(2))), 2, CURVE_HEIGHT - pad.bottom);
  ctx.fillText(String(first), pad.left, CURVE_HEIGHT - 3);
  ctx.fillText(String(last), CURVE_WIDTH - pad.right - 14, CURVE_HEIGHT - 3);
  ctx.strokeStyle = HIGHLIGHT_COLOR;
  ctx.beginPath();
  ctx.moveTo(x(epochs[current]), pad.top);
  ctx.lineTo(x(epochs[current]), CURVE_HEIGHT - pad.bottom);
  ctx.stroke();
  Object.entries(series).forEach(([name, values], index) => {
    ctx.strokeStyle = LINE_COLORS[index % LINE_COLORS.length];
    ctx.beginPath();
    let drawing = false;
    values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) {
        drawing = false;
        return;
      }
      if (drawing) ctx.lineTo(x(epochs[i]), y(v));
      else ctx.moveTo(x(epochs[i]), y(v));
      drawing = true;
    });
    ctx.stroke();
  });
  canvas.title = Object.keys(series).map((name, i) => `${LINE_COLORS[i % LINE_COLORS.length]}: ${name}`).join('\n');
}

function render({ model, el }) {
  const ui = buildView();
  el.append(ui.root);
  const listeners = new Listeners();
  const { commit, saveSoon } = throttledTraits(model, SEND_INTERVAL_MS);
  let grid = null; // { canvas, cellWidth, size } of the current tiles message
  let timer = null;
  const requests = new ViewRequests(model);
  let chosen = null; // {epoch, request}: the user's newest epoch, until a publish answers its request

  const epochs = () => model.get('epochs') ?? [];
  const currentIndex = () => Math.max(0, epochs().indexOf(model.get('epoch')));

  function drawFilters() {
    const filters = model.get('filters');
    ui.filters.hidden = isEmptyArray(filters);
    if (ui.filters.hidden) return;
    const [, count, kh, kw, depth] = filters.shape;
    const perEpoch = count * kh * kw * depth;
    const index = currentIndex();
    drawFilterGrid(ui.filters, toTypedArray(filters).subarray(index * perEpoch, (index + 1) * perEpoch),
      [count, kh, kw, depth], FILTER_GRID_WIDTH, model.get('colormap'));
    ui.filtersInfo.textContent = `${filters.source} filters at epoch ${model.get('epoch')} — ${filters.note}`;
  }

  function drawGrid() {
    const tiles = model.get('tiles');
    ui.grid.hidden = isEmptyArray(tiles) || !grid;
    if (ui.grid.hidden) return;
    const features = model.get('features') ?? [];
    const { canvas, cellWidth, size } = grid;
    ui.grid.width = LABEL_WIDTH + canvas.width;
    ui.grid.height = 18 + canvas.height;
    const ctx = ui.grid.getContext('2d');
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(canvas, LABEL_WIDTH, 18);
    ctx.fillStyle = '#333';
    ctx.font = '11px sans-serif';
    epochs().forEach((epoch, e) => ctx.fillText(`epoch ${epoch}`, LABEL_WIDTH + e * (cellWidth + CELL_GAP) + 2, 12));
    features.forEach(({ layer, channel }, f) => ctx.fillText(`${layer} #${channel}`, 2, 18 + f * (size + CELL_GAP) + size / 2 + 4));
    ctx.strokeStyle = HIGHLIGHT_COLOR;
    ctx.lineWidth = 2;
    ctx.strokeRect(LABEL_WIDTH + currentIndex() * (cellWidth + CELL_GAP) - 1, 17, cellWidth, canvas.height + 1);
  }

  function drawCurves() {
    const curves = model.get('curves') ?? {};
    const list = epochs();
    if (!list.length) {
      ui.curves.replaceChildren();
      return;
    }
    const panels = [
      ['dead channels (fraction)', curves.dead_fraction ?? {}],
      ['activation sparsity (fraction of zeros)', curves.sparsity ?? {}],
      ['weight change vs previous checkpoint', curves.weight_change ?? {}],
      ['metrics', curves.metrics ?? {}],
    ].filter(([, series]) => Object.keys(series).length);
    ui.curves.replaceChildren(...panels.map(([title, series]) => {
      const canvas = h('canvas', { className: 'cnnw-fe-curve' });
      drawCurve(canvas, title, list, series, currentIndex());
      return canvas;
    }));
  }

  function drawEpoch() {
    const list = epochs();
    ui.slider.max = Math.max(0, list.length - 1);
    ui.slider.value = currentIndex();
    ui.epochLabel.textContent = list.length ? `epoch ${model.get('epoch')}` : 'no checkpoints yet';
    drawFilters();
    drawGrid();
    drawCurves();
  }

  function drawState() {
    drawError(ui.error, model.get('error'));
  }

  function setEpochIndex(index) {
    const list = epochs();
    if (!list.length) return;
    const epoch = list[(index + list.length) % list.length];
    requests.stamp(); // one message with the epoch
    chosen = { epoch, request: model.get('request') };
    commit('epoch', epoch); // redraws through change:epoch, tells Python after
  }

  /** A publish answering an older request than the user's newest (a snapshot computed while the slider moved)
   * may have moved `epoch` to the newest epoch: keep the user's choice, which Python gets next. */
  function keepChosenEpoch() {
    const answered = model.get('tiles')?.request ?? 0;
    if (chosen === null || answered >= chosen.request) {
      chosen = null;
      return;
    }
    if (model.get('epoch') !== chosen.epoch && epochs().includes(chosen.epoch)) model.set('epoch', chosen.epoch);
  }

  function stopPlaying() {
    if (timer !== null) clearInterval(timer);
    timer = null;
    ui.play.textContent = '▶ play';
  }

  listeners.onDom(ui.slider, 'input', () => setEpochIndex(Number(ui.slider.value)));
  listeners.onDom(ui.play, 'click', () => {
    if (timer !== null) return stopPlaying();
    ui.play.textContent = '❚❚ pause';
    timer = setInterval(() => setEpochIndex(currentIndex() + 1), PLAY_INTERVAL_MS);
  });
  listeners.onModel(model, 'change:tiles', () => {
    grid = isEmptyArray(model.get('tiles')) ? null : tilesCanvas(model.get('tiles'));
    keepChosenEpoch();
    drawEpoch();
  });
  for (const event of ['change:epoch', 'change:epochs', 'change:filters', 'change:curves', 'change:features', 'change:colormap']) {
    listeners.onModel(model, event, drawEpoch);
  }
  listeners.onModel(model, 'change:error', drawState);

  grid = isEmptyArray(model.get('tiles')) ? null : tilesCanvas(model.get('tiles'));
  drawState();
  drawEpoch();

  return () => {
    stopPlaying();
    listeners.removeAll();
    saveSoon.flush();
    ui.root.remove();
  };
}

export default { render };
