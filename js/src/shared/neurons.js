// Picking neurons (a channel of a layer) and mapping boxes between image and screen pixels, for the
// dataset views. Pure functions, testable without a DOM.

/** channel + step, wrapped around 0..count-1 (0 when there are no channels). */
export function stepChannel(channel, step, count) {
  if (!count) return 0;
  return (((channel + step) % count) + count) % count;
}

/**
 * A random {layer, channel} among `layers` ([{name, shape: [C, H, W]}]), each layer equally likely,
 * then each of its channels; `random` returns numbers in [0, 1). Null when there are no channels.
 */
export function randomNeuron(layers, random) {
  const usable = layers.filter((layer) => (layer.shape?.[0] ?? 0) > 0);
  if (!usable.length) return null;
  const layer = usable[Math.min(usable.length - 1, Math.floor(random() * usable.length))];
  const channel = Math.min(layer.shape[0] - 1, Math.floor(random() * layer.shape[0]));
  return { layer: layer.name, channel };
}

/** [top, left, bottom, right] scaled by (sy, sx), e.g. from image pixels to canvas pixels. */
export function scaleBox([top, left, bottom, right], sx, sy) {
  return [top * sy, left * sx, bottom * sy, right * sx];
}
