// Human vs network (anywidget front end): one image at a time, answered from a shortlist of classes or freely
// with a search box; each answer goes to Python (the whole `answers` list with a request id), whose `score` answer
// shows both accuracies with their intervals, the disagreements side by side and the failures per class.
// Styles are scoped under .cnnw-human-vs-network.
import { h, setOptions } from './shared/dom.js';
import { drawFitted } from './shared/images.js';
import { Listeners } from './shared/listeners.js';
import { PANEL_CSS, drawError, messageCanvas } from './shared/panels.js';
import { requestFilter, withInterval } from './shared/scores.js';
import { scopedStyle } from './shared/styles.js';

const ROOT = 'cnnw-human-vs-network';
const IMAGE_BOX = 192;
const THUMB_BOX = 72;
const MAX_MATCHES = 12; // classes listed for a search in free mode
const CSS = `
.cnnw-hv-choices { display: flex; flex-wrap: wrap; gap: 4px; max-width: 480px; }
.cnnw-hv-choice { padding: 3px 10px; border: 1px solid var(--jp-border-color1, #bbb); border-radius: 3px; background: var(--jp-layout-color1, #fff); color: inherit; font: inherit; cursor: pointer; }
.cnnw-hv-choice:hover, .cnnw-hv-choice.cnnw-hv-chosen { border-color: var(--jp-brand-color1, #1976d2); background: var(--jp-layout-color2, #eee); }
.cnnw-hv-quiz { display: flex; flex-direction: column; gap: 6px; }
.cnnw-hv-score { display: grid; grid-template-columns: max-content max-content; gap: 2px 12px; font-variant-numeric: tabular-nums; }
.cnnw-hv-disagreements { display: flex; flex-wrap: wrap; gap: 8px; }
.cnnw-hv-case { display: flex; flex-direction: column; align-items: center; font-size: 11px; width: ${THUMB_BOX + 40}px; text-align: center; }
.cnnw-hv-right { color: var(--jp-success-color1, #2e7d32); }
.cnnw-hv-wrong { color: var(--jp-error-color1, #c62828); }
.cnnw-hv-failures { align-self: flex-start; border-collapse: collapse; font-size: 12px; }
.cnnw-hv-failures td, .cnnw-hv-failures th { padding: 1px 8px; text-align: right; }
`;

/** Classes (indices) whose name contains `query` (any case), at most `limit`; all of them (up to limit) for ''. */
export function matchingClasses(classes, query, limit = MAX_MATCHES) {
  const needle = query.trim().toLowerCase();
  const found = [];
  for (let i = 0; i < classes.length && found.length < limit; i++) {
    if (classes[i].toLowerCase().includes(needle)) found.push(i);
  }
  return found;
}

function thumbnail(message, slot, box) {
  const canvas = h('canvas');
  const source = messageCanvas(message, slot);
  if (source) drawFitted(canvas, source, [0, 0, source.width, source.height], box);
  return canvas;
}

