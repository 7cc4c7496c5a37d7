// One sprite sheet for many thumbnails (sent once as raw RGB bytes, not one message per image), and int32
// arrays, which shared/arrays.js does not decode.

/** Thumbnail `index`'s source rect [sx, sy, side, side] in a sprite sheet message {thumb, columns}. */
export function spriteRect(sprite, index) {
  const side = sprite.thumb;
  return [(index % sprite.columns) * side, Math.floor(index / sprite.columns) * side, side, side];
}

const int32ByMessage = new WeakMap();

/** Int32Array of an int32 array message {data, shape, dtype} (copied once if misaligned, then cached), or null. */
export function decodeInt32(message) {
  if (!message || !message.data || message.data.byteLength === 0) return null;
  if (message.dtype && message.dtype !== 'int32') throw new Error(`expected int32, got ${message.dtype}`);
  if (!int32ByMessage.has(message)) {
    const { data } = message;
    const buffer = ArrayBuffer.isView(data) ? data.buffer : data;
    const offset = ArrayBuffer.isView(data) ? data.byteOffset : 0;
    const length = data.byteLength / 4;
    const values = offset % 4 === 0 ? new Int32Array(buffer, offset, length) : new Int32Array(buffer.slice(offset, offset + data.byteLength));
    int32ByMessage.set(message, values);
  }
  return int32ByMessage.get(message);
}
