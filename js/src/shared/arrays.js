// Decode binary array messages sent from Python as {data, shape, dtype}.
// ipywidgets delivers `data` as a DataView; we return a typed array over the same memory
// (no copy, unless the offset is misaligned for the element type). Byte order is the platform's
// (little-endian everywhere Jupyter runs), matching numpy's default.

const TYPED_ARRAY_BY_DTYPE = { uint8: Uint8Array, int32: Int32Array, float32: Float32Array };

/** Number of elements an array of this shape holds. */
export function elementCount(shape) {
  return shape.reduce((count, size) => count * size, 1);
}

/** True when there is no message or its data has zero bytes ("nothing yet"). */
export function isEmptyArray(msg) {
  return !msg || !msg.data || msg.data.byteLength === 0;
}

/** Typed array (Uint8Array / Float32Array) viewing msg.data; checks the length against msg.shape. */
export function toTypedArray(msg) {
  const TypedArray = TYPED_ARRAY_BY_DTYPE[msg.dtype];
  if (!TypedArray) throw new Error(`unsupported dtype: ${msg.dtype}`);
  const { data } = msg;
  const buffer = ArrayBuffer.isView(data) ? data.buffer : data;
  const byteOffset = ArrayBuffer.isView(data) ? data.byteOffset : 0;
  const length = Math.floor(data.byteLength / TypedArray.BYTES_PER_ELEMENT);
  if (msg.shape && elementCount(msg.shape) !== length) {
    throw new Error(`array of shape [${msg.shape}] needs ${elementCount(msg.shape)} ${msg.dtype} values, got ${length}`);
  }
  if (byteOffset % TypedArray.BYTES_PER_ELEMENT === 0) return new TypedArray(buffer, byteOffset, length);
  return new TypedArray(buffer.slice(byteOffset, byteOffset + length * TypedArray.BYTES_PER_ELEMENT));
}