function render({ model, el }) {
  const listeners = new Listeners();
  const requests = requestFilter(model.get('request') ?? 0);
  const mode = h('select', { className: 'cnnw-hv-mode' });
  setOptions(mode, [['shortlist', 'choose from a shortlist'], ['free', 'any class (search)']], model.get('mode'));
  const error = h('div', { className: 'cnnw-error' });
  const progressText = h('span', { className: 'cnnw-caption cnnw-hv-progress' });
  const previous = h('button', { className: 'cnnw-hv-previous', textContent: '◀' });
  const next = h('button', { className: 'cnnw-hv-next', textContent: '▶' });
  const canvas = h('canvas', { className: 'cnnw-hv-image' });
  const search = h('input', { type: 'search', className: 'cnnw-hv-search', placeholder: 'search a class…' });
  const choices = h('div', { className: 'cnnw-hv-choices' });
  const score = h('div', { className: 'cnnw-hv-score' });
  const disagreements = h('div', { className: 'cnnw-hv-disagreements' });
  const failures = h('table', { className: 'cnnw-hv-failures' });
  const root = h('div', { className: ROOT }, scopedStyle(ROOT, PANEL_CSS + CSS),
    h('div', { className: 'cnnw-row cnnw-controls' }, h('label', {}, 'answer by ', mode), previous, progressText, next, error),
    h('div', { className: 'cnnw-row' }, canvas, h('div', { className: 'cnnw-hv-quiz' }, h('div', { className: 'cnnw-caption', textContent: 'which class is this?' }), search, choices)),
    h('div', { className: 'cnnw-caption', textContent: 'score on the images you answered' }), score,
    disagreements, failures);
  el.append(root);
  let slot = 0;
  const count = () => model.get('answers')?.length ?? 0;
  const freeMode = () => model.get('mode') === 'free' || !(model.get('choices') ?? []).length;

  function drawQuiz() {
    const answers = model.get('answers') ?? [];
    slot = Math.min(slot, Math.max(0, count() - 1));
    const images = model.get('images');
    const source = images?.shape ? messageCanvas(images, slot) : null;
    if (source) drawFitted(canvas, source, [0, 0, source.width, source.height], IMAGE_BOX);
    progressText.textContent = `image ${slot + 1} of ${count()} · ${answers.filter((a) => a !== null).length} answered`;
    search.hidden = !freeMode();
    const classes = model.get('classes') ?? [];
    const offered = freeMode() ? matchingClasses(classes, search.value) : (model.get('choices')[slot] ?? []);
    choices.replaceChildren(...offered.map((index) => {
      const button = h('button', { className: `cnnw-hv-choice${answers[slot] === index ? ' cnnw-hv-chosen' : ''}`, textContent: classes[index] });
      button.dataset.class = String(index);
      return button;
    }));
  }
  function drawScore() {
    const answer = model.get('score');
    if (!answer || !requests.accept('score', answer)) return;
    if (!answer.answered) {
      score.replaceChildren(h('span', { className: 'cnnw-note', textContent: 'answer an image to see the score' }));
      disagreements.replaceChildren();
      failures.replaceChildren();
      return;
    }
    const line = (who, found) => [h('span', { textContent: who }),
      h('span', { className: `cnnw-hv-${who === 'you' ? 'human' : 'network'}-accuracy`, textContent: `${found.correct} of ${answer.answered}: ${withInterval(found.accuracy, found.interval)}` })];
    score.replaceChildren(...line('you', answer.human), ...line('network', answer.network));
    const images = model.get('images');
    disagreements.replaceChildren(...answer.disagreements.map((d) => h('div', { className: 'cnnw-hv-case' },
      thumbnail(images, d.slot, THUMB_BOX),
      h('span', { textContent: `true: ${d.label}` }),
      h('span', { className: d.human_correct ? 'cnnw-hv-right' : 'cnnw-hv-wrong', textContent: `you: ${d.human}` }),
      h('span', { className: d.human_correct ? 'cnnw-hv-wrong' : 'cnnw-hv-right', textContent: `network: ${d.network}` }))));
    if (answer.disagreements.length) disagreements.prepend(h('div', { className: 'cnnw-caption', style: 'width: 100%', textContent: 'where exactly one of you was right' }));
    const missed = answer.failures.filter((f) => f.human || f.network);
    failures.replaceChildren(...(missed.length ? [h('tr', {}, ...['class', 'images', 'you missed', 'network missed'].map((t) => h('th', { textContent: t })))] : []),
      ...missed.map((f) => h('tr', {}, ...[f.class, f.images, f.human, f.network].map((v) => h('td', { textContent: String(v) })))));
  }
  function drawState() {
    drawError(error, model.get('error'));
  }

  function answerWith(index) {
    const answers = [...(model.get('answers') ?? [])];
    answers[slot] = index;
    model.set('answers', answers);
    model.set('request', requests.next(['score']));
    model.save_changes();
    const open = answers.findIndex((a, i) => a === null && i > slot);
    const first = answers.indexOf(null);
    slot = open >= 0 ? open : first >= 0 ? first : slot;
    search.value = '';
    drawQuiz();
  }

  listeners.onDom(choices, 'click', (event) => {
    const button = event.target.closest('.cnnw-hv-choice');
    if (button) answerWith(Number(button.dataset.class));
  });
  listeners.onDom(search, 'input', drawQuiz);
  listeners.onDom(search, 'keydown', (event) => {
    if (event.key !== 'Enter') return;
    const [first] = matchingClasses(model.get('classes') ?? [], search.value, 1);
    if (first !== undefined) answerWith(first);
  });
  listeners.onDom(previous, 'click', () => { slot = (slot - 1 + count()) % Math.max(1, count()); drawQuiz(); });
  listeners.onDom(next, 'click', () => { slot = (slot + 1) % Math.max(1, count()); drawQuiz(); });
  listeners.onDom(mode, 'change', () => { model.set('mode', mode.value); model.save_changes(); });
  for (const name of ['images', 'answers', 'choices', 'classes', 'mode']) listeners.onModel(model, `change:${name}`, drawQuiz);
  listeners.onModel(model, 'change:mode', () => (mode.value = model.get('mode')));
  listeners.onModel(model, 'change:score', drawScore);
  listeners.onModel(model, 'change:error', drawState);
  drawQuiz();
  drawScore();
  drawState();
  return () => {
    listeners.removeAll();
    root.remove();
  };
}

export default { render };
