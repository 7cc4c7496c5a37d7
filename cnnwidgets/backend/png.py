"""Reduce a huge PNG while decoding it, a band of rows at a time, so the full-size picture never exists in memory.

Pillow decodes a PNG whole (there is no `draft` for PNG as for JPEG) and holds RGB at 4 bytes a pixel: a
12000×12000 RGB PNG is 549 MiB decoded before any reduction. Here the file's compressed image data is inflated
with `zlib` a band of scanlines at a time; each band is wrapped into a small PNG of its own (the file's header
chunks, a stored zlib stream) that Pillow's decoder unfilters, and is box-reduced (`Image.reduce`) into the output
at once. PNG filters read only the row above, so each band starts with the previous band's last row, unfiltered
(filter type 0). Bands are whole multiples of the factor, so the result is exactly what `Image.reduce` gives on the
whole decode, at a fraction of the memory (`bench/huge_images.py`).

Handled: non-interlaced 8-bit grayscale, RGB, palette, gray+alpha and RGBA files, the kinds photos and screenshots
are saved as. Other PNGs (interlaced, 16-bit, 1/2/4-bit) give None and are decoded whole.
"""

from __future__ import annotations

import io
import itertools
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import PIL.Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
RAW_MODES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}
"""Pillow's mode for each 8-bit PNG colour type (gray, RGB, palette, gray+alpha, RGBA); its raw bytes are the
PNG's unfiltered scanline."""
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
BAND_BYTES = 2 * 2**20
"""Scanline bytes per band: bounds each band's copies (inflated, stored, decoded, reduced) to about 20 MB. Also the
fastest measured here (12000×12000 RGB PNG reduced 3×, one process, alternating runs): 2.6–3.3 s with 2 MiB bands,
2.5 s with 4 MiB, 4.2–6.5 s with 8 MiB."""
READ_BYTES = 2**20
DECODING_CHUNKS = (b"PLTE", b"tRNS")
"""The chunks before the image data that change the decoded pixels; others (text, colour profiles, an animation's
frame controls, which would not fit a band) are left out of the bands."""


def _head(file: BinaryIO) -> tuple[int, bytes]:
    head = file.read(8)
    if len(head) < 8:
        raise OSError("the PNG file is truncated")
    length, kind = struct.unpack(">I4s", head)
    return length, kind


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _inflated(blocks: Iterator[bytes], size: int) -> Iterator[bytes]:
    """The zlib stream carried by `blocks`, inflated and cut into pieces of `size` bytes (the last may be shorter);
    never more than one piece is held."""
    inflate = zlib.decompressobj()
    piece = bytearray()
    for block in itertools.chain(blocks, [b""]):
        data = block
        while True:
            piece += inflate.decompress(data, size - len(piece))
            data = inflate.unconsumed_tail
            if len(piece) == size:
                yield bytes(piece)
                piece.clear()
            elif not data:
                break
    if piece:
        yield bytes(piece)


def reduced_png(path: Path, factor: int, reducible: str | None) -> PIL.Image.Image | None:
    """The PNG at `path` box-reduced by `factor` (as `Image.reduce` on the whole picture), decoded in bands;
    `reducible` is the mode each band is converted to first when its own cannot be reduced (a palette: "RGB" or
    "RGBA"). None for the PNGs this does not handle (see the module doc)."""
    with open(path, "rb") as file:
        if file.read(8) != SIGNATURE:
            return None
        length, kind = _head(file)
        if kind != b"IHDR":
            return None
        ihdr = file.read(length + 4)[:length]
        width, height, depth, colour, _compression, _filter, interlace = struct.unpack(">IIBBBBB", ihdr)
        if depth != 8 or interlace != 0 or colour not in RAW_MODES:
            return None
        header = []  # the palette and transparency chunks before the image data, copied into every band
        length, kind = _head(file)
        while kind != b"IDAT":
            if kind == b"IEND":
                return None
            data = file.read(length + 4)[:length]
            if kind in DECODING_CHUNKS:
                header.append(_chunk(kind, data))
            length, kind = _head(file)

        def compressed() -> Iterator[bytes]:
            nonlocal length, kind
            while kind == b"IDAT":
                left = length
                while left > 0:
                    block = file.read(min(READ_BYTES, left))
                    if not block:
                        raise OSError("the PNG file is truncated")
                    left -= len(block)
                    yield block
                file.read(4)  # the chunk's CRC
                length, kind = _head(file)

        stride = 1 + width * CHANNELS[colour]
        rows_per_band = max(1, BAND_BYTES // stride // factor) * factor
        output: PIL.Image.Image | None = None
        previous = b""  # the previous band's last row, unfiltered
        top = 0
        for scanlines in _inflated(compressed(), rows_per_band * stride):
            rows = min(len(scanlines) // stride, height - top)
            if rows <= 0:
                break
            band = _decode_band(ihdr, header, colour, rows, scanlines[: rows * stride], previous)
            previous = band.crop((0, band.height - 1, width, band.height)).tobytes("raw", RAW_MODES[colour])
            if band.height > rows:
                band = band.crop((0, 1, width, band.height))
            small = (band.convert(reducible) if reducible else band).reduce(factor)
            if output is None:
                output = PIL.Image.new(small.mode, (-(-width // factor), -(-height // factor)))
            output.paste(small, (0, top // factor))
            top += rows
    if top != height:
        raise OSError(f"the PNG file holds {top} of its {height} rows (truncated)")
    return output


def _decode_band(ihdr: bytes, header: list[bytes], colour: int, rows: int, scanlines: bytes, previous: bytes) -> PIL.Image.Image:
    """`rows` filtered scanlines decoded by Pillow as a PNG of their own, after the previous band's last row when
    there is one (so the result has rows + 1 rows then)."""
    if previous:
        scanlines, rows = b"\x00" + previous + scanlines, rows + 1
    band_header = ihdr[:4] + struct.pack(">I", rows) + ihdr[8:]
    data = b"".join([SIGNATURE, _chunk(b"IHDR", band_header), *header, _chunk(b"IDAT", zlib.compress(scanlines, 0)),
                     _chunk(b"IEND", b"")])
    with PIL.Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode != RAW_MODES[colour]:
            raise OSError(f"Pillow read an 8-bit PNG band as mode {image.mode}")
        return image.copy()
