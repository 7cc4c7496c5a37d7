// 256-entry RGB lookup tables for a few matplotlib colormaps, and applying them to 8-bit gray images.
// Each map is stored as 17 control points sampled from matplotlib at i/16 (gray: its 2 ends) and
// interpolated linearly; the result stays within a few units of matplotlib's tables.

const CONTROL_POINTS = {
  viridis: [
    [68, 1, 84], [72, 24, 106], [71, 45, 123], [66, 64, 134], [59, 82, 139], [51, 99, 141],
    [44, 114, 142], [38, 130, 142], [33, 145, 140], [31, 160, 136], [40, 174, 128], [63, 188, 115],
    [94, 201, 98], [132, 212, 75], [173, 220, 48], [216, 226, 25], [253, 231, 37],
  ],
  magma: [
    [0, 0, 4], [10, 8, 34], [29, 17, 71], [54, 16, 107], [81, 18, 124], [106, 28, 129],
    [131, 38, 129], [156, 46, 127], [183, 55, 121], [208, 65, 111], [231, 82, 99], [245, 107, 92],
    [252, 137, 97], [254, 167, 114], [254, 196, 136], [253, 226, 163], [252, 253, 191],
  ],
  inferno: [
    [0, 0, 4], [11, 7, 36], [33, 12, 74], [61, 9, 101], [87, 16, 110], [113, 25, 110],
    [138, 34, 106], [163, 44, 97], [188, 55, 84], [210, 70, 68], [228, 90, 49], [241, 115, 29],
    [249, 142, 9], [252, 172, 17], [249, 203, 53], [242, 234, 105], [252, 255, 164],
  ],
  gray: [[0, 0, 0], [255, 255, 255]],
  coolwarm: [
    [59, 76, 192], [78, 104, 216], [98, 130, 234], [119, 154, 247], [141, 176, 254], [163, 194, 254],
    [185, 208, 249], [204, 217, 237], [221, 220, 220], [236, 211, 197], [245, 196, 172], [247, 176, 147],
    [244, 152, 122], [235, 125, 98], [221, 95, 75], [202, 59, 55], [180, 4, 38],
  ],
};

export const colormapNames = Object.keys(CONTROL_POINTS);

const tableByName = new Map();

/** Uint8Array of 256 * 3 RGB values for the named colormap (built once, then cached). */
export function colormapTable(name) {
  const points = CONTROL_POINTS[name];
  if (!points) throw new Error(`unknown colormap: ${name}`);
  if (!tableByName.has(name)) tableByName.set(name, interpolate(points));
  return tableByName.get(name);
}

function interpolate(points) {
  const table = new Uint8Array(256 * 3);
  const segments = points.length - 1;
  for (let i = 0; i < 256; i++) {
    const position = (i * segments) / 255;
    const k = Math.min(Math.floor(position), segments - 1);
    const t = position - k;
    for (let channel = 0; channel < 3; channel++) {
      const from = points[k][channel];
      table[i * 3 + channel] = Math.round(from + (points[k + 1][channel] - from) * t);
    }
  }
  return table;
}

/** RGBA pixels (Uint8ClampedArray, usable with `new ImageData`) of a width x height uint8 gray image. */
export function applyColormap(gray, width, height, name) {
  const table = colormapTable(name);
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const entry = gray[i] * 3;
    rgba[i * 4] = table[entry];
    rgba[i * 4 + 1] = table[entry + 1];
    rgba[i * 4 + 2] = table[entry + 2];
    rgba[i * 4 + 3] = 255;
  }
  return rgba;
}
