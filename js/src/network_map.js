// Network map (anywidget front end): the model as boxes in forward order (ranks top to bottom, parallel branches
// side by side, residual skips bending to the right), each with its kind, output shape, parameters,
// multiply-adds, receptive field / stride and a sparkline of the image's activation means (red: dead channels).
// Click a block to expand it, a chip to collapse it again; click a layer to open it in the chosen view (Python
// opens it). Hover shows every number. Styles are scoped under .cnnw-network-map and follow the JupyterLab theme.
import { canvasPoint, h } from './shared/dom.js';
import { BOX, boxLayout, canvasScale, edgeCurve, formatCount, unitAt } from './shared/graph.js';
import { Listeners } from './shared/listeners.js';
import { drawMessage } from './shared/panels.js';

const KIND_COLORS = {
  conv: '#bbdefb', activation: '#c8e6c9', pool: '#ffe0b2', norm: '#eeeeee', linear: '#e1bee7', join: '#ffcdd2',
  function: '#fff9c4', block: '#cfd8dc', input: '#ffffff', other: '#eeeeee',
};
const VIEWS = [['layers', 'LayerExplorer'], ['cam', 'Grad-CAM (SaliencyOverlay)'], ['top', 'TopActivations']];
const CSS = `
.cnnw-network-map { display: flex; flex-direction: column; gap: 6px; font: 13px/1.4 var(--jp-ui-font-family, sans-serif); color: var(--jp-ui-font-color1, #222); }
.cnnw-network-map .cnnw-nm-bar { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
.cnnw-network-map .cnnw-nm-totals { font-variant-numeric: tabular-nums; }
.cnnw-network-map .cnnw-nm-chip { border: 1px solid var(--jp-border-color1, #bbb); border-radius: 10px; padding: 0 8px; background: var(--jp-layout-color2, #eee); color: inherit; cursor: pointer; font-size: 12px; }
.cnnw-network-map .cnnw-nm-scroll { max-height: 640px; overflow: auto; border: 1px solid var(--jp-border-color2, #ddd); position: relative; background: var(--jp-layout-color0, #fff); }
.cnnw-network-map .cnnw-nm-canvas { display: block; cursor: pointer; }
.cnnw-network-map .cnnw-nm-tip { position: absolute; pointer-events: none; background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bbb); padding: 4px 6px; font-size: 12px; white-space: pre; box-shadow: 0 1px 4px rgba(0,0,0,.2); }
.cnnw-network-map .cnnw-nm-error { padding: 2px 8px; border-radius: 3px; background: #c62828; color: #fff; }
.cnnw-network-map .cnnw-nm-note { color: var(--jp-ui-font-color2, #666); font-size: 12px; }
.cnnw-network-map .cnnw-nm-thumb { width: 48px; height: 48px; }
.cnnw-network-map [hidden] { display: none !important; }
`;

function themeColor(el, name, fallback) {
  return getComputedStyle(el).getPropertyValue(name).trim() || fallback;
}

function shapeText(shape) {
  return shape && shape.length ? shape.join('×') : '–';
}

function detailText(unit) {
  const lines = [
    `${unit.name}  (${unit.block ? `${unit.type}, ${unit.layers} layers` : unit.type})`,
    `output ${shapeText(unit.shape)}`,
    `parameters ${unit.params.toLocaleString()}, multiply-adds ${unit.macs.toLocaleString()}`,
    `receptive field ${unit.receptive_field ?? '–'} px, stride ${unit.stride ?? '–'}`,
  ];
  if (unit.means.length) {
    const mean = unit.means.reduce((a, b) => a + b, 0) / unit.means.length;
    lines.push(`mean activation ${mean.toFixed(3)}${unit.means.length > 1 ? ` (over ${unit.means.length} layers)` : ''}`);
  }
  if (unit.dead.length) lines.push(`dead channels ${(100 * Math.max(...unit.dead)).toFixed(0)} %${unit.dead.length > 1 ? ' (worst layer)' : ''}`);
  lines.push(unit.block ? 'click: expand' : 'click: open');
  return lines.join('\n');
}

