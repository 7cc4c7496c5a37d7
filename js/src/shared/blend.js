// Blending one RGB picture over another at an opacity (e.g. a deconvnet projection over the image it came
// from). A pure function over typed arrays, so it runs (and is tested) without a DOM.

/**
 * H x W x 3 RGB of `top` over `bottom` (both H x W x 3 uint8): out = (1 - opacity) * bottom + opacity * top,
 * rounded half to even like numpy, so Python's export of the same blend matches pixel for pixel.
 * Opacity 0 gives `bottom`, 1 gives `top`.
 */
export function blendRgb(bottom, top, opacity) {
  const alpha = Math.min(1, Math.max(0, Number(opacity) || 0));
  const out = new Uint8ClampedArray(bottom.length); // assignment rounds half to even and clamps
  for (let i = 0; i < bottom.length; i++) out[i] = (1 - alpha) * bottom[i] + alpha * top[i];
  return out;
}
