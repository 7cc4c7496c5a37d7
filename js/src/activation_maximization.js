// Activation maximization (anywidget front end): pick a class (or a layer and channel), the parameterization
// (pixels, Fourier, a generator prior) or all of them side by side, set the regularizers, press run and watch the
// synthesized images change every few steps while the kernel optimizes in the background; stop, continue or reset
// at any time. Also the objective's history and each image's probability. On a video model: the clip loops, with
// spatial and temporal smoothness, a slow / fast switch, and the fast and slow clips side by side.
import { classIndexOf, clipCount, clipFrameIndex, FPS } from './shared/clips.js';
import { h, setOptions } from './shared/dom.js';
import { Listeners } from './shared/listeners.js';
import { PANEL_CSS, drawError, drawMessage, setSlider, slider } from './shared/panels.js';
import { scopedStyle } from './shared/styles.js';
import { drawLines } from './shared/plot.js';
import { throttledTraits } from './shared/requests.js';
import { runControls } from './shared/runner.js';

const BOX = 224;
const CLIP_BOX = 160;
const SEND_INTERVAL_MS = 150;
const SLOW_TEMPORAL = 1000; // SLOW_TEMPORAL in cnnwidgets/widgets/activation_maximization.py
const PARAM_NAMES = { pixel: 'pixels', fourier: 'Fourier, decorrelated', generator: 'generator prior' };
const REGULARIZERS = [
  { trait: 'jitter', text: 'jitter', min: 0, max: 32, step: 1, format: (v) => `${v} px` },
  { trait: 'scale', text: 'scale', min: 0, max: 0.5, step: 0.01, format: (v) => `±${v.toFixed(2)}`, image: true },
  { trait: 'rotate', text: 'rotate', min: 0, max: 45, step: 1, format: (v) => `±${v}°`, image: true },
  { trait: 'blur', text: 'blur', min: 0, max: 3, step: 0.1, format: (v) => `σ ${v.toFixed(1)}`, image: true },
  { trait: 'l2', text: 'L2', min: 0, max: 5, step: 0.1, format: (v) => v.toFixed(1), image: true },
  { trait: 'tv', text: 'TV', min: 0, max: 5, step: 0.1, format: (v) => v.toFixed(1), image: true },
  { trait: 'spatial', text: 'spatial smoothness', min: 0, max: 200, step: 5, format: (v) => String(v), video: true },
  { trait: 'temporal', text: 'temporal smoothness', min: 0, max: 3000, step: 50, format: (v) => String(v), video: true },
  { trait: 'lr', text: 'lr', min: 0.005, max: 0.2, step: 0.005, format: (v) => v.toFixed(3) },
  { trait: 'diversity', text: 'diversity', min: 0, max: 200, step: 5, format: (v) => String(v), image: true },
];