function drawSparkline(ctx, values, x, y, width, height, color) {
  if (values.length < 2) return;
  const low = Math.min(...values);
  const span = Math.max(...values) - low || 1;
  ctx.beginPath();
  values.forEach((value, i) => {
    const px = x + (i * width) / (values.length - 1);
    const py = y + height - ((value - low) / span) * height;
    if (i === 0) ctx.moveTo(px, py);
    else ctx.lineTo(px, py);
  });
  ctx.strokeStyle = color;
  ctx.lineWidth = 1;
  ctx.stroke();
}

function drawMap(canvas, units, edges, theme) {
  const { boxes, width, height } = boxLayout(units);
  const scale = canvasScale(width, height, window.devicePixelRatio);
  canvas.width = Math.ceil(width * scale);
  canvas.height = Math.ceil(height * scale);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(scale, 0, 0, scale, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = theme.edge;
  ctx.lineWidth = 1;
  for (const [from, to] of edges) {
    const [start, c1, c2, end] = edgeCurve(boxes[from], boxes[to]);
    ctx.beginPath();
    ctx.moveTo(start.x, start.y);
    ctx.bezierCurveTo(c1.x, c1.y, c2.x, c2.y, end.x, end.y);
    ctx.stroke();
  }
  units.forEach((unit, i) => {
    const b = boxes[i];
    ctx.fillStyle = KIND_COLORS[unit.kind] ?? KIND_COLORS.other;
    ctx.fillRect(b.x, b.y, b.width, b.height);
    ctx.strokeStyle = unit.block ? '#455a64' : '#90a4ae';
    ctx.lineWidth = unit.block ? 2 : 1;
    ctx.strokeRect(b.x + 0.5, b.y + 0.5, b.width - 1, b.height - 1);
    ctx.fillStyle = '#111';
    ctx.font = `bold 11px ${theme.font}`;
    const name = unit.block ? `▸ ${unit.name}` : unit.name;
    ctx.fillText(name.length > 30 ? `…${name.slice(-29)}` : name, b.x + 5, b.y + 14);
    ctx.font = `10px ${theme.font}`;
    const rf = unit.receptive_field ? ` · rf ${unit.receptive_field}/${unit.stride}` : '';
    ctx.fillText(`${shapeText(unit.shape)} · ${formatCount(unit.params)}p · ${formatCount(unit.macs)}${rf}`, b.x + 5, b.y + 30);
    drawSparkline(ctx, unit.means, b.x + b.width - 52, b.y + 4, 46, 12, '#1565c0');
    const dead = unit.dead.length ? Math.max(...unit.dead) : 0;
    if (dead > 0) {
      ctx.fillStyle = '#c62828';
      ctx.fillRect(b.x + b.width - 4, b.y + b.height * (1 - dead), 3, b.height * dead);
    }
  });
  return { boxes, scale };
}

// Timing hooks (bench/network_map.py reads them with performance.getEntriesByType('mark')): the view's start,
// each finished drawing of the graph (detail: how many boxes, whether receptive fields are in), and each click that
// expands a block.
const MARKS = { render: 'cnnw-nm-render', drawn: 'cnnw-nm-drawn', expand: 'cnnw-nm-expand' };

function render({ model, el }) {
  performance.mark(MARKS.render);
  const listeners = new Listeners();
  const canvas = h('canvas', { className: 'cnnw-nm-canvas' });
  const tip = h('div', { className: 'cnnw-nm-tip', hidden: true });
  const scroll = h('div', { className: 'cnnw-nm-scroll' }, canvas, tip);
  const totals = h('span', { className: 'cnnw-nm-totals' });
  const chips = h('span', { className: 'cnnw-nm-bar' });
  const view = h('select', {}, ...VIEWS.map(([value, text]) => h('option', { value, textContent: text })));
  const thumb = h('canvas', { className: 'cnnw-nm-thumb' });
  const error = h('div', { className: 'cnnw-nm-error', hidden: true });
  const busy = h('span', { className: 'cnnw-nm-note', textContent: 'opening…', hidden: true });
  const root = h('div', { className: 'cnnw-network-map' }, h('style', { textContent: CSS }),
    h('div', { className: 'cnnw-nm-bar' }, thumb, totals, h('label', {}, 'click opens ', view), busy),
    chips, error, scroll);
  el.append(root);
  let boxes = [];
  let scale = 1; // canvas pixels per CSS pixel of the last drawing
  const theme = () => ({ edge: themeColor(root, '--jp-border-color1', '#999'), font: themeColor(root, '--jp-ui-font-family', 'sans-serif') });

  const drawGraph = () => {
    ({ boxes, scale } = drawMap(canvas, model.get('units'), model.get('edges'), theme()));
    const units = model.get('units');
    performance.mark(MARKS.drawn, { detail: { units: units.length, fields: units.some((unit) => unit.receptive_field != null) } });
  };
  // units and edges arrive in one message (Python holds them together) and fire two change events: draw once,
  // after both, so edges never index the boxes of the other layout
  let drawQueued = false;
  const drawSoon = () => {
    if (drawQueued) return;
    drawQueued = true;
    queueMicrotask(() => {
      drawQueued = false;
      drawGraph();
    });
  };
  const drawTotals = () => {
    const t = model.get('totals');
    totals.textContent = `${model.get('title')}: ${t.layers ?? '?'} layers, ${(t.params ?? 0).toLocaleString()} parameters, ${(t.macs ?? 0).toLocaleString()} multiply-adds`;
  };
  const drawChips = () => {
    const expanded = model.get('expanded');
    chips.replaceChildren(...expanded.map((name) => {
      const chip = h('button', { className: 'cnnw-nm-chip', textContent: `${name} ✕`, title: `collapse ${name}` });
      chip.dataset.block = name;
      return chip;
    }));
    if (expanded.length) {
      const all = h('button', { className: 'cnnw-nm-chip', textContent: 'collapse all' });
      all.dataset.block = '*';
      chips.append(all);
    }
  };
  const drawState = () => {
    error.textContent = model.get('error');
    error.hidden = !model.get('error');
    busy.hidden = !model.get('busy');
    view.value = model.get('view');
  };

  listeners.onDom(chips, 'click', (event) => {
    const name = event.target?.dataset?.block;
    if (!name) return;
    const kept = name === '*' ? [] : model.get('expanded').filter((block) => block !== name && !block.startsWith(`${name}.`));
    model.set('expanded', kept);
    model.save_changes();
  });
  listeners.onDom(canvas, 'click', (event) => {
    const point = canvasPoint(canvas, event);
    const index = unitAt(boxes, { x: point.x / scale, y: point.y / scale });
    if (index < 0) return;
    const unit = model.get('units')[index];
    if (unit.block) {
      performance.mark(MARKS.expand);
      model.set('expanded', [...model.get('expanded'), unit.name]);
    }
    else model.set('selected', unit.name);
    model.save_changes();
  });
  listeners.onDom(canvas, 'mousemove', (event) => {
    const point = canvasPoint(canvas, event);
    const index = unitAt(boxes, { x: point.x / scale, y: point.y / scale });
    tip.hidden = index < 0;
    if (index < 0) return;
    tip.textContent = detailText(model.get('units')[index]);
    tip.style.left = `${boxes[index].x + 40}px`;
    tip.style.top = `${boxes[index].y + BOX.height + 2}px`;
  });
  listeners.onDom(canvas, 'mouseleave', () => { tip.hidden = true; });
  listeners.onDom(view, 'change', () => { model.set('view', view.value); model.save_changes(); });
  listeners.onModel(model, 'change:units', drawSoon);
  listeners.onModel(model, 'change:edges', drawSoon);
  listeners.onModel(model, 'change:expanded', drawChips);
  listeners.onModel(model, 'change:totals', drawTotals);
  listeners.onModel(model, 'change:error', drawState);
  listeners.onModel(model, 'change:busy', drawState);
  listeners.onModel(model, 'change:view', drawState);
  listeners.onModel(model, 'change:image', () => drawMessage(thumb, model.get('image'), 48));
  drawGraph();
  drawChips();
  drawTotals();
  drawState();
  drawMessage(thumb, model.get('image'), 48);
  return () => {
    listeners.removeAll();
    root.remove();
  };
}

export default { render };
