// TopActivations widget (anywidget front end): the top-k dataset images of one neuron, each cropped to the
// neuron's receptive field, with the activation under each; click a crop to see its whole image with the
// field outlined. A layer picker, a channel picker with previous/next, and a "random neuron" button.
// A "show" picker puts the neuron's deconvnet projection in each crop (alone, or over the image at an
// opacity): Python computes the projections once per neuron; switching modes and moving the opacity
// redraw here without a round trip. Python finds the images and cuts the crops; this file decodes and draws them.
// On clips (a video model) each crop is a filmstrip of the frames in the unit's field, drawn as one wide tile.
// Every layer / channel / selection change carries a request id; an answer is drawn only if it echoes the newest.
import { isEmptyArray, toTypedArray } from './shared/arrays.js';
import { canvasPoint, h, setOptions } from './shared/dom.js';
import { drawFitted, drawNearest, rgbaToCanvas, rgbToImageData } from './shared/images.js';
import { Listeners } from './shared/listeners.js';
import { blendRgb } from './shared/blend.js';
import { throttledTraits } from './shared/requests.js';
import { randomNeuron, scaleBox, stepChannel } from './shared/neurons.js';
import { scopedStyle } from './shared/styles.js';
import { drawError } from './shared/panels.js';
import { ViewRequests } from './shared/view_requests.js';

const CELL = 96;
const FULL_BOX = 320;
const SEND_INTERVAL_MS = 33;
const HIGHLIGHT_COLOR = '#00e5ff'; // cyan, as the other widgets' highlights

const CSS = `
.cnnw-top-activations canvas { image-rendering: pixelated; }
.cnnw-top-activations .cnnw-row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.cnnw-top-activations .cnnw-controls { align-items: center; }
.cnnw-top-activations .cnnw-controls label { display: inline-flex; gap: 4px; align-items: center; }
.cnnw-top-activations .cnnw-channel-input { width: 5em; }
.cnnw-top-activations .cnnw-opacity { width: 90px; }
.cnnw-top-activations .cnnw-crops { display: grid; grid-template-columns: repeat(auto-fill, ${CELL + 8}px); gap: 6px; flex: 1 1 480px; max-width: 880px; }
.cnnw-top-activations figure { margin: 0; display: flex; flex-direction: column; align-items: center; cursor: pointer; }
.cnnw-top-activations figure canvas { height: ${CELL}px; outline: 2px solid transparent; outline-offset: 1px; }
.cnnw-top-activations .cnnw-crops.cnnw-strips { grid-template-columns: 1fr; }
.cnnw-top-activations .cnnw-crops.cnnw-strips figcaption { max-width: none; }
.cnnw-top-activations figure.cnnw-selected canvas { outline-color: ${HIGHLIGHT_COLOR}; }
.cnnw-top-activations figcaption { font-size: 11px; text-align: center; max-width: ${CELL + 8}px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.cnnw-top-activations .cnnw-value { font-variant-numeric: tabular-nums; font-weight: 600; }
.cnnw-top-activations .cnnw-side { display: flex; flex-direction: column; gap: 4px; width: ${FULL_BOX}px; }
`;

function buildView() {
  const ui = {
    layer: h('select', { className: 'cnnw-layer' }),
    channel: h('input', { className: 'cnnw-channel-input', type: 'number', min: 0, step: 1 }),
    previous: h('button', { className: 'cnnw-previous', textContent: '◀', title: 'previous channel' }),
    next: h('button', { className: 'cnnw-next', textContent: '▶', title: 'next channel' }),
    random: h('button', { className: 'cnnw-random', textContent: 'random neuron' }),
    show: h('select', { className: 'cnnw-show', title: 'what each crop shows' }),
    opacity: h('input', { className: 'cnnw-opacity', type: 'range', min: 0, max: 1, step: 0.05, title: 'opacity of the projection' }),
    projectionNote: h('div', { className: 'cnnw-caption cnnw-projection-note' }),
    computing: h('span', { className: 'cnnw-note cnnw-computing', textContent: 'computing…' }),
    error: h('div', { className: 'cnnw-error' }),
    field: h('div', { className: 'cnnw-caption cnnw-field' }),
    crops: h('div', { className: 'cnnw-crops' }),
    full: h('canvas', { className: 'cnnw-full' }),
    fullInfo: h('div', { className: 'cnnw-caption cnnw-full-info' }),
  };
  ui.root = h('div', { className: 'cnnw-top-activations' },
    scopedStyle('cnnw-top-activations', CSS),
    h('div', { className: 'cnnw-row cnnw-controls' },
      h('label', {}, 'layer', ui.layer),
      h('label', {}, 'channel', ui.channel), ui.previous, ui.next, ui.random,
      h('label', {}, 'show', ui.show), ui.opacity, ui.computing, ui.error),
    ui.field,
    ui.projectionNote,
    h('div', { className: 'cnnw-row' }, ui.crops, h('div', { className: 'cnnw-side' }, ui.full, ui.fullInfo)));
  return ui;
}

