// Layer explorer widget (anywidget front end): the input image with its top-5 predictions, a layer
// picker, every channel map of the chosen layer on one canvas grid (click a map to enlarge it), the
// channel's stats, and the layer's filters. Python computes and scales maps and filters; this file
// decodes, colours and draws them. Colormaps are applied here only, so switching them is instant.
// On a video model the maps are [C,T',H,W] with every time step: the frame slider and play button redraw
// here at once, and a filmstrip of the clip marks the input frames the shown time step covers.
import { isEmptyArray, toTypedArray } from './shared/arrays.js';
import { applyColormap, colormapNames } from './shared/colormaps.js';
import { canvasPoint, h, setOptions } from './shared/dom.js';
import { cellAt, cellOrigin, gridLayout, packAtlas } from './shared/grid.js';
import { drawFitted, drawNearest, rgbaToCanvas, rgbToImageData } from './shared/images.js';
import { centreFrame, clampFrame, FRAMES_CSS, frameControls, inputNoun, itemOf, spanText, timeSlice } from './shared/frames.js';
import { Listeners } from './shared/listeners.js';
import { throttledTraits } from './shared/requests.js';
import { ViewRequests } from './shared/view_requests.js';
import { drawFilterMessage, drawTileGrid, tileRect } from './shared/tiles.js';
import { scopedStyle } from './shared/styles.js';
import { drawError, drawPredictions } from './shared/panels.js';

const INPUT_BOX = 160;
const GRID_WIDTH = 640;
const CHANNEL_BOX = 224;
const FILTER_GRID_WIDTH = 320;
const SEND_INTERVAL_MS = 33;
const FILTER_COLORMAP = 'coolwarm';
const HIGHLIGHT_COLOR = '#00e5ff'; // cyan: absent from all offered colormaps
const DEAD_COLOR = '#e53935';
const STRIP_FRAME = 28; // px per frame in the clip's filmstrip

const CSS = `
& canvas { image-rendering: pixelated; max-width: 100%; }
.cnnw-row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.cnnw-controls { align-items: center; }
.cnnw-controls label { display: inline-flex; gap: 4px; align-items: center; }
.cnnw-predictions { display: grid; grid-template-columns: minmax(60px, max-content) 200px 4em; gap: 3px 8px; align-items: center; }
.cnnw-bar-track { height: 12px; background: var(--jp-layout-color2, #eee); }
.cnnw-bar { height: 100%; background: var(--jp-brand-color1, #1976d2); }
.cnnw-percent { text-align: right; font-variant-numeric: tabular-nums; }
.cnnw-grid { cursor: pointer; }
.cnnw-side, .cnnw-filter-section { display: flex; flex-direction: column; align-items: flex-start; gap: 4px; }
.cnnw-side { width: 240px; }
.cnnw-filter-slice input { width: 5em; }
.cnnw-input-side { display: flex; flex-direction: column; align-items: flex-start; gap: 4px; }
${FRAMES_CSS}`;

function buildView(onFrame) {
  const select = (className) => h('select', { className });
  const ui = {
    input: h('canvas', { className: 'cnnw-input' }),
    strip: h('canvas', { className: 'cnnw-strip', title: 'the clip; outlined: the input frames the shown time step covers' }),
    predictions: h('div', { className: 'cnnw-predictions' }),
    layer: select('cnnw-layer'),
    normalize: select('cnnw-normalize'),
    colormap: select('cnnw-colormap'),
    filterSliceInput: h('input', { type: 'number', min: -1, step: 1 }),
    computing: h('span', { className: 'cnnw-note', textContent: 'computing…' }),
    error: h('div', { className: 'cnnw-error' }),
    grid: h('canvas', { className: 'cnnw-grid' }),
    channel: h('canvas', { className: 'cnnw-channel' }),
    channelInfo: h('div', { className: 'cnnw-channel-info cnnw-caption' }),
    stats: h('div', { className: 'cnnw-stats' }),
    filters: h('canvas', { className: 'cnnw-filters' }),
    filtersInfo: h('div', { className: 'cnnw-filters-info cnnw-caption' }),
  };
  ui.frames = frameControls(onFrame);
  ui.frameRow = ui.frames.root;
  ui.filterSlice = h('label', { className: 'cnnw-filter-slice', title: '-1 = mean over input channels' },
    'filter input channel', ui.filterSliceInput);
  const labelled = (text, control) => h('label', {}, text, control);
  ui.root = h('div', { className: 'cnnw-layer-explorer' },
    scopedStyle('cnnw-layer-explorer', CSS),
    h('div', { className: 'cnnw-row' }, h('div', { className: 'cnnw-input-side' }, ui.input, ui.strip), ui.predictions),
    h('div', { className: 'cnnw-row cnnw-controls' },
      labelled('layer', ui.layer), ui.computing, labelled('normalize', ui.normalize),
      labelled('colormap', ui.colormap), ui.filterSlice, ui.error),
    ui.frameRow,
    h('div', { className: 'cnnw-row' },
      ui.grid,
      h('div', { className: 'cnnw-side' }, ui.channel, ui.channelInfo, ui.stats)),
    h('div', { className: 'cnnw-filter-section' }, ui.filters, ui.filtersInfo));
  setOptions(ui.normalize, [['layer', 'per layer'], ['channel', 'per channel']], 'layer');
  setOptions(ui.colormap, colormapNames.map((name) => [name, name]), colormapNames[0]);
  return ui;
}

