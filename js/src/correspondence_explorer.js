// Correspondence explorer (anywidget front end): image a and image b side by side; a click in image a asks Python
// for the best match in image b at the chosen layer, drawn as a cross over the similarity map (magma, blended);
// below, the keypoint-transfer accuracy per layer on a known warp. Styles are scoped under .cnnw-correspondence.
import { isEmptyArray, toTypedArray } from './shared/arrays.js';
import { canvasPoint, h, setOptions } from './shared/dom.js';
import { rgbaToCanvas } from './shared/images.js';
import { Listeners } from './shared/listeners.js';
import { blendOverlay } from './shared/overlay.js';
import { drawLines } from './shared/plot.js';

const BOX = 256;
const CSS = `
.cnnw-correspondence { display: flex; flex-direction: column; gap: 8px; font: 13px/1.4 var(--jp-ui-font-family, sans-serif); color: var(--jp-ui-font-color1, #222); }
.cnnw-correspondence .cnnw-co-row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.cnnw-correspondence .cnnw-co-figure { display: flex; flex-direction: column; gap: 2px; align-items: flex-start; }
.cnnw-correspondence .cnnw-co-caption { color: var(--jp-ui-font-color2, #666); font-size: 12px; max-width: 320px; }
.cnnw-correspondence canvas { image-rendering: pixelated; }
.cnnw-correspondence .cnnw-co-a { cursor: crosshair; }
.cnnw-correspondence .cnnw-co-error { padding: 2px 8px; border-radius: 3px; background: #c62828; color: #fff; }
.cnnw-correspondence [hidden] { display: none !important; }
`;

function imagePixels(message) {
  if (isEmptyArray(message)) return null;
  const [height, width] = message.shape;
  return { rgb: toTypedArray(message), width, height };
}

function drawCross(ctx, x, y, color) {
  ctx.strokeStyle = '#000';
  ctx.lineWidth = 4;
  for (const pass of [0, 1]) {
    ctx.beginPath();
    ctx.moveTo(x - 9, y); ctx.lineTo(x + 9, y);
    ctx.moveTo(x, y - 9); ctx.lineTo(x, y + 9);
    ctx.stroke();
    ctx.strokeStyle = color;
    ctx.lineWidth = pass === 0 ? 2 : 2;
  }
}

/** Draw an RGBA picture scaled into the canvas (BOX px on its longer side) and a cross at [row, col]. */
function drawPicture(canvas, rgba, width, height, point, color) {
  const scale = BOX / Math.max(width, height);
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(rgbaToCanvas(rgba, width, height), 0, 0, canvas.width, canvas.height);
  if (point && point.length === 2) drawCross(ctx, (point[1] + 0.5) * scale, (point[0] + 0.5) * scale, color);
  return scale;
}

function render({ model, el }) {
  const listeners = new Listeners();
  const canvasA = h('canvas', { className: 'cnnw-co-a' });
  const canvasB = h('canvas', { className: 'cnnw-co-b' });
  const curve = h('canvas', { className: 'cnnw-co-curve' });
  const layer = h('select', { className: 'cnnw-co-layer' });
  const captionB = h('div', { className: 'cnnw-co-caption' });
  const captionCurve = h('div', { className: 'cnnw-co-caption' });
  const error = h('div', { className: 'cnnw-co-error', hidden: true });
  const root = h('div', { className: 'cnnw-correspondence' }, h('style', { textContent: CSS }),
    h('div', { className: 'cnnw-co-row' }, h('label', {}, 'layer ', layer), error),
    h('div', { className: 'cnnw-co-row' },
      h('div', { className: 'cnnw-co-figure' }, canvasA, h('div', { className: 'cnnw-co-caption', textContent: 'image a: click a point' })),
      h('div', { className: 'cnnw-co-figure' }, canvasB, captionB),
      h('div', { className: 'cnnw-co-figure' }, curve, captionCurve)));
  el.append(root);
  let scaleA = 1;

  const drawA = () => {
    const image = imagePixels(model.get('image_a'));
    if (!image) return;
    const rgba = blendOverlay(image.rgb, new Uint8Array(image.width * image.height), image.width, image.height, 'gray', 0);
    scaleA = drawPicture(canvasA, rgba, image.width, image.height, model.get('point'), '#ff1744');
  };
  const drawB = () => {
    const image = imagePixels(model.get('image_b'));
    if (!image) return;
    const similarity = model.get('similarity');
    const gray = isEmptyArray(similarity) ? new Uint8Array(image.width * image.height) : toTypedArray(similarity);
    const rgba = blendOverlay(image.rgb, gray, image.width, image.height, 'magma', isEmptyArray(similarity) ? 0 : 0.55);
    drawPicture(canvasB, rgba, image.width, image.height, model.get('match'), '#00e5ff');
    captionB.textContent = model.get('match').length
      ? `image b: best match at ${model.get('layer')} (cosine ${model.get('score').toFixed(2)}); similarity over b`
      : 'image b';
  };
  const drawCurve = () => {
    const data = model.get('curve');
    if (!data?.layers) return;
    const current = data.layers.indexOf(model.get('layer'));
    drawLines(curve, { series: [{ label: 'accuracy', values: data.accuracy }], width: 320, height: 200, yRange: [0, 1],
      marker: current >= 0 ? current : null, xLabel: 'layer, shallow → deep' });
    captionCurve.textContent = `keypoint transfer under angle ${data.warp.angle}°, scale ${data.warp.scale}: fraction of ${data.points} points within ${data.k.toFixed(0)} px — ${data.layers.map((name, i) => `${name} ${data.accuracy[i].toFixed(2)}`).join(', ')}`;
  };
  const drawLayers = () => setOptions(layer, model.get('layers').map(({ name, shape }) => [name, `${name} — ${shape.join('×')}`]), model.get('layer'));
  const drawError = () => {
    error.textContent = model.get('error');
    error.hidden = !model.get('error');
  };

  listeners.onDom(canvasA, 'click', (event) => {
    const { x, y } = canvasPoint(canvasA, event);
    model.set('point', [Math.floor(y / scaleA), Math.floor(x / scaleA)]);
    model.save_changes();
    drawA();
  });
  listeners.onDom(layer, 'change', () => { model.set('layer', layer.value); model.save_changes(); });
  listeners.onModel(model, 'change:image_a', drawA);
  listeners.onModel(model, 'change:point', drawA);
  for (const name of ['image_b', 'similarity', 'match', 'score']) listeners.onModel(model, `change:${name}`, drawB);
  listeners.onModel(model, 'change:curve', drawCurve);
  listeners.onModel(model, 'change:layer', () => { layer.value = model.get('layer'); drawCurve(); });
  listeners.onModel(model, 'change:layers', drawLayers);
  listeners.onModel(model, 'change:error', drawError);
  drawLayers();
  drawA();
  drawB();
  drawCurve();
  drawError();
  return () => {
    listeners.removeAll();
    root.remove();
  };
}

export default { render };