function render({ model, el }) {
  const listeners = new Listeners();
  const video = Boolean(model.get('video'));
  const labelList = h('datalist', { id: `cnnw-classes-${Math.random().toString(36).slice(2)}` });
  const target = h('input', { type: 'text', className: 'cnnw-target' });
  target.setAttribute('list', labelList.id);
  const layer = h('select', { className: 'cnnw-layer' });
  const diversityLayer = h('select', { className: 'cnnw-diversity-layer' });
  const channel = h('input', { type: 'number', min: 0, step: 1, value: model.get('channel'), className: 'cnnw-channel', style: 'width: 4em' });
  const param = h('select', { className: 'cnnw-param' });
  const compare = h('input', { type: 'checkbox', className: 'cnnw-compare', checked: model.get('compare') });
  const slow = h('button', { className: 'cnnw-slow', textContent: 'slow', title: `temporal smoothness ${SLOW_TEMPORAL}` });
  const fast = h('button', { className: 'cnnw-fast', textContent: 'fast', title: 'no temporal smoothness' });
  const count = h('input', { type: 'number', min: 1, max: 8, step: 1, value: model.get('count'), className: 'cnnw-count', style: 'width: 3em' });
  const shown = REGULARIZERS.filter((spec) => (video ? !spec.image : !spec.video));
  const sliders = shown.map((spec) => ({ ...spec, control: slider(spec.text, { ...spec, value: model.get(spec.trait) }) }));
  const runner = runControls(model, listeners);
  const error = h('div', { className: 'cnnw-error' });
  const images = h('div', { className: 'cnnw-row cnnw-images' });
  const history = h('canvas', { className: 'cnnw-history' });
  const description = h('div', { className: 'cnnw-caption cnnw-description' });
  const similarity = h('div', { className: 'cnnw-caption cnnw-similarity' });
  const labelled = (text, control) => h('label', {}, text, control);
  const choices = video
    ? [labelled('class', target), labelled('or layer', layer), labelled('channel', channel), h('span', {}, 'pace ', slow, fast),
      labelled('fast and slow side by side', compare)]
    : [labelled('class', target), labelled('or layer', layer), labelled('channel', channel), labelled('images', count),
      labelled('parameterization', param), labelled('all side by side', compare), labelled('diversity at', diversityLayer)];
  const root = h('div', { className: 'cnnw-panel cnnw-activation-maximization' },
    scopedStyle('cnnw-activation-maximization', PANEL_CSS), labelList,
    h('div', { className: 'cnnw-row cnnw-controls' }, ...choices),
    h('div', { className: 'cnnw-row cnnw-controls' }, ...sliders.map((s) => s.control.root)),
    h('div', { className: 'cnnw-row cnnw-controls' }, runner.root, error),
    description, similarity,
    h('div', { className: 'cnnw-row' }, images, h('div', { className: 'cnnw-figure' }, history, h('div', { className: 'cnnw-caption', textContent: 'objective per step' }))));
  el.append(root);
  const { commit, saveSoon } = throttledTraits(model, SEND_INTERVAL_MS);
  let localError = '';

  function drawChoices() {
    const labels = model.get('labels') ?? [];
    labelList.replaceChildren(...labels.map((label) => h('option', { value: label })));
    target.value = labels[model.get('target')] ?? String(model.get('target'));
    const names = (model.get('layer_names') ?? []).map((name) => [name, name]);
    setOptions(layer, [['', '— (class logit)'], ...names], model.get('layer'));
    setOptions(diversityLayer, [['', 'middle layer (default)'], ...names], model.get('diversity_layer'));
    const params = Object.entries(PARAM_NAMES).filter(([name]) => name !== 'generator' || model.get('has_prior'));
    setOptions(param, params, model.get('param'));
    param.title = model.get('has_prior') ? '' : 'for a generator prior, pass prior=zoo.digits_generator() to ActivationMaximization';
    param.disabled = Boolean(model.get('compare'));
    channel.disabled = !model.get('layer');
    const single = model.get('count') < 2; // diversity compares the images of a batch
    diversityLayer.disabled = single;
    const diversity = sliders.find((s) => s.trait === 'diversity');
    if (diversity) diversity.control.input.disabled = single;
    target.disabled = Boolean(model.get('layer'));
  }
  function caption(index, perVariant) {
    const variants = model.get('variants') ?? [];
    const name = variants.length > 1 ? `${variants[Math.floor(index / perVariant)]?.name ?? ''}: ` : '';
    const probabilities = model.get('probabilities') ?? [];
    const top = (model.get('predictions') ?? [])[index]?.[0];
    if (!probabilities.length) return name.replace(/: $/, '');
    return `${name}p = ${(probabilities[index] * 100).toFixed(1)}%${top ? `, top: ${top.label}` : ''}`;
  }
  function cells(number) {
    while (images.children.length > number) images.lastChild.remove();
    while (images.children.length < number) images.append(h('div', { className: 'cnnw-figure' }, h('canvas', { className: 'cnnw-result' }), h('div', { className: 'cnnw-caption' })));
    return [...images.children];
  }
  function drawImages() {
    const message = model.get('images');
    const countShown = message?.shape?.[0] ?? 0;
    cells(countShown).forEach((cell, index) => {
      drawMessage(cell.firstChild, message, countShown > 1 ? BOX / 1.5 : BOX, index);
      cell.lastChild.textContent = caption(index, model.get('count'));
    });
    description.textContent = `maximizing ${model.get('description')}`;
    const spread = model.get('similarity') ?? {};
    similarity.textContent = spread.layer ? `images' mean pairwise Gram similarity at ${spread.layer}: ${spread.value.toFixed(2)} (1 = alike)` : '';
  }
  // video: one looping canvas per clip (and per motion input of a two-stream model), redrawn FPS times a second
  let tick = 0;
  function drawClips() {
    const clips = model.get('clips');
    const motions = model.get('motions');
    const variants = model.get('variants') ?? [];
    const clipTotal = clipCount(clips);
    const motionTotal = clipCount(motions);
    cells(clipTotal + motionTotal).forEach((cell, index) => {
      const isMotion = index >= clipTotal;
      const clip = isMotion ? index - clipTotal : index;
      const message = isMotion ? motions : clips;
      const frame = clipFrameIndex(message, clip, tick);
      if (frame !== null) drawMessage(cell.firstChild, message, CLIP_BOX, frame);
      const variant = variants[clip] ?? {};
      cell.lastChild.textContent = isMotion
        ? `${variant.name ?? ''} motion input (gray = still)`
        : `${variant.name ?? ''}: frame change ${variant.frame_change?.toFixed(3) ?? ''}`;
    });
    description.textContent = `maximizing ${model.get('description')}`;
  }
  function drawHistory() {
    const variants = model.get('variants') ?? [];
    const series = variants.length > 1
      ? variants.map((variant) => ({ label: variant.name, values: variant.history }))
      : [{ label: 'objective', values: model.get('history') ?? [] }];
    drawLines(history, { series, width: 260, height: 160 });
  }
  const drawState = () => drawError(error, localError || model.get('error'));

  listeners.onDom(target, 'change', () => {
    const index = classIndexOf(target.value, model.get('labels'));
    localError = index === null ? `no class named "${target.value.trim()}"; pick one from the list` : '';
    drawState();
    if (index !== null) commit('target', index);
  });
  listeners.onDom(layer, 'change', () => commit('layer', layer.value));
  listeners.onDom(channel, 'change', () => {
    const value = Number(channel.value);
    if (Number.isInteger(value) && value >= 0) commit('channel', value);
  });
  listeners.onDom(count, 'change', () => {
    const value = Number(count.value);
    if (Number.isInteger(value) && value >= 1 && value <= 8) commit('count', value);
  });
  listeners.onDom(param, 'change', () => commit('param', param.value));
  listeners.onDom(compare, 'change', () => commit('compare', compare.checked));
  listeners.onDom(slow, 'click', () => commit('temporal', SLOW_TEMPORAL));
  listeners.onDom(fast, 'click', () => commit('temporal', 0));
  listeners.onDom(diversityLayer, 'change', () => commit('diversity_layer', diversityLayer.value));
  for (const { trait, control } of sliders) {
    listeners.onDom(control.input, 'change', () => commit(trait, Number(control.input.value)));
    listeners.onDom(control.input, 'input', () => (control.readout.textContent = control.format(Number(control.input.value))));
    listeners.onModel(model, `change:${trait}`, () => setSlider(control, model.get(trait)));
  }
  for (const name of ['labels', 'layer_names', 'layer', 'diversity_layer', 'target', 'param', 'has_prior']) {
    listeners.onModel(model, `change:${name}`, drawChoices);
  }
  listeners.onModel(model, 'change:channel', () => (channel.value = model.get('channel')));
  listeners.onModel(model, 'change:count', () => {
    count.value = model.get('count');
    drawChoices();
  });
  listeners.onModel(model, 'change:compare', () => {
    compare.checked = Boolean(model.get('compare'));
    drawChoices();
  });
  const drawResults = video ? drawClips : drawImages;
  for (const name of ['images', 'clips', 'motions', 'probabilities', 'similarity', 'variants']) {
    listeners.onModel(model, `change:${name}`, drawResults);
  }
  listeners.onModel(model, 'change:history', drawHistory);
  listeners.onModel(model, 'change:variants', drawHistory);
  listeners.onModel(model, 'change:error', drawState);
  const loop = video ? setInterval(() => {
    tick += 1;
    drawClips();
  }, 1000 / FPS) : null;
  drawChoices();
  drawResults();
  drawHistory();
  drawState();
  return () => {
    if (loop !== null) clearInterval(loop);
    listeners.removeAll();
    saveSoon.flush();
    root.remove();
  };
}

export default { render };
