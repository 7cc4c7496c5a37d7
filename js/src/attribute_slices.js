// Attribute slices (anywidget front end): pick an attribute and a number of bins; each bin is a column with its
// accuracy bar and Wilson interval (or only confidence without labels), the mean confidence as a dot with its
// interval, its range and count; a click on a bin asks Python for its images, drawn below with their predictions.
// Python predicts and bins; this file draws and sends settings. Styles are scoped under .cnnw-attribute-slices.
import { h, setOptions } from './shared/dom.js';
import { drawFitted } from './shared/images.js';
import { Listeners } from './shared/listeners.js';
import { PANEL_CSS, drawError, messageCanvas } from './shared/panels.js';
import { barGeometry, percent, requestFilter, withInterval } from './shared/scores.js';
import { scopedStyle } from './shared/styles.js';

const ROOT = 'cnnw-attribute-slices';
const COLUMN = 160; // px: the height of a bin's column, 0 to 1
const THUMB_BOX = 80;
const CSS = `
.cnnw-as-chart { display: flex; gap: 6px; align-items: flex-end; }
.cnnw-as-bin { display: flex; flex-direction: column; align-items: center; gap: 2px; width: 84px; padding: 4px 2px; border: 1px solid transparent; border-radius: 3px; cursor: pointer; background: none; color: inherit; font: inherit; }
.cnnw-as-bin:hover { border-color: var(--jp-border-color1, #bbb); }
.cnnw-as-bin.cnnw-as-selected { border-color: var(--jp-brand-color1, #1976d2); background: var(--jp-layout-color2, #eee); }
.cnnw-as-column { position: relative; width: 40px; height: ${COLUMN}px; background: var(--jp-layout-color2, #f3f3f3); }
.cnnw-as-bar { position: absolute; bottom: 0; left: 6px; width: 28px; background: var(--jp-brand-color1, #1976d2); }
.cnnw-as-whisker { position: absolute; left: 19px; width: 2px; background: var(--jp-ui-font-color1, #222); }
.cnnw-as-dot { position: absolute; left: 15px; width: 10px; height: 10px; margin-bottom: -5px; border-radius: 50%; background: #ff7f0e; }
.cnnw-as-range, .cnnw-as-count { font-size: 11px; text-align: center; font-variant-numeric: tabular-nums; }
.cnnw-as-empty { position: absolute; bottom: 4px; width: 100%; text-align: center; font-size: 11px; color: var(--jp-ui-font-color2, #666); }
.cnnw-as-images { display: flex; flex-wrap: wrap; gap: 6px; }
.cnnw-as-image { display: flex; flex-direction: column; align-items: center; font-size: 11px; width: ${THUMB_BOX + 8}px; }
.cnnw-as-wrong { color: var(--jp-error-color1, #c62828); }
`;

function binColumn(row, labelled) {
  const column = h('div', { className: 'cnnw-as-column' });
  if (!row.count) {
    column.append(h('div', { className: 'cnnw-as-empty', textContent: 'no images' }));
    return column;
  }
  if (labelled) {
    const { bar, whisker } = barGeometry(row.accuracy, row.accuracy_interval, COLUMN);
    column.append(h('div', { className: 'cnnw-as-bar', style: `height: ${bar}px` }));
    if (whisker) column.append(h('div', { className: 'cnnw-as-whisker', style: `bottom: ${whisker.low}px; height: ${Math.max(1, whisker.high - whisker.low)}px` }));
  }
  const confidence = barGeometry(row.confidence, row.confidence_interval, COLUMN);
  if (confidence.whisker && !labelled) {
    column.append(h('div', { className: 'cnnw-as-whisker', style: `bottom: ${confidence.whisker.low}px; height: ${Math.max(1, confidence.whisker.high - confidence.whisker.low)}px` }));
  }
  column.append(h('div', { className: 'cnnw-as-dot', style: `bottom: ${confidence.bar}px`, title: `confidence ${withInterval(row.confidence, row.confidence_interval)}` }));
  return column;
}

