// Line charts on a canvas for curves and optimization histories: several series over shared x values, axes
// with min/max labels, an optional vertical marker (the current slider value) and a legend.

export const SERIES_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2'];

/** [min, max] over all finite numbers of the arrays (a unit span for none or a flat line). */
export function extent(arrays) {
  let low = Infinity;
  let high = -Infinity;
  for (const values of arrays) {
    for (const value of values ?? []) {
      if (!Number.isFinite(value)) continue;
      low = Math.min(low, value);
      high = Math.max(high, value);
    }
  }
  if (low === Infinity) return [0, 1];
  if (low === high) return [low - 0.5, high + 0.5];
  return [low, high];
}

/** Map value from [low, high] onto [from, to] (log2 scale when `log`). */
export function scaleLinear(value, [low, high], [from, to], log = false) {
  const f = log ? Math.log2 : (v) => v;
  return from + ((f(value) - f(low)) / (f(high) - f(low))) * (to - from);
}

const PAD = { left: 36, right: 8, top: 8, bottom: 20 };

/**
 * Draw `series` ([{label, values, color?, dashed?}]) over `x` into `canvas` (width x height px).
 * Options: yRange [low, high] (default: data extent, from 0), marker (x value), log (log2 x axis), xLabel.
 */
export function drawLines(canvas, { x, series, width = 300, height = 160, yRange, marker, log = false, xLabel = '' }) {
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, width, height);
  const xs = x ?? (series[0]?.values ?? []).map((_, i) => i);
  const [xLow, xHigh] = extent([xs]);
  const [yLow, yHigh] = yRange ?? [Math.min(0, extent(series.map((s) => s.values))[0]), extent(series.map((s) => s.values))[1]];
  const px = (value) => scaleLinear(value, [xLow, xHigh], [PAD.left, width - PAD.right], log);
  const py = (value) => scaleLinear(value, [yLow, yHigh], [height - PAD.bottom, PAD.top]);
  ctx.strokeStyle = '#999';
  ctx.lineWidth = 1;
  ctx.strokeRect(PAD.left, PAD.top, width - PAD.left - PAD.right, height - PAD.top - PAD.bottom);
  ctx.fillStyle = '#555';
  ctx.font = '10px sans-serif';
  ctx.fillText(formatTick(yHigh), 2, PAD.top + 8);
  ctx.fillText(formatTick(yLow), 2, height - PAD.bottom);
  ctx.fillText(formatTick(xLow), PAD.left, height - 6);
  const right = formatTick(xHigh);
  ctx.fillText(right, width - PAD.right - ctx.measureText(right).width, height - 6);
  if (xLabel) ctx.fillText(xLabel, (width - ctx.measureText(xLabel).width) / 2, height - 6);
  series.forEach((s, index) => {
    ctx.strokeStyle = s.color ?? SERIES_COLORS[index % SERIES_COLORS.length];
    ctx.setLineDash(s.dashed ? [4, 3] : []);
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.values.forEach((value, i) => {
      if (!Number.isFinite(value)) return;
      if (i === 0) ctx.moveTo(px(xs[i]), py(value));
      else ctx.lineTo(px(xs[i]), py(value));
    });
    ctx.stroke();
  });
  ctx.setLineDash([]);
  if (marker !== undefined && marker !== null && Number.isFinite(marker)) {
    ctx.strokeStyle = '#000';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(px(marker), PAD.top);
    ctx.lineTo(px(marker), height - PAD.bottom);
    ctx.stroke();
  }
  return { px, py };
}

/** A short tick label: up to 3 significant digits. */
export function formatTick(value) {
  if (!Number.isFinite(value)) return '';
  return String(Number(value.toPrecision(3)));
}

/** Legend entries [label, color, dashed] for `series`, in drawing order. */
export function legendEntries(series) {
  return series.map((s, index) => [s.label, s.color ?? SERIES_COLORS[index % SERIES_COLORS.length], Boolean(s.dashed)]);
}
