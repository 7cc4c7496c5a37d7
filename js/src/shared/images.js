// Pixel-buffer conversions (RGB/gray -> RGBA) and canvas drawing helpers shared by the widgets.
// Maps and filters are tiny, so everything is scaled with nearest-neighbour to keep pixels sharp.

/** RGBA pixels (Uint8ClampedArray, usable with `new ImageData`) of an H x W x 3 uint8 image. */
export function rgbToImageData(rgb, width, height) {
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    rgba[i * 4] = rgb[i * 3];
    rgba[i * 4 + 1] = rgb[i * 3 + 1];
    rgba[i * 4 + 2] = rgb[i * 3 + 2];
    rgba[i * 4 + 3] = 255;
  }
  return rgba;
}

/** RGBA pixels of an H x W uint8 gray image. */
export function grayToRGBA(gray, width, height) {
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    rgba[i * 4] = rgba[i * 4 + 1] = rgba[i * 4 + 2] = gray[i];
    rgba[i * 4 + 3] = 255;
  }
  return rgba;
}

/** An offscreen canvas holding the RGBA pixels at their native size, as a drawImage source. */
export function rgbaToCanvas(rgba, width, height) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  canvas.getContext('2d').putImageData(new ImageData(rgba, width, height), 0, 0);
  return canvas;
}

/** drawImage of source rect [sx, sy, sw, sh] into target rect [dx, dy, dw, dh] without smoothing. */
export function drawNearest(ctx, source, [sx, sy, sw, sh], [dx, dy, dw, dh]) {
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(source, sx, sy, sw, sh, dx, dy, dw, dh);
}

/** Resize `canvas` so the source rect fits a box x box square (keeping aspect) and draw it there. */
export function drawFitted(canvas, source, [sx, sy, sw, sh], box) {
  const scale = box / Math.max(sw, sh);
  canvas.width = Math.max(1, Math.round(sw * scale));
  canvas.height = Math.max(1, Math.round(sh * scale));
  drawNearest(canvas.getContext('2d'), source, [sx, sy, sw, sh], [0, 0, canvas.width, canvas.height]);
}

/** Decode PNG bytes (a DataView or any ArrayBufferView) into an ImageBitmap. */
export function decodePng(dataView) {
  return createImageBitmap(new Blob([dataView], { type: 'image/png' }));
}
