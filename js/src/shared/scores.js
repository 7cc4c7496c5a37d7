// Proportions with their 95 % intervals, as the slicing and human-vs-network views print and draw them, and the
// filter that keeps only answers to a view's newest request. Pure functions, tested without a DOM.

/** "75.0 %" for 0.75; "–" for null or undefined. */
export function percent(value, digits = 1) {
  return value === null || value === undefined || !Number.isFinite(value) ? '–' : `${(value * 100).toFixed(digits)} %`;
}

/** "75.0 % (30.1–95.4 %)": a proportion with its interval [low, high]. */
export function withInterval(value, interval) {
  if (value === null || value === undefined) return '–';
  if (!interval) return percent(value);
  return `${percent(value)} (${(interval[0] * 100).toFixed(1)}–${percent(interval[1])})`;
}

/** Pixel geometry of one bin's column `height` px tall: the bar's height, the whisker's top and bottom (from the
 * bottom), for a proportion `value` in [0, 1] with its `interval`; null parts where there is no value. */
export function barGeometry(value, interval, height) {
  if (value === null || value === undefined) return { bar: 0, whisker: null };
  const clamp = (v) => Math.round(Math.min(1, Math.max(0, v)) * height);
  return { bar: clamp(value), whisker: interval ? { low: clamp(interval[0]), high: clamp(interval[1]) } : null };
}

/** Request ids of one view for answers of several kinds (a table, images): `next(kinds)` stamps a request whose
 * answer will come as each of `kinds` (ids continue from the model's, which earlier views may have advanced);
 * `accept(kind, answer)` is true for the answer of that kind to the newest request that asked for it, or to any
 * later request (Python answers every kind with its current id), never for an older one. */
export function requestFilter(base) {
  let newest = base;
  const asked = new Map();
  const accepted = new Map();
  return {
    next(kinds) {
      newest += 1;
      for (const kind of kinds) asked.set(kind, newest);
      return newest;
    },
    accept(kind, answer) {
      const id = answer?.request ?? 0;
      if (id < (asked.get(kind) ?? 0) || id < (accepted.get(kind) ?? 0)) return false;
      accepted.set(kind, id);
      return true;
    },
  };
}
