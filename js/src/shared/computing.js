// The "computing…" note of a view whose kernel work runs in steps on the widget's job runner (`busy` and
// `progress`, synced by every widget): hidden when nothing is pending, with the percentage done while a job runs.

/** The note's text, or '' to hide it: `busy` (the kernel works), `pending` (a request not yet answered), `progress`. */
export function computingText(busy, pending, progress) {
  if (!busy && !pending) return '';
  return busy && progress > 0 && progress < 1 ? `computing… ${Math.round(progress * 100)}%` : 'computing…';
}

/** Show the kernel's state in `note` (a span). */
export function showComputing(note, model, pending) {
  const text = computingText(Boolean(model.get('busy')), pending, Number(model.get('progress') ?? 1));
  note.hidden = text === '';
  if (text) note.textContent = text;
}
