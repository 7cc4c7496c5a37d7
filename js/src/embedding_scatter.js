// EmbeddingScatter widget (anywidget front end): a dataset's CNN codes in 2-D, one dot per image coloured
// by label or prediction; hover shows the image (cut from one sprite sheet of all thumbnails), scroll zooms,
// drag pans; the "drag to" menu switches dragging to box or lasso (freehand polygon) selection, and shift-drag
// selects a box in any mode; the selected images show below. The grid layout draws every image in its cell. Python computes layouts; zoom, pan, hover and selection never leave the browser.
// Dots are written straight into the canvas's pixels (shared/points.js), so a million points redraw within a
// frame or two on a CPU. Up to a sprite sheet's worth of images the thumbnails come once, in one sheet; beyond
// that (`thumbnails_on_request`) hover and the selection ask Python for the few they show, each request stamped
// with an id that the answer echoes, and only the newest answer is kept.
import { isEmptyArray, toTypedArray } from './shared/arrays.js';
import { canvasPoint, h, setOptions } from './shared/dom.js';
import { rgbaToCanvas, rgbToImageData } from './shared/images.js';
import { Listeners } from './shared/listeners.js';
import { categoryColor } from './shared/palette.js';
import { affineFrom, countValues, drawDots, packColor, parseColor, pointNumbers } from './shared/points.js';
import { RequestStamp, throttledTraits } from './shared/requests.js';
import { buildBuckets, inBox, inPolygon, nearest } from './shared/spatial.js';
import { decodeInt32, spriteRect } from './shared/sprites.js';
import { initialView, panBy, toLayout, toScreen, unitsPerPixel, zoomAt } from './shared/viewport.js';

const WIDTH = 640;
const HEIGHT = 520;
const HOVER_RADIUS_PX = 8;
const HOVER_SIZE = 96;
const SELECTED_SIZE = 40;
const SELECTED_MAX = 200;
const SEND_INTERVAL_MS = 100;
const HIGHLIGHT_COLOR = '#00e5ff';
const METHOD_LABELS = [['pca', 'PCA'], ['tsne', 't-SNE'], ['umap', 'UMAP']];
const DRAG_MODES = [['pan', 'pan'], ['box', 'select a box'], ['lasso', 'select with a lasso']];
const LASSO_STEP_PX = 3; // a lasso vertex every few pixels of pointer travel: smooth enough, few vertices
const FADED_ALPHA = 0.2; // with a selection, the other dots fade to this opacity
const THUMBNAIL_CACHE = 2000; // thumbnails asked of Python kept in the browser (about 12 MB at 32 px)
const WHITE = [255, 255, 255];

const CSS = `
.cnnw-embedding-scatter { display: flex; flex-direction: column; gap: 8px; font: 13px/1.4 var(--jp-ui-font-family, sans-serif); color: var(--jp-ui-font-color1, #222); }
.cnnw-embedding-scatter [hidden] { display: none !important; }
.cnnw-embedding-scatter .cnnw-row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.cnnw-embedding-scatter .cnnw-controls { align-items: center; }
.cnnw-embedding-scatter .cnnw-controls label { display: inline-flex; gap: 4px; align-items: center; }
.cnnw-embedding-scatter .cnnw-stage { position: relative; border: 1px solid var(--jp-border-color2, #ddd); }
.cnnw-embedding-scatter canvas.cnnw-plot { display: block; cursor: grab; background: var(--jp-layout-color0, #fff); }
.cnnw-embedding-scatter canvas.cnnw-plot.cnnw-selecting { cursor: crosshair; }
.cnnw-embedding-scatter .cnnw-hover { position: absolute; pointer-events: none; background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #888); padding: 3px; box-shadow: 0 1px 4px rgba(0,0,0,.3); font-size: 11px; }
.cnnw-embedding-scatter .cnnw-hover canvas { display: block; image-rendering: pixelated; }
.cnnw-embedding-scatter .cnnw-legend { display: flex; flex-direction: column; gap: 2px; font-size: 12px; max-height: ${HEIGHT}px; overflow: auto; }
.cnnw-embedding-scatter .cnnw-swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 50%; }
.cnnw-embedding-scatter .cnnw-progress { width: 120px; }
.cnnw-embedding-scatter .cnnw-selected { display: flex; flex-wrap: wrap; gap: 2px; max-width: ${WIDTH + 200}px; }
.cnnw-embedding-scatter .cnnw-selected canvas { width: ${SELECTED_SIZE}px; height: ${SELECTED_SIZE}px; image-rendering: pixelated; }
.cnnw-embedding-scatter .cnnw-error { flex: 1 1 200px; min-width: 0; padding: 2px 8px; border-radius: 3px; background: var(--jp-error-color1, #c62828); color: #fff; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.cnnw-embedding-scatter .cnnw-note { color: var(--jp-ui-font-color2, #666); font-size: 12px; }
`;

