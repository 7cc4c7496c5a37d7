// Time in the video views: a frame slider with a play button, and the pure helpers behind it. The widgets hold all
// time steps of what they show in the browser, so moving the slider or playing redraws at once; `frame` is a
// synced trait (Python validates it and draws it in to_png), saved throttled like any other control.
import { h } from './dom.js';

/** Milliseconds between frames while playing (8 frames a second: a 16-frame clip loops in 2 s). */
export const PLAY_INTERVAL_MS = 125;

/** What the frame controls add to a widget's stylesheet (scoped with it). */
export const FRAMES_CSS = `
.cnnw-frames { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.cnnw-frames input[type=range] { width: 220px; }
.cnnw-play { min-width: 4.5em; cursor: pointer; }
.cnnw-frame-readout { font-variant-numeric: tabular-nums; color: var(--jp-ui-font-color2, #666); font-size: 12px; }
`;

/** The frame after `frame` when playing `count` frames in a loop. */
export function nextFrame(frame, count) {
  return count > 0 ? (frame + 1) % count : 0;
}

/** `frame` held to 0..count-1 (0 when there are none). */
export function clampFrame(frame, count) {
  return Math.min(Math.max(0, Math.round(Number(frame) || 0)), Math.max(0, count - 1));
}

/** "input frames a–b" (or "input frame a") for a [first, last] span; '' for none. */
export function spanText(span) {
  if (!span || span.length < 2) return '';
  return span[0] === span[1] ? `input frame ${span[0]}` : `input frames ${span[0]}\u2013${span[1]}`;
}

/** The input frame a time step's view shows: the middle of the frames it covers (`fallback` without a span). */
export function centreFrame(span, fallback = 0) {
  return span && span.length === 2 ? Math.floor((span[0] + span[1]) / 2) : fallback;
}

/**
 * A play button, a slider over time steps and a readout. `onFrame(frame)` is called when the user moves the slider
 * or playback advances; `show(frame, count, text)` sets what they display (hidden when count < 2). `dispose()`
 * stops playback. Returns {root, slider, play, readout, show, dispose, playing}.
 */
export function frameControls(onFrame) {
  const play = h('button', { className: 'cnnw-play', type: 'button', textContent: '\u25b6 play' });
  const slider = h('input', { className: 'cnnw-frame', type: 'range', min: 0, max: 0, step: 1, value: 0 });
  const readout = h('span', { className: 'cnnw-frame-readout' });
  const root = h('div', { className: 'cnnw-frames' }, play, h('label', {}, 'frame ', slider), readout);
  let timer = null;
  let count = 0;

  const stop = () => {
    if (timer !== null) clearInterval(timer);
    timer = null;
    play.textContent = '\u25b6 play';
  };
  const start = () => {
    play.textContent = '\u275a\u275a pause';
    timer = setInterval(() => onFrame(nextFrame(Number(slider.value), count)), PLAY_INTERVAL_MS);
  };
  const onPlay = () => (timer === null ? start() : stop());
  const onInput = () => onFrame(clampFrame(slider.value, count));
  play.addEventListener('click', onPlay);
  slider.addEventListener('input', onInput);

  return {
    root, slider, play, readout,
    playing: () => timer !== null,
    show(frame, steps, text) {
      count = steps;
      root.hidden = steps < 2;
      if (root.hidden) stop();
      slider.max = Math.max(0, steps - 1);
      slider.value = clampFrame(frame, steps);
      readout.textContent = text;
    },
    dispose() {
      stop();
      play.removeEventListener('click', onPlay);
      slider.removeEventListener('input', onInput);
    },
  };
}

/** Item `index` of a flat array of shape [N, ...rest]: a view (no copy) of its prod(rest) values. */
export function itemOf(values, shape, index) {
  const size = shape.slice(1).reduce((a, b) => a * b, 1);
  return values.subarray(index * size, (index + 1) * size);
}

/** Time step `frame` of a flat [C, T, ...rest] array as one [C, ...rest] array (copied: C strided runs). */
export function timeSlice(values, shape, frame) {
  const [channels, steps] = shape;
  const size = shape.slice(2).reduce((a, b) => a * b, 1);
  const out = new values.constructor(channels * size);
  for (let channel = 0; channel < channels; channel++) {
    const from = (channel * steps + frame) * size;
    out.set(values.subarray(from, from + size), channel * size);
  }
  return out;
}

/** What one input of a view is called: "clip" when the input message is a clip ([T,H,W,3]), else "image". */
export function inputNoun(image) {
  return image?.shape?.length === 4 ? 'clip' : 'image';
}