function formatValue(value) {
  if (!Number.isFinite(value)) return '–';
  const magnitude = Math.abs(value);
  return magnitude >= 1e4 || (magnitude > 0 && magnitude < 1e-3) ? value.toExponential(2) : String(Number(value.toPrecision(3)));
}

function render({ model, el }) {
  const ui = buildView();
  el.append(ui.root);
  const listeners = new Listeners();
  const traits = throttledTraits(model, SEND_INTERVAL_MS);
  const requests = new ViewRequests(model);
  let cropsWanted = 0; // the model's id of this view's newest request that asked for new crops (a layer or channel change)
  const commit = (changes) => {
    requests.stamp();
    if ('layer' in changes || 'channel' in changes) cropsWanted = model.get('request');
    Object.entries(changes).forEach(([name, value]) => traits.commit(name, value));
  };
  /** Whether an answer may be drawn: it echoes this view's newest request (or, before this view sent any, Python's). */
  const accept = (message) => requests.accept(message?.request);
  const cropsAnswered = (crops) => !cropsWanted || (crops?.request ?? 0) >= cropsWanted;
  let decodeError = '';
  let figures = [];
  let tiles = null; // { count, side, pixels } of the crops on screen

  const layerInfo = () => (model.get('layers') ?? []).find((layer) => layer.name === model.get('layer'));
  const channelCount = () => layerInfo()?.shape?.[0] ?? 0;

  function showError() {
    drawError(ui.error, model.get('error') || decodeError);
  }

  function drawControls() {
    const pairs = (model.get('layers') ?? []).map(({ name, shape }) => [name, `${name} — ${shape.join('×')}`]);
    setOptions(ui.layer, pairs, model.get('layer'));
    ui.channel.max = Math.max(0, channelCount() - 1);
    ui.channel.value = model.get('channel');
  }

  /** The projection pictures answering the crops on screen, or null: an answer for another neuron (a stale
   * one, or one not yet replaced) is never drawn. */
  function currentProjections() {
    const answer = model.get('projections');
    const crops = model.get('crops');
    if (!tiles || isEmptyArray(answer) || !crops || answer.layer !== crops.layer || answer.channel !== crops.channel) return null;
    if (JSON.stringify(answer.ids) !== JSON.stringify(crops.ids)) return null;
    return toTypedArray(answer);
  }

  function drawBusy() {
    const crops = model.get('crops');
    const answer = model.get('projections');
    const stale = !crops || !cropsAnswered(crops);
    const waiting = model.get('show') !== 'image' && (!answer || answer.layer !== crops?.layer || answer.channel !== crops?.channel);
    ui.computing.hidden = !(model.get('busy') || stale || waiting);
  }

  function drawShowControls() {
    setOptions(ui.show, [['image', 'image'], ['projection', 'deconvnet projection'], ['overlay', 'projection over image']], model.get('show'));
    ui.opacity.value = model.get('opacity');
    ui.opacity.hidden = model.get('show') !== 'overlay';
  }

  /** Draw every crop as `show` asks: the image, its projection, or the projection over it at `opacity`. */
  function drawTiles() {
    if (!tiles) return;
    const { count, height, width, pixels } = tiles;
    const show = model.get('show');
    const projections = show === 'image' ? null : currentProjections();
    const answer = model.get('projections');
    ui.projectionNote.hidden = show === 'image' || !answer?.note || answer.layer !== model.get('crops')?.layer || answer.channel !== model.get('crops')?.channel;
    ui.projectionNote.textContent = answer?.note ?? '';
    const opacity = show === 'projection' ? 1 : model.get('opacity');
    const tileBytes = height * width * 3;
    const cellWidth = Math.round((CELL * width) / height);
    for (let i = 0; i < count; i++) {
      const image = pixels.subarray(i * tileBytes, (i + 1) * tileBytes);
      const rgb = projections ? blendRgb(image, projections.subarray(i * tileBytes, (i + 1) * tileBytes), opacity) : image;
      const canvas = figures[i].querySelector('canvas');
      drawNearest(canvas.getContext('2d'), rgbaToCanvas(rgbToImageData(rgb, width, height), width, height), [0, 0, width, height], [0, 0, cellWidth, CELL]);
    }
  }

  function drawCrops() {
    const crops = model.get('crops');
    drawBusy();
    if (isEmptyArray(crops) && !crops?.ids?.length) {
      ui.crops.replaceChildren();
      figures = [];
      tiles = null;
      return;
    }
    let pixels;
    try {
      pixels = toTypedArray(crops);
      decodeError = '';
    } catch (error) {
      decodeError = `crops: ${error.message}`;
      showError();
      return;
    }
    showError();
    const [count, height, width] = crops.shape;
    tiles = { count, height, width, pixels };
    const cellWidth = Math.round((CELL * width) / height);
    ui.crops.classList.toggle('cnnw-strips', width > height);
    figures = [];
    for (let i = 0; i < count; i++) {
      const canvas = h('canvas', { width: cellWidth, height: CELL, className: 'cnnw-crop' });
      canvas.style.width = `${cellWidth}px`;
      const caption = h('figcaption', {},
        h('span', { className: 'cnnw-value', textContent: formatValue(crops.values[i]) }), ' ',
        h('span', { textContent: crops.captions?.[i] ?? `#${crops.ids[i]}` }));
      caption.title = caption.textContent;
      const figure = h('figure', { title: `image #${crops.ids[i]}, max at (${crops.positions[i].join(', ')})` }, canvas, caption);
      figure.dataset.index = String(i);
      figures.push(figure);
    }
    ui.crops.replaceChildren(...figures);
    const kind = width > height ? 'clips' : 'images';
    ui.field.textContent = `${crops.layer}, channel ${crops.channel}: top ${count} ${kind} — ${crops.note ?? ''}`;
    drawTiles();
    drawSelection();
  }

  function drawSelection() {
    figures.forEach((figure, i) => figure.classList.toggle('cnnw-selected', i === model.get('selected')));
  }

  function drawFull() {
    const full = model.get('full');
    const shown = !isEmptyArray(full) && full.selected === model.get('selected');
    ui.full.hidden = !shown;
    if (!shown) {
      ui.fullInfo.textContent = figures.length ? 'click a crop to see the whole image' : '';
      return;
    }
    const [height, width] = full.shape;
    const source = rgbaToCanvas(rgbToImageData(toTypedArray(full), width, height), width, height);
    drawFitted(ui.full, source, [0, 0, width, height], FULL_BOX);
    const ctx = ui.full.getContext('2d');
    const [top, left, bottom, right] = scaleBox(full.box, ui.full.width / width, ui.full.height / height);
    ctx.strokeStyle = HIGHLIGHT_COLOR;
    ctx.lineWidth = 2;
    ctx.strokeRect(left + 1, top + 1, Math.max(1, right - left - 2), Math.max(1, bottom - top - 2));
    const frames = full.frames ? `frame ${full.position[0]} (the field spans frames ${full.frames[0]}–${full.frames[1] - 1}); ` : '';
    ui.fullInfo.textContent = `${full.frames ? 'clip' : 'image'} #${full.id}: activation ${formatValue(full.value)} at unit (${full.position.join(', ')}); ` +
      `${frames}the outline is the receptive field, clipped to the image`;
  }

  const onModel = (events, fn) => events.split(' ').forEach((event) => listeners.onModel(model, event, fn));
  onModel('change:error', showError);
  onModel('change:layers change:layer change:channel', () => {
    drawControls();
    drawBusy();
  });
  onModel('change:busy', drawBusy);
  onModel('change:show change:opacity', () => {
    drawShowControls();
    drawBusy();
    drawTiles();
  });
  onModel('change:projections', () => {
    if (!accept(model.get('projections'))) return;
    drawShowControls();
    drawBusy();
    drawTiles();
  });
  onModel('change:crops', () => {
    if (!accept(model.get('crops'))) return;
    drawCrops();
    drawFull();
  });
  onModel('change:selected', () => {
    drawSelection();
    drawFull();
  });
  onModel('change:full', () => {
    if (accept(model.get('full'))) drawFull();
  });

  listeners.onDom(ui.layer, 'change', () => commit({ layer: ui.layer.value, selected: -1 }));
  listeners.onDom(ui.channel, 'change', () => {
    const channel = Number(ui.channel.value);
    if (Number.isInteger(channel) && channel >= 0 && channel < channelCount()) commit({ channel, selected: -1 });
    else ui.channel.value = model.get('channel');
  });
  listeners.onDom(ui.previous, 'click', () => commit({ channel: stepChannel(model.get('channel'), -1, channelCount()), selected: -1 }));
  listeners.onDom(ui.next, 'click', () => commit({ channel: stepChannel(model.get('channel'), 1, channelCount()), selected: -1 }));
  listeners.onDom(ui.random, 'click', () => {
    const neuron = randomNeuron(model.get('layers') ?? [], Math.random);
    if (neuron) commit({ ...neuron, selected: -1 });
  });
  listeners.onDom(ui.crops, 'click', (event) => {
    const figure = event.target.closest?.('figure');
    if (!figure || !ui.crops.contains(figure)) return;
    commit({ selected: Number(figure.dataset.index) });
  });
  // setting a trait redraws at once through its change listener; projection <-> overlay and the opacity need
  // nothing new from Python
  listeners.onDom(ui.show, 'change', () => commit({ show: ui.show.value }));
  listeners.onDom(ui.opacity, 'input', () => traits.commit('opacity', Number(ui.opacity.value))); // drawn here: no request
  listeners.onDom(ui.full, 'mousemove', (event) => {
    const { x, y } = canvasPoint(ui.full, event);
    ui.full.title = `(${Math.round(y)}, ${Math.round(x)}) on screen`;
  });

  showError();
  drawControls();
  drawShowControls();
  drawCrops();
  drawFull();

  return () => {
    listeners.removeAll();
    traits.saveSoon.flush();
    ui.root.remove();
  };
}

export default { render };