function buildView() {
  const ui = {
    method: h('select', { className: 'cnnw-method' }),
    colorBy: h('select', { className: 'cnnw-color-by' }),
    arrangement: h('select', { className: 'cnnw-arrangement' }),
    dragMode: h('select', { className: 'cnnw-drag-mode' }),
    reset: h('button', { className: 'cnnw-reset', textContent: 'reset view' }),
    clear: h('button', { className: 'cnnw-clear', textContent: 'clear selection' }),
    progress: h('progress', { className: 'cnnw-progress', max: 1, value: 1 }),
    status: h('span', { className: 'cnnw-note cnnw-status' }),
    error: h('div', { className: 'cnnw-error' }),
    plot: h('canvas', { className: 'cnnw-plot', width: WIDTH, height: HEIGHT }),
    hover: h('div', { className: 'cnnw-hover' }),
    hoverImage: h('canvas', { className: 'cnnw-hover-image', width: HOVER_SIZE, height: HOVER_SIZE }),
    hoverText: h('div', { className: 'cnnw-hover-text' }),
    legend: h('div', { className: 'cnnw-legend' }),
    selectedInfo: h('div', { className: 'cnnw-note cnnw-selected-info' }),
    selected: h('div', { className: 'cnnw-selected' }),
  };
  ui.hover.append(ui.hoverImage, ui.hoverText);
  ui.hover.hidden = true;
  ui.root = h('div', { className: 'cnnw-embedding-scatter' },
    h('style', { textContent: CSS }),
    h('div', { className: 'cnnw-row cnnw-controls' },
      h('label', {}, 'method', ui.method), h('label', {}, 'color by', ui.colorBy), h('label', {}, 'arrangement', ui.arrangement),
      h('label', { title: 'shift-drag selects a box whatever is chosen here' }, 'drag to', ui.dragMode), ui.reset, ui.clear,
      ui.progress, ui.status, ui.error),
    h('div', { className: 'cnnw-row' }, h('div', { className: 'cnnw-stage' }, ui.plot, ui.hover), ui.legend),
    ui.selectedInfo, ui.selected);
  setOptions(ui.method, METHOD_LABELS, 'tsne');
  setOptions(ui.arrangement, [['scatter', 'scatter'], ['grid', 'image grid']], 'scatter');
  setOptions(ui.dragMode, DRAG_MODES, 'pan');
  return ui;
}