/** Short human number: 3 significant digits, exponent for very large/small magnitudes. */
function formatNumber(value) {
  if (value === undefined || value === null || !Number.isFinite(value)) return '–';
  const magnitude = Math.abs(value);
  if (magnitude >= 1e4 || (magnitude > 0 && magnitude < 1e-3)) return value.toExponential(2);
  return String(Number(value.toPrecision(3)));
}

/** "all N images" (or clips: `noun`) when Python says how many inputs dead_all covers (stats.n_images), else
 * "all images". */
function allInputs(stats, noun) {
  return stats.n_images ? `all ${stats.n_images} ${noun}s` : `all ${noun}s`;
}

/** Decoded maps message ([C,H,W], or [C,T',H,W] on a video model), laid out for drawing; each time step's
 * atlas is packed when first shown, and coloured atlases are cached per time step and colormap. */
function decodeMaps(maps) {
  const video = maps.shape.length === 4;
  const [channels, steps, height, width] = video ? maps.shape : [maps.shape[0], 1, ...maps.shape.slice(1)];
  const grid = gridLayout({ count: channels, tileWidth: width, tileHeight: height, targetWidth: GRID_WIDTH });
  const values = toTypedArray(maps);
  const atlases = new Map();
  const atlasAt = (step) => {
    if (!atlases.has(step)) {
      const plane = video ? timeSlice(values, maps.shape, step) : values;
      atlases.set(step, packAtlas(plane, { count: channels, tileWidth: width, tileHeight: height, depth: 1, cols: grid.cols }));
    }
    return atlases.get(step);
  };
  return {
    message: maps, layer: maps.layer, channels, steps, spans: maps.spans ?? null, grid, atlasAt,
    stats: maps.stats ?? {}, canvasByKey: new Map(),
  };
}

/** drawImage source holding all channel tiles of `shown` at time step `step` in the given colormap. */
function coloredAtlas(shown, step, colormap) {
  const key = `${step} ${colormap}`;
  if (!shown.canvasByKey.has(key)) {
    const { pixels, width, height } = shown.atlasAt(step);
    shown.canvasByKey.set(key, rgbaToCanvas(applyColormap(pixels, width, height, colormap), width, height));
  }
  return shown.canvasByKey.get(key);
}

function markDead(ctx, layout, index) {
  const { x, y } = cellOrigin(layout, index);
  ctx.strokeStyle = DEAD_COLOR;
  ctx.lineWidth = Math.max(1, Math.min(layout.cellWidth, layout.cellHeight) / 32);
  ctx.beginPath();
  ctx.moveTo(x, y + layout.cellHeight);
  ctx.lineTo(x + layout.cellWidth, y);
  ctx.stroke();
}

function outlineCell(ctx, layout, index) {
  const { x, y } = cellOrigin(layout, index);
  ctx.strokeStyle = HIGHLIGHT_COLOR;
  ctx.lineWidth = 2;
  ctx.strokeRect(x + 1, y + 1, layout.cellWidth - 2, layout.cellHeight - 2);
}