function render({ model, el }) {
  const listeners = new Listeners();
  const requests = requestFilter(model.get('request') ?? 0);
  const attribute = h('select', { className: 'cnnw-as-attribute' });
  const bins = h('input', { type: 'number', min: 1, max: 20, step: 1, className: 'cnnw-as-bins', style: 'width: 4em' });
  const progress = h('progress', { className: 'cnnw-progress', max: 1, value: 0 });
  const error = h('div', { className: 'cnnw-error' });
  const summary = h('div', { className: 'cnnw-caption cnnw-as-summary' });
  const notes = h('div', { className: 'cnnw-note cnnw-as-notes' });
  const chart = h('div', { className: 'cnnw-as-chart' });
  const legend = h('div', { className: 'cnnw-caption' });
  const caption = h('div', { className: 'cnnw-caption cnnw-as-caption' });
  const images = h('div', { className: 'cnnw-as-images' });
  const root = h('div', { className: ROOT }, scopedStyle(ROOT, PANEL_CSS + CSS),
    h('div', { className: 'cnnw-row cnnw-controls' }, h('label', {}, 'attribute ', attribute), h('label', {}, 'bins ', bins), progress, error),
    summary, notes, chart, legend, caption, images);
  el.append(root);
  let table = null;

  function ask(values, kinds) {
    for (const [name, value] of Object.entries(values)) model.set(name, value);
    model.set('request', requests.next(kinds));
    model.save_changes();
  }

  function drawControls() {
    setOptions(attribute, (model.get('names') ?? []).map((name) => [name, name.replace(/_/g, ' ')]), model.get('attribute'));
    bins.value = model.get('bins');
  }
  function drawSummary() {
    const s = model.get('summary') ?? {};
    summary.textContent = s.images
      ? `${s.images} images: ${s.labelled ? `accuracy ${percent(s.accuracy)}, ` : ''}mean confidence ${percent(s.confidence)}`
      : 'predicting the dataset…';
    notes.replaceChildren(...(model.get('notes') ?? []).map((note) => h('div', { textContent: note })));
  }
  function drawChart() {
    const answer = model.get('table');
    if (!answer?.bins || !requests.accept('table', answer)) return;
    table = answer;
    chart.replaceChildren(...answer.bins.map((row, index) => {
      const button = h('button', { className: `cnnw-as-bin${index === model.get('selected') ? ' cnnw-as-selected' : ''}`, title: row.count ? `accuracy ${withInterval(row.accuracy, row.accuracy_interval)}; confidence ${withInterval(row.confidence, row.confidence_interval)}` : 'no images' },
        binColumn(row, answer.labelled),
        h('div', { className: 'cnnw-as-range', textContent: `${Number(row.low.toPrecision(3))}–${Number(row.high.toPrecision(3))}` }),
        h('div', { className: 'cnnw-as-count', textContent: answer.labelled && row.count ? `${percent(row.accuracy, 0)} · n=${row.count}` : `n=${row.count}` }));
      button.dataset.bin = String(index);
      return button;
    }));
    legend.textContent = answer.labelled
      ? `${answer.attribute.replace(/_/g, ' ')}: bars accuracy with Wilson 95 % intervals, dots mean confidence; click a bin for its images`
      : `${answer.attribute.replace(/_/g, ' ')}: mean confidence ± 1.96 s.e. (no labels of the model's classes); click a bin for its images`;
  }
  function drawImages() {
    const message = model.get('images');
    if (!message?.shape || !requests.accept('images', message)) return;
    for (const button of chart.children) button.classList.toggle('cnnw-as-selected', Number(button.dataset.bin) === message.bin);
    if (message.bin < 0) {
      caption.textContent = '';
      images.replaceChildren();
      return;
    }
    const row = table?.bins?.[message.bin];
    caption.textContent = message.count
      ? `bin ${message.bin + 1}${row ? ` (${Number(row.low.toPrecision(3))}–${Number(row.high.toPrecision(3))})` : ''}: ${message.items.length} of ${message.count} images`
      : `bin ${message.bin + 1} has no images`;
    images.replaceChildren(...message.items.map((item, index) => {
      const canvas = h('canvas');
      const source = messageCanvas(message, index);
      drawFitted(canvas, source, [0, 0, source.width, source.height], THUMB_BOX);
      const text = item.label === null ? `${item.prediction} ${percent(item.probability, 0)}` : `${item.prediction} ${percent(item.probability, 0)} (true ${item.label})`;
      return h('div', { className: `cnnw-as-image${item.correct === false ? ' cnnw-as-wrong' : ''}` }, canvas, h('span', { textContent: text }));
    }));
  }
  function drawState() {
    drawError(error, model.get('error'));
    progress.value = model.get('progress');
    progress.hidden = !model.get('busy');
  }

  listeners.onDom(attribute, 'change', () => ask({ attribute: attribute.value }, ['table', 'images']));
  listeners.onDom(bins, 'change', () => {
    const value = Number(bins.value);
    if (Number.isInteger(value) && value >= 1 && value <= 20) ask({ bins: value, edges: [] }, ['table', 'images']);
  });
  listeners.onDom(chart, 'click', (event) => {
    const button = event.target.closest('.cnnw-as-bin');
    if (button) ask({ selected: Number(button.dataset.bin) }, ['images']);
  });
  for (const name of ['names', 'attribute', 'bins']) listeners.onModel(model, `change:${name}`, drawControls);
  listeners.onModel(model, 'change:summary', drawSummary);
  listeners.onModel(model, 'change:notes', drawSummary);
  listeners.onModel(model, 'change:table', drawChart);
  listeners.onModel(model, 'change:images', drawImages);
  for (const name of ['error', 'busy', 'progress']) listeners.onModel(model, `change:${name}`, drawState);
  drawControls();
  drawSummary();
  drawChart();
  drawImages();
  drawState();
  return () => {
    listeners.removeAll();
    root.remove();
  };
}

export default { render };
