// Clips sent as binary frames: a stacked uint8 message [K·T,H,W,3] with `frames` = T holds K clips one after the
// other; a view loops them at FPS frames per second.

export const FPS = 8;

/** Index into the stacked message of frame `tick` (looping) of clip `clip`, or null when there is none. */
export function clipFrameIndex(message, clip, tick) {
  const frames = message?.frames ?? 0;
  const total = message?.shape?.[0] ?? 0;
  if (!frames || (clip + 1) * frames > total) return null;
  return clip * frames + (((tick % frames) + frames) % frames);
}

/** How many clips a stacked message holds. */
export function clipCount(message) {
  const frames = message?.frames ?? 0;
  return frames ? Math.floor((message?.shape?.[0] ?? 0) / frames) : 0;
}

/** Resolve a class typed by the user (a label, or a number) to its index, or null when unknown. */
export function classIndexOf(text, labels) {
  const value = text.trim();
  const byName = (labels ?? []).indexOf(value);
  if (byName >= 0) return byName;
  if (/^\d+$/.test(value)) {
    const index = Number(value);
    return !labels?.length || index < labels.length ? index : null;
  }
  return null;
}