function render({ model, el }) {
  const listeners = new Listeners();
  const { commit, saveSoon } = throttledTraits(model, SEND_INTERVAL_MS);
  const ui = buildView((frame) => commit('frame', frame)); // the change event redraws
  el.append(ui.root);
  const requests = new ViewRequests(model); // maps answers echo the request id of the layer / normalize pick
  let shown = null; // decoded maps on screen (kept while a newer layer is computing)
  let decoded = { message: null, canvases: new Map() }; // the input image's (or each clip frame's) canvas
  let decodeError = '';

  const selectedChannel = () => {
    const channel = model.get('channel');
    return shown && channel >= 0 && channel < shown.channels ? channel : -1;
  };
  const colormap = () => (colormapNames.includes(model.get('colormap')) ? model.get('colormap') : colormapNames[0]);
  const step = () => (shown ? clampFrame(model.get('frame'), shown.steps) : 0);
  const span = () => shown?.spans?.[step()] ?? null;

  function showError() {
    drawError(ui.error, model.get('error') || decodeError);
  }

  function drawInput() {
    const image = model.get('image');
    ui.input.hidden = isEmptyArray(image);
    ui.strip.hidden = ui.input.hidden || image.shape.length !== 4;
    if (ui.input.hidden) return;
    const clip = image.shape.length === 4;
    const [height, width] = clip ? image.shape.slice(1) : image.shape;
    if (decoded.message !== image) decoded = { message: image, canvases: new Map() };
    const frameCanvas = (index) => {
      if (!decoded.canvases.has(index)) {
        const values = clip ? itemOf(toTypedArray(image), image.shape, index) : toTypedArray(image);
        decoded.canvases.set(index, rgbaToCanvas(rgbToImageData(values, width, height), width, height));
      }
      return decoded.canvases.get(index);
    };
    drawFitted(ui.input, frameCanvas(clip ? centreFrame(span(), 0) : 0), [0, 0, width, height], INPUT_BOX);
    if (clip) drawStrip(image.shape[0], frameCanvas, width, height);
  }

  /** The clip's frames in a row, the ones the shown time step covers outlined. */
  function drawStrip(count, frameCanvas, width, height) {
    const cell = Math.max(8, Math.min(STRIP_FRAME, Math.floor((GRID_WIDTH + INPUT_BOX) / count)));
    const rowHeight = Math.round((cell * height) / width);
    ui.strip.width = count * cell;
    ui.strip.height = rowHeight + 4;
    const ctx = ui.strip.getContext('2d');
    for (let index = 0; index < count; index++) drawNearest(ctx, frameCanvas(index), [0, 0, width, height], [index * cell, 2, cell - 1, rowHeight]);
    const covered = span();
    if (!covered || covered.length !== 2) return;
    ctx.strokeStyle = HIGHLIGHT_COLOR;
    ctx.lineWidth = 2;
    ctx.strokeRect(covered[0] * cell + 1, 1, (covered[1] - covered[0] + 1) * cell - 2, rowHeight + 2);
  }

  function drawFrameControls() {
    const steps = shown?.steps ?? 1;
    const covered = spanText(span());
    ui.frames.show(step(), steps, `time step ${step()} of ${steps}${covered ? ` \u00b7 ${covered}` : ''}`);
  }

  /** Everything the shown time step changes: the grid, the enlarged channel, the input frame and the strip. */
  function drawFrame() {
    drawFrameControls();
    drawInput();
    drawGrid();
    drawChannel();
  }


  function drawLayerOptions() {
    const pairs = (model.get('layers') ?? []).map(({ name, shape }) => [name, `${name} — ${shape.join('×')}`]);
    setOptions(ui.layer, pairs, model.get('layer'));
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

  function drawGrid() {
    ui.grid.hidden = !shown;
    if (!shown) return;
    const { grid, stats } = shown;
    const ctx = drawTileGrid(ui.grid, coloredAtlas(shown, step(), colormap()), shown.atlasAt(step()), grid);
    for (let index = 0; index < grid.count; index++) if (stats.dead?.[index]) markDead(ctx, grid, index);
    if (selectedChannel() >= 0) outlineCell(ctx, grid, selectedChannel());
  }

  function drawChannel() {
    const channel = selectedChannel();
    ui.channel.hidden = channel < 0;
    if (channel < 0) {
      ui.channelInfo.replaceChildren(shown ? 'click a map to enlarge it' : '');
      return;
    }
    drawFitted(ui.channel, coloredAtlas(shown, step(), colormap()), tileRect(shown.atlasAt(step()), channel), CHANNEL_BOX);
    const { stats, message } = shown;
    const lines = [
      `channel ${channel}: min ${formatNumber(stats.min?.[channel])} max ${formatNumber(stats.max?.[channel])}, ` +
        `mean ${formatNumber(stats.mean?.[channel])}, zero ${formatNumber(100 * stats.zero_fraction?.[channel])} %`,
      `colours span ${formatNumber(message.low?.[channel])} … ${formatNumber(message.high?.[channel])}`,
    ];
    if (shown.steps > 1) lines.push(`over all ${shown.steps} time steps; shown: time step ${step()}`);
    const noun = inputNoun(model.get('image'));
    if (stats.dead?.[channel]) lines.push(`dead on this ${noun}`);
    if (stats.dead_all?.[channel]) lines.push(`dead on ${allInputs(stats, noun)}`);
    ui.channelInfo.replaceChildren(...lines.map((line) => h('div', { textContent: line })));
  }

  function drawStats() {
    if (!shown) {
      ui.stats.textContent = '';
      return;
    }
    const countTrue = (flags) => flags.filter(Boolean).length;
    const { stats, channels } = shown;
    const noun = inputNoun(model.get('image'));
    let text = `${countTrue(stats.dead ?? [])} of ${channels} channels dead on this ${noun}`;
    if (stats.dead_all) text += `, ${countTrue(stats.dead_all)} on ${allInputs(stats, noun)}`;
    ui.stats.textContent = text;
  }

  function drawMaps() {
    ui.layer.value = model.get('layer');
    ui.colormap.value = colormap();
    ui.computing.hidden = !(model.get('busy') || requests.pending());
    drawFrame();
    drawStats();
  }

  function drawFilters() {
    const filters = model.get('filters');
    const hasFilters = !isEmptyArray(filters) && Boolean(filters.source);
    ui.filters.hidden = !hasFilters;
    ui.filtersInfo.textContent = hasFilters ? `filters of ${filters.source}${filters.note ? ` — ${filters.note}` : ''}` : 'no filters for this layer';
    if (!hasFilters) return;
    drawFilterMessage(ui.filters, filters, FILTER_GRID_WIDTH, FILTER_COLORMAP);
  }

  function drawFilterSlice() {
    const inChannels = model.get('filter_in_channels') ?? 0;
    const rgb = model.get('filters')?.shape?.[3] === 3;
    ui.filterSlice.hidden = inChannels <= 1 || (inChannels <= 3 && rgb);
    ui.filterSliceInput.max = inChannels - 1;
    ui.filterSliceInput.value = model.get('filter_slice');
  }

  const onModel = (events, fn) => events.split(' ').forEach((event) => listeners.onModel(model, event, fn));
  onModel('change:error', showError);
  onModel('change:image', drawInput);
  onModel('change:predictions', () => drawPredictions(ui.predictions, model.get('predictions')));
  onModel('change:layers', drawLayerOptions);
  onModel('change:layer', drawMaps);
  onModel('change:request', () => {
    requests.settle();
    drawMaps();
  });
  onModel('change:frame', drawFrame);
  onModel('change:maps', () => {
    acceptMaps();
    drawMaps();
  });
  onModel('change:channel change:colormap change:busy', drawMaps);
  onModel('change:normalize', () => (ui.normalize.value = model.get('normalize')));
  onModel('change:filters', () => {
    drawFilters();
    drawFilterSlice();
  });
  onModel('change:filter_slice change:filter_in_channels', drawFilterSlice);

  const request = requests.committing(commit);
  listeners.onDom(ui.layer, 'change', () => request('layer', ui.layer.value));
  listeners.onDom(ui.normalize, 'change', () => request('normalize', ui.normalize.value));
  listeners.onDom(ui.colormap, 'change', () => commit('colormap', ui.colormap.value));
  listeners.onDom(ui.filterSliceInput, 'input', () => {
    const slice = Number(ui.filterSliceInput.value);
    if (Number.isInteger(slice) && slice >= -1 && slice < model.get('filter_in_channels')) commit('filter_slice', slice);
  });
  const channelUnder = (event) => {
    if (!shown) return -1;
    const { x, y } = canvasPoint(ui.grid, event);
    return cellAt(shown.grid, x, y);
  };
  listeners.onDom(ui.grid, 'click', (event) => {
    const channel = channelUnder(event);
    if (channel >= 0) commit('channel', channel);
  });
  listeners.onDom(ui.grid, 'mousemove', (event) => {
    const channel = channelUnder(event);
    ui.grid.title = channel < 0 ? '' : `channel ${channel}${shown.stats.dead?.[channel] ? ' (dead)' : ''}`;
  });

  ui.normalize.value = model.get('normalize');
  showError();
  drawInput();
  drawPredictions(ui.predictions, model.get('predictions'));
  drawLayerOptions();
  acceptMaps();
  drawMaps();
  drawFilters();
  drawFilterSlice();

  return () => {
    ui.frames.dispose();
    listeners.removeAll();
    saveSoon.flush();
    ui.root.remove();
  };
}

export default { render };
