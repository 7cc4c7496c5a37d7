// Drawing up to a million points on the CPU: each dot is written straight into the pixels of one ImageData
// (a Uint32Array view), one put per frame, instead of one canvas path per dot.
//
// Why not WebGL: measured in the test browser (headless Debian Chromium, whose WebGL is SwiftShader, a software
// rasterizer, on a 2-core CPU), regl-scatterplot 1.16 took ~1.2 s per frame at 1,000,000 points and ~0.2-0.4 s
// at 100,000, while the widget redraws 1,000,000 dots in 18-46 ms, event to frame (bench/results/scatter.json).
// Canvas 2D paths (one rect per dot) took ~24 ms at 50,000, so ~0.5 s at a million. Pure functions, testable
// without a DOM.

/** A CSS colour ('#rgb', '#rrggbb', 'rgb(r, g, b)' or 'rgba(...)') as [r, g, b] 0..255; null if unreadable or transparent. */
export function parseColor(css) {
  const text = String(css ?? '').trim();
  let match = /^#([0-9a-f]{3})$/i.exec(text);
  if (match) return [...match[1]].map((digit) => parseInt(digit + digit, 16));
  match = /^#([0-9a-f]{6})$/i.exec(text);
  if (match) return [0, 2, 4].map((k) => parseInt(match[1].slice(k, k + 2), 16));
  match = /^rgba?\(\s*(\d+)[\s,]+(\d+)[\s,]+(\d+)(?:[\s,/]+([\d.]+))?/i.exec(text);
  if (match && match[4] !== undefined && Number(match[4]) === 0) return null;
  if (match) return match.slice(1, 4).map(Number);
  return null;
}

/**
 * The pixel value (ImageData's RGBA bytes read as one little-endian uint32, as on every machine browsers run
 * on) of `rgb` mixed over `background` with opacity `alpha` (1: the colour itself; 0: the background).
 */
export function packColor(rgb, alpha = 1, background = [255, 255, 255]) {
  const [r, g, b] = rgb.map((value, k) => Math.round(value * alpha + background[k] * (1 - alpha)));
  return ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
}

/** The affine map layout → screen pixels {ax, bx, ay, by} (screen = layout · a + b) from two mapped points. */
export function affineFrom(origin, unit) {
  return { ax: unit.x - origin.x, bx: origin.x, ay: unit.y - origin.y, by: origin.y };
}

/**
 * Draw `size`×`size` square dots centred on `points` ([x0, y0, x1, y1, ...] layout units) into `pixels` (a
 * Uint32Array of width × height), through the affine map `transform`. Dot i gets `palette[values[i]]` (or
 * palette[0] without values). With `only` (point numbers), just those dots are drawn: a selection over the faded
 * rest is a call for all, then one for the selection. Dots fully outside the canvas are skipped, edges clipped;
 * later dots cover earlier ones. Returns how many dots were drawn.
 */
export function drawDots(pixels, width, height, points, transform, { palette, values = null, size = 2, only = null }) {
  const { ax, ay } = transform;
  // the left/top pixel of a dot is round(p · a + b − size / 2): + 0.5 folded in, then floored
  const bx = transform.bx - size / 2 + 0.5;
  const by = transform.by - size / 2 + 0.5;
  const innerRight = width - size; // a dot whose left/top pixel is within [0, inner…] needs no clipping
  const innerBottom = height - size;
  const fallback = palette[0];
  const count = only === null ? points.length / 2 : only.length;
  let drawn = 0;
  for (let n = 0; n < count; n++) {
    const i = only === null ? n : only[n];
    const fx = points[2 * i] * ax + bx;
    const fy = points[2 * i + 1] * ay + by;
    if (!(fx > -size && fy > -size && fx < width + 1 && fy < height + 1)) continue; // far outside, or NaN
    let color = values === null ? fallback : palette[values[i]];
    if (color === undefined) color = fallback;
    if (fx >= 0 && fy >= 0 && fx < innerRight + 1 && fy < innerBottom + 1) {
      // the common case, unclipped (| 0 floors these non-negative values)
      const corner = (fy | 0) * width + (fx | 0);
      if (size === 2) {
        pixels[corner] = color;
        pixels[corner + 1] = color;
        pixels[corner + width] = color;
        pixels[corner + width + 1] = color;
      } else {
        for (let row = corner, end = corner + size * width; row < end; row += width) {
          for (let k = row; k < row + size; k++) pixels[k] = color;
        }
      }
      drawn++;
      continue;
    }
    const left = Math.floor(fx);
    const top = Math.floor(fy);
    const x0 = Math.max(0, left);
    const x1 = Math.min(width, left + size);
    const y1 = Math.min(height, top + size);
    if (x0 >= x1 || top >= y1 || top + size <= 0) continue;
    for (let y = Math.max(0, top); y < y1; y++) {
      const row = y * width;
      for (let x = x0; x < x1; x++) pixels[row + x] = color;
    }
    drawn++;
  }
  return drawn;
}

/** Int32Array of the point numbers (id − `offset`) of the `ids` among `count` points, in the order given. */
export function pointNumbers(ids, count, offset = 0) {
  const numbers = [];
  for (const id of ids) if (id - offset >= 0 && id - offset < count) numbers.push(id - offset);
  return Int32Array.from(numbers);
}

/** How many points carry each value 0..classes−1 (values outside are not counted). */
export function countValues(values, classes) {
  const counts = new Array(classes).fill(0);
  for (const value of values) if (value >= 0 && value < classes) counts[value]++;
  return counts;
}
