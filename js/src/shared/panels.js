// Building blocks shared by the feature-visualization widgets: labelled sliders, buttons, prediction bars,
// RGB / gray images drawn from array messages, the error box, and the panels' stylesheet.
import { isEmptyArray, toTypedArray } from './arrays.js';
import { h } from './dom.js';
import { drawFitted, grayToRGBA, rgbaToCanvas, rgbToImageData } from './images.js';

/** What the feature-visualization panels add to BASE_CSS (shared/styles.js), scoped with it per widget. */
export const PANEL_CSS = `
& canvas { image-rendering: pixelated; max-width: 100%; }
.cnnw-row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.cnnw-controls { align-items: center; }
.cnnw-controls label { display: inline-flex; gap: 4px; align-items: center; }
.cnnw-figure { display: flex; flex-direction: column; gap: 2px; align-items: flex-start; }
.cnnw-predictions { display: grid; grid-template-columns: minmax(60px, max-content) 120px 4em; gap: 2px 6px; align-items: center; font-size: 12px; }
.cnnw-bar-track { height: 10px; background: var(--jp-layout-color2, #eee); }
.cnnw-bar { height: 100%; background: var(--jp-brand-color1, #1976d2); }
.cnnw-percent { text-align: right; font-variant-numeric: tabular-nums; }
.cnnw-value { font-variant-numeric: tabular-nums; min-width: 3.5em; display: inline-block; }
.cnnw-legend { display: flex; flex-wrap: wrap; gap: 2px 10px; font-size: 11px; }
.cnnw-swatch { display: inline-block; width: 14px; height: 3px; margin-right: 4px; vertical-align: middle; }
`;

/** A range input with a label and a live value readout; returns {root, input, readout}. */
export function slider(text, { min, max, step, value, format = (v) => String(v) }) {
  const input = h('input', { type: 'range', min, max, step, value });
  const readout = h('span', { className: 'cnnw-value', textContent: format(Number(value)) });
  const root = h('label', {}, text, input, readout);
  return { root, input, readout, format };
}

/** Set a slider's value and readout without firing its listeners. */
export function setSlider(control, value) {
  control.input.value = value;
  control.readout.textContent = control.format(Number(value));
}

/** Prediction rows (label, bar, percent) into `container`, highlighting `highlight` (a label) in bold. */
export function drawPredictions(container, predictions, highlight = '') {
  container.replaceChildren(...(predictions ?? []).flatMap(({ label, probability }) => [
    h('span', { textContent: label, style: label === highlight ? 'font-weight: bold' : '' }),
    h('div', { className: 'cnnw-bar-track' }, h('div', { className: 'cnnw-bar', style: `width: ${probability * 100}%` })),
    h('span', { className: 'cnnw-percent', textContent: `${(probability * 100).toFixed(1)}%` }),
  ]));
}

/** Offscreen canvas of an HxWx3 (RGB) or HxW (gray) uint8 array message, or null when empty. */
export function messageCanvas(message, index = null) {
  if (isEmptyArray(message)) return null;
  let values = toTypedArray(message);
  let shape = message.shape;
  if (index !== null) {
    const size = shape.slice(1).reduce((a, b) => a * b, 1);
    values = values.subarray(index * size, (index + 1) * size);
    shape = shape.slice(1);
  }
  const [height, width] = shape;
  const rgba = shape.length === 3 ? rgbToImageData(values, width, height) : grayToRGBA(values, width, height);
  return rgbaToCanvas(rgba, width, height);
}

/** Draw an array message (or item `index` of a stacked one) fitted into a box x box square of `canvas`. */
export function drawMessage(canvas, message, box, index = null) {
  const source = messageCanvas(message, index);
  canvas.hidden = !source;
  if (source) drawFitted(canvas, source, [0, 0, source.width, source.height], box);
  return Boolean(source);
}

/** A figure: canvas above a caption; returns {root, canvas, caption}. */
export function figure(className) {
  const canvas = h('canvas', { className });
  const caption = h('div', { className: 'cnnw-caption' });
  return { root: h('div', { className: 'cnnw-figure' }, canvas, caption), canvas, caption };
}

/** Show `message` in the error box (hidden when empty). */
export function drawError(box, message) {
  box.textContent = message ?? '';
  box.title = message ?? '';
  box.hidden = !message;
}
