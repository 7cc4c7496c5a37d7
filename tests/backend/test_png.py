"""Huge PNGs reduced band by band (`backend.png`): exactly the whole decode's `Image.reduce`, for every 8-bit kind."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from cnnwidgets import InputError
from cnnwidgets.backend import images, png
from cnnwidgets.backend.images import to_pil


def _picture(mode: str, width: int = 53, height: int = 41) -> PIL.Image.Image:
    """Random texture plus smooth ramps, so the encoder picks every filter (Sub, Up, Average, Paeth)."""
    generator = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 1}[mode]
    values = np.stack([(x * 5 + y * 3 + 40 * c) % 256 for c in range(channels)], -1)
    values[::3] = generator.integers(0, 256, values[::3].shape)
    array = values.astype(np.uint8)
    if mode == "P":
        picture = PIL.Image.fromarray(array[..., 0] % 64, "L").convert("P")
        picture.putpalette(generator.integers(0, 256, 768).astype(np.uint8).tobytes())
        picture.info["transparency"] = 5
        return picture
    return PIL.Image.fromarray(array if channels > 1 else array[..., 0], mode)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P"])
@pytest.mark.parametrize("factor", [1, 2, 3])
def test_bands_give_exactly_the_whole_decode_reduced(tmp_path, monkeypatch, mode, factor):
    path = tmp_path / "picture.png"
    _picture(mode).save(path, transparency=5) if mode == "P" else _picture(mode).save(path)
    monkeypatch.setattr(png, "BAND_BYTES", 200)  # bands of a few rows, so a picture crosses many
    monkeypatch.setattr(png, "READ_BYTES", 97)  # and compressed blocks end mid-row
    reducible = "RGBA" if mode == "P" else None
    got = png.reduced_png(path, factor, reducible)
    whole = PIL.Image.open(path)
    whole = whole.convert(reducible) if reducible else whole
    expected = whole.reduce(factor)
    assert got is not None and got.mode == expected.mode and got.size == expected.size
    assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_other_pngs_are_decoded_whole(tmp_path):
    wide = tmp_path / "sixteen.png"
    PIL.Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7).save(wide)
    interlaced = tmp_path / "interlaced.png"
    _picture("RGB").save(interlaced)  # Pillow writes no interlaced PNG; flip the IHDR's interlace byte by hand
    data = bytearray(interlaced.read_bytes())
    data[28] = 1
    interlaced.write_bytes(data)
    assert png.reduced_png(wide, 2, None) is None and png.reduced_png(interlaced, 2, None) is None


def test_to_pil_reduces_a_huge_png_in_bands_and_says_so(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    _picture("RGB", 90, 70).save(path)
    monkeypatch.setattr(images, "MAX_SIDE", 40)  # 90 px is "huge" here: reduced 3×
    monkeypatch.setattr(png, "BAND_BYTES", 1000)
    decoded_whole = []
    monkeypatch.setattr(images, "_from_pil", lambda pil: decoded_whole.append(1) or pil)
    with pytest.warns(UserWarning, match="downscaled"):
        got = to_pil(path, "RGB")
    assert not decoded_whole and got.size == (30, 24)
    assert np.array_equal(np.asarray(got), np.asarray(PIL.Image.open(path).reduce(3)))


def test_a_truncated_huge_png_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "cut.png"
    _picture("RGB", 90, 70).save(path, compress_level=0)
    path.write_bytes(path.read_bytes()[: 4000])
    monkeypatch.setattr(images, "MAX_SIDE", 40)
    with pytest.raises(InputError, match="cannot read") as raised:
        to_pil(path, "RGB")
    assert "\n" not in str(raised.value)


def test_an_animated_png_gives_its_first_frame(tmp_path, monkeypatch):
    path = tmp_path / "animated.png"
    first, second = _picture("RGB"), _picture("RGB").transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)
    first.save(path, save_all=True, append_images=[second], duration=100)
    monkeypatch.setattr(png, "BAND_BYTES", 500)
    got = png.reduced_png(path, 2, None)
    assert got is not None and np.array_equal(np.asarray(got), np.asarray(first.reduce(2)))