function render({ model, el }) {
  const ui = buildView();
  el.append(ui.root);
  const listeners = new Listeners();
  const { commit, saveSoon } = throttledTraits(model, SEND_INTERVAL_MS);

  let view = initialView();
  let points = null; // Float32Array [x0, y0, ...] in [0, 1]²
  let buckets = null;
  let spriteCanvas = null;
  let sprite = null;
  let classes = { values: null, count: 0, names: [], counts: [] };
  let chosen = null; // Int32Array of the selected points' numbers, null without a selection
  let hovered = -1;
  let image = null; // the ImageData the dots are written into, reused every frame
  const thumbnails = new Map(); // image id -> canvas, for thumbnails asked of Python (newest last)
  const thumbnailRequests = new RequestStamp();
  let drag = null; // {mode: 'pan' | 'box' | 'lasso', x, y, view, current, path: [x0, y0, ...] screen pixels (lasso)}
  let frame = 0;
  let decodeError = '';

  const ctx = ui.plot.getContext('2d');
  const redraw = () => {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      draw();
    });
  };

  function drawError() {
    const message = model.get('error') || decodeError;
    ui.error.textContent = message;
    ui.error.title = message;
    ui.error.hidden = !message;
  }

  function drawStatus() {
    ui.status.textContent = model.get('status') ?? '';
    const progress = model.get('progress') ?? 1;
    ui.progress.value = progress;
    ui.progress.hidden = progress >= 1;
    ui.method.value = model.get('method');
    ui.arrangement.value = model.get('arrangement');
  }

  function decodePoints() {
    const message = model.get('points');
    if (isEmptyArray(message)) return;
    try {
      points = toTypedArray(message);
      buckets = buildBuckets(points);
      updateChosen();
      decodeError = '';
    } catch (error) {
      decodeError = `points: ${error.message}`;
    }
    drawError();
    redraw();
  }

  function decodeClasses() {
    const colorBy = model.get('color_by');
    const message = model.get(colorBy === 'label' ? 'labels' : 'predictions');
    if (isEmptyArray(message)) return;
    const values = decodeInt32(message);
    const names = (colorBy === 'label' ? model.get('label_names') : model.get('class_names')) ?? [];
    let count = names.length;
    for (const value of values) count = Math.max(count, value + 1);
    classes = { values, count, names, counts: countValues(values, count) };
    const pairs = [['label', 'label'], ['prediction', 'prediction']].filter(([value]) => value !== 'label' || model.get('has_labels'));
    setOptions(ui.colorBy, pairs, colorBy);
    ui.legend.replaceChildren(...classes.counts.map((members, value) => h('div', {},
      h('span', { className: 'cnnw-swatch', style: `background: ${categoryColor(value, count)}` }),
      `${names[value] ?? value} (${members})`)).filter((_, value) => classes.counts[value]));
    redraw();
  }

  function decodeSprite() {
    const message = model.get('sprite');
    if (isEmptyArray(message)) return;
    const [height, width] = message.shape;
    spriteCanvas = rgbaToCanvas(rgbToImageData(toTypedArray(message), width, height), width, height);
    sprite = message;
    drawSelected();
    redraw();
  }

  function gridCells() {
    const grid = model.get('grid');
    if (model.get('arrangement') !== 'grid' || isEmptyArray(grid)) return null;
    return { cells: decodeInt32(grid), columns: grid.columns, rows: grid.rows };
  }

  function draw() {
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, WIDTH, HEIGHT);
    ctx.fillStyle = `rgb(${background().join(', ')})`;
    ctx.fillRect(0, 0, WIDTH, HEIGHT);
    if (!points) return;
    const grid = gridCells();
    if (grid) drawGrid(grid);
    else drawPoints();
    if (hovered >= 0 && !grid) {
      const { x, y } = toScreen(view, WIDTH, HEIGHT, points[2 * hovered], points[2 * hovered + 1]);
      ctx.strokeStyle = '#000';
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(x, y, 6, 0, 2 * Math.PI);
      ctx.stroke();
    }
    if (drag?.mode === 'box' && drag.current) {
      ctx.strokeStyle = HIGHLIGHT_COLOR;
      ctx.lineWidth = 1.5;
      ctx.setLineDash([4, 3]);
      ctx.strokeRect(drag.x, drag.y, drag.current.x - drag.x, drag.current.y - drag.y);
      ctx.setLineDash([]);
    }
    if (drag?.mode === 'lasso') drawLasso(drag.path);
  }

  // the outline drawn so far, closed back to its start by a dashed line (the edge the selection will use)
  function drawLasso(path) {
    ctx.strokeStyle = HIGHLIGHT_COLOR;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    for (let k = 0; k < path.length; k += 2) ctx.lineTo(path[k], path[k + 1]);
    ctx.stroke();
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    ctx.moveTo(path[path.length - 2], path[path.length - 1]);
    ctx.lineTo(path[0], path[1]);
    ctx.stroke();
    ctx.setLineDash([]);
  }

  // where each image is drawn, in layout units: its dot, or in the image grid the centre of its cell
  // (images without a cell are NaN, never selected)
  function shownPositions() {
    const grid = gridCells();
    if (!grid) return points;
    const span = Math.max(grid.columns, grid.rows);
    return Float32Array.from(grid.cells, (cell) => (cell < 0 ? Number.NaN : (cell + 0.5) / span));
  }

  // the canvas's background (the theme's), read from its CSS so dots fade towards it
  function background() {
    return parseColor(getComputedStyle(ui.plot).backgroundColor) ?? WHITE;
  }

  function drawPoints() {
    const count = points.length / 2;
    const size = Math.max(2, Math.min(6, Math.round(2 + Math.log10(Math.max(1, 2e4 / count)) * view.scale ** 0.3)));
    const back = background();
    const colors = Array.from({ length: Math.max(1, classes.count) },
      (_, value) => parseColor(classes.values ? categoryColor(value, classes.count) : '#1f77b4'));
    const palette = (alpha) => Uint32Array.from(colors, (rgb) => packColor(rgb, alpha, back));
    image ??= ctx.createImageData(WIDTH, HEIGHT);
    const pixels = new Uint32Array(image.data.buffer);
    pixels.fill(packColor(back));
    // the view is affine: screen = layout * a + b
    const transform = affineFrom(toScreen(view, WIDTH, HEIGHT, 0, 0), toScreen(view, WIDTH, HEIGHT, 1, 1));
    const options = { values: classes.values, size };
    if (chosen) {
      // all fade, then the selected dots are drawn on top
      drawDots(pixels, WIDTH, HEIGHT, points, transform, { ...options, palette: palette(FADED_ALPHA) });
      drawDots(pixels, WIDTH, HEIGHT, points, transform, { ...options, palette: palette(1), only: chosen });
    } else {
      drawDots(pixels, WIDTH, HEIGHT, points, transform, { ...options, palette: palette(1) });
    }
    ctx.putImageData(image, 0, 0);
  }

  // id of the first point's image (an index of one shard starts past 0)
  function firstId() {
    return model.get('first_id') ?? 0;
  }

  function updateChosen() {
    const selection = model.get('selection') ?? [];
    chosen = selection.length && points ? pointNumbers(selection, points.length / 2, firstId()) : null;
  }

  function drawGrid({ cells, columns, rows }) {
    const span = Math.max(columns, rows);
    ctx.imageSmoothingEnabled = true;
    for (let i = 0; i < cells.length / 2; i++) {
      const column = cells[2 * i];
      if (column < 0) continue;
      const row = cells[2 * i + 1];
      const a = toScreen(view, WIDTH, HEIGHT, column / span, row / span);
      const b = toScreen(view, WIDTH, HEIGHT, (column + 1) / span, (row + 1) / span);
      if (b.x < 0 || b.y < 0 || a.x > WIDTH || a.y > HEIGHT) continue;
      const picture = thumbnailOf(firstId() + i);
      if (picture) {
        ctx.drawImage(picture.source, ...picture.rect, a.x, a.y, b.x - a.x, b.y - a.y);
      } else { // no picture (yet): the image's class colour
        ctx.fillStyle = categoryColor(classes.values?.[i] ?? 0, classes.count);
        ctx.fillRect(a.x, a.y, b.x - a.x, b.y - a.y);
      }
    }
  }

  function pointUnder(event) {
    if (!points) return { index: -1 };
    const { x, y } = canvasPoint(ui.plot, event);
    const grid = gridCells();
    if (grid) {
      const span = Math.max(grid.columns, grid.rows);
      const p = toLayout(view, WIDTH, HEIGHT, x, y);
      const column = Math.floor(p.x * span);
      const row = Math.floor(p.y * span);
      for (let i = 0; i < grid.cells.length / 2; i++) {
        if (grid.cells[2 * i] === column && grid.cells[2 * i + 1] === row) return { index: i, x, y };
      }
      return { index: -1 };
    }
    const p = toLayout(view, WIDTH, HEIGHT, x, y);
    return { index: nearest(buckets, p.x, p.y, HOVER_RADIUS_PX * unitsPerPixel(view, WIDTH, HEIGHT)), x, y };
  }

  function showHover(index, x, y) {
    hovered = index;
    ui.hover.hidden = index < 0;
    if (index >= 0) {
      const hctx = ui.hoverImage.getContext('2d');
      hctx.imageSmoothingEnabled = false;
      hctx.clearRect(0, 0, HOVER_SIZE, HOVER_SIZE);
      const id = firstId() + index;
      const picture = thumbnailOf(id);
      ui.hoverImage.hidden = !picture;
      if (picture) hctx.drawImage(picture.source, ...picture.rect, 0, 0, HOVER_SIZE, HOVER_SIZE);
      const labelNames = model.get('label_names') ?? [];
      const classNames = model.get('class_names') ?? [];
      const labels = model.get('has_labels') ? decodeInt32(model.get('labels')) : null;
      const predictions = decodeInt32(model.get('predictions'));
      const parts = [`#${id}`];
      if (labels) parts.push(`label ${labelNames[labels[index]] ?? labels[index]}`);
      if (predictions) parts.push(`predicted ${classNames[predictions[index]] ?? predictions[index]}`);
      ui.hoverText.textContent = parts.join(' · ');
      const left = x + 14 + HOVER_SIZE + 8 > WIDTH ? x - HOVER_SIZE - 20 : x + 14;
      const top = Math.min(Math.max(0, y - HOVER_SIZE / 2), HEIGHT - HOVER_SIZE - 24);
      ui.hover.style.left = `${left}px`;
      ui.hover.style.top = `${top}px`;
    }
    requestThumbnails();
    redraw();
  }

  // the picture of image `id`: a rect of the sprite sheet, or a thumbnail Python sent on request; null if neither
  function thumbnailOf(id) {
    if (spriteCanvas) return { source: spriteCanvas, rect: spriteRect(sprite, id - firstId()) };
    const canvas = thumbnails.get(id);
    return canvas ? { source: canvas, rect: [0, 0, canvas.width, canvas.height] } : null;
  }

  // ask Python for the thumbnails on show (hovered, first selected, grid cells) that the browser lacks
  function requestThumbnails() {
    if (spriteCanvas || !model.get('thumbnails_on_request')) return;
    const shown = (model.get('selection') ?? []).slice(0, SELECTED_MAX);
    if (hovered >= 0) shown.unshift(firstId() + hovered);
    const grid = gridCells();
    if (grid) {
      for (let i = 0; i < grid.cells.length / 2 && shown.length < THUMBNAIL_CACHE; i++) if (grid.cells[2 * i] >= 0) shown.push(firstId() + i);
    }
    const missing = [...new Set(shown)].filter((id) => !thumbnails.has(id));
    if (missing.length) commit('thumbnail_request', { request: thumbnailRequests.next(), images: missing });
  }

  function receiveThumbnails() {
    const message = model.get('thumbnails');
    if (isEmptyArray(message) || !thumbnailRequests.accept(message.request)) return; // an older request's answer
    const [, side] = message.shape;
    const bytes = toTypedArray(message);
    const size = side * side * 3;
    message.images.forEach((id, k) => {
      thumbnails.delete(id);
      thumbnails.set(id, rgbaToCanvas(rgbToImageData(bytes.subarray(k * size, (k + 1) * size), side, side), side, side));
    });
    for (const id of thumbnails.keys()) { // forget the oldest beyond the cache's size
      if (thumbnails.size <= THUMBNAIL_CACHE) break;
      thumbnails.delete(id);
    }
    if (hovered >= 0) {
      const { left, top } = ui.hover.style;
      showHover(hovered, 0, 0);
      Object.assign(ui.hover.style, { left, top });
    }
    drawSelected();
    redraw();
  }

  function drawSelected() {
    const selection = model.get('selection') ?? [];
    ui.selectedInfo.textContent = selection.length
      ? `${selection.length} images selected${selection.length > SELECTED_MAX ? ` (first ${SELECTED_MAX} shown)` : ''}`
      : 'to select images, shift-drag a box, or choose "select with a lasso" under "drag to" and draw around them';
    if (!spriteCanvas && !model.get('thumbnails_on_request')) {
      ui.selected.replaceChildren();
      return;
    }
    ui.selected.replaceChildren(...selection.slice(0, SELECTED_MAX).map((id) => {
      const picture = thumbnailOf(id);
      const side = picture ? picture.rect[2] : 1;
      const canvas = h('canvas', { width: side, height: side, title: `#${id}` });
      if (picture) canvas.getContext('2d').drawImage(picture.source, ...picture.rect, 0, 0, side, side);
      return canvas;
    }));
  }

  const onModel = (events, fn) => events.split(' ').forEach((event) => listeners.onModel(model, event, fn));
  onModel('change:error', drawError);
  onModel('change:status change:progress change:method change:arrangement', drawStatus);
  onModel('change:points', decodePoints);
  onModel('change:labels change:predictions change:color_by change:label_names change:class_names change:has_labels', decodeClasses);
  onModel('change:sprite', decodeSprite);
  onModel('change:thumbnails', receiveThumbnails);
  onModel('change:grid change:arrangement', () => {
    requestThumbnails();
    redraw();
  });
  onModel('change:selection', () => {
    updateChosen();
    drawSelected();
    requestThumbnails();
    redraw();
  });

  listeners.onDom(ui.method, 'change', () => commit('method', ui.method.value));
  listeners.onDom(ui.colorBy, 'change', () => commit('color_by', ui.colorBy.value));
  listeners.onDom(ui.arrangement, 'change', () => commit('arrangement', ui.arrangement.value));
  listeners.onDom(ui.reset, 'click', () => {
    view = initialView();
    redraw();
  });
  listeners.onDom(ui.clear, 'click', () => commit('selection', []));
  listeners.onDom(ui.dragMode, 'change', () => ui.plot.classList.toggle('cnnw-selecting', ui.dragMode.value !== 'pan'));
  listeners.onDom(ui.plot, 'wheel', (event) => {
    event.preventDefault();
    const { x, y } = canvasPoint(ui.plot, event);
    view = zoomAt(view, Math.exp(-event.deltaY * 0.0015), x, y);
    redraw();
  });
  listeners.onDom(ui.plot, 'dblclick', () => {
    view = initialView();
    redraw();
  });
  // Drags use pointer events captured by the canvas: JupyterLab's notebook listens to mouse events on the
  // document (to drag-select cells) and would otherwise swallow the mouseup of a shift-drag.
  listeners.onDom(ui.plot, 'mousedown', (event) => event.stopPropagation());
  listeners.onDom(ui.plot, 'pointerdown', (event) => {
    if (event.button !== 0) return;
    ui.plot.setPointerCapture?.(event.pointerId);
    const { x, y } = canvasPoint(ui.plot, event);
    const mode = event.shiftKey && ui.dragMode.value === 'pan' ? 'box' : ui.dragMode.value;
    drag = { mode, x, y, view, current: null, path: [x, y] };
    showHover(-1, 0, 0);
  });
  const endDrag = (event) => {
    if (!drag) return;
    ui.plot.releasePointerCapture?.(event.pointerId);
    const finished = drag;
    drag = null;
    if (finished.mode !== 'pan' && finished.current && points) {
      const positions = shownPositions();
      let chosen;
      if (finished.mode === 'box') {
        const a = toLayout(view, WIDTH, HEIGHT, finished.x, finished.y);
        const b = toLayout(view, WIDTH, HEIGHT, finished.current.x, finished.current.y);
        chosen = inBox(positions, a.x, a.y, b.x, b.y);
      } else {
        const polygon = [];
        for (let k = 0; k < finished.path.length; k += 2) {
          const p = toLayout(view, WIDTH, HEIGHT, finished.path[k], finished.path[k + 1]);
          polygon.push(p.x, p.y);
        }
        chosen = inPolygon(positions, polygon);
      }
      const offset = firstId();
      commit('selection', chosen.map((i) => i + offset));
    }
    redraw();
  };
  listeners.onDom(ui.plot, 'pointerup', endDrag);
  listeners.onDom(ui.plot, 'pointercancel', endDrag);
  listeners.onDom(ui.plot, 'pointermove', (event) => {
    if (drag) {
      const { x, y } = canvasPoint(ui.plot, event);
      if (drag.mode === 'pan') view = panBy(drag.view, x - drag.x, y - drag.y);
      else drag.current = { x, y };
      const path = drag.path;
      if (drag.mode === 'lasso' && Math.hypot(x - path[path.length - 2], y - path[path.length - 1]) >= LASSO_STEP_PX) path.push(x, y);
      redraw();
      return;
    }
    const { index, x, y } = pointUnder(event);
    if (index !== hovered) showHover(index, x, y);
  });
  listeners.onDom(ui.plot, 'pointerleave', () => {
    if (!drag) showHover(-1, 0, 0);
  });

  drawError();
  drawStatus();
  decodeSprite();
  decodeClasses();
  decodePoints();
  drawSelected();

  return () => {
    if (frame) cancelAnimationFrame(frame);
    listeners.removeAll();
    saveSoon.flush();
    ui.root.remove();
  };
}

export default { render };
