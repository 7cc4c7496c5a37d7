"""Hostile pictures: every container, dtype, PIL mode, shape and value range is either the right picture (equal to
an independent reference conversion) or a one-line InputError; never another exception, never a wrong picture."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnwidgets import InputError, Inspector
from cnnwidgets.backend.images import MAX_INPUT_MAGNITUDE, to_pil
from cnnwidgets.backend.preprocess import Preprocess
from tests.conftest import assert_refused

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test

INTEGER_RANGES = {np.uint8: 255, np.uint16: 65535, np.int16: 32767, np.uint32: 2**32 - 1, np.int32: 2**31 - 1}
DTYPES = [np.uint8, np.uint16, np.int16, np.uint32, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_, np.complex64]


def reference_uint8(array: np.ndarray) -> np.ndarray | None:
    """The 8-bit picture the documented rule gives, computed independently with float64, or None where the rule
    says InputError."""
    values = array.astype(np.complex128) if np.iscomplexobj(array) else array.astype(np.float64)
    if np.iscomplexobj(array):
        return None
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.int64:
        return values.astype(np.uint8) if values.min() >= 0 and values.max() <= 255 else None
    if array.dtype.type in INTEGER_RANGES:
        if values.min() < 0:
            return None
        return np.clip(np.round(values * 255 / INTEGER_RANGES[array.dtype.type]), 0, 255).astype(np.uint8)
    if not np.isfinite(values).all():
        return None
    if values.min() >= 0 and values.max() <= 1:
        return np.round(values * 255).astype(np.uint8)
    if values.min() >= 0 and values.max() <= 255 and (values == np.round(values)).all():
        return values.astype(np.uint8)
    return None


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from(DTYPES))
    height, width = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    channels = draw(st.sampled_from([None, 1, 3, 4, 5]))
    shape = (height, width) if channels is None else (height, width, channels)
    kind = draw(st.sampled_from(["unit", "byte", "type", "wild", "special"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "unit":
        values = rng.random(shape)
    elif kind == "byte":
        values = rng.integers(0, 256, shape).astype(np.float64)
    elif kind == "type":
        high = INTEGER_RANGES.get(dtype, 255)
        values = rng.integers(0, high, shape, endpoint=True).astype(np.float64)
    elif kind == "wild":
        values = rng.normal(0, draw(st.sampled_from([1.0, 300.0, 1e6])), shape)
    else:
        values = rng.random(shape)
        values.flat[0] = draw(st.sampled_from([np.nan, np.inf, -1.0, 1.5, 256.0]))
    if dtype == np.bool_:
        return values > 0.5
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.nan_to_num(values), info.min, info.max).astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(dtype)


def _check(array: np.ndarray, container: str) -> None:
    expected = reference_uint8(array)
    if container == "tensor":
        if array.dtype in (np.uint32,):
            return  # torch has no arithmetic on uint32 tensors to compare against; covered by the array container
        source = torch.from_numpy(np.ascontiguousarray(array))
        if source.is_floating_point() or source.is_complex():
            with pytest.raises(InputError, match="model input"):
                to_pil(source, "RGB")
            return
        if source.dim() == 3:
            source = source.permute(2, 0, 1)  # channels first, as torchvision's read_image gives
    elif container == "pil":
        if array.dtype.type not in (np.float32, np.uint16) or array.ndim != 2:
            return  # int32 reads as 16-bit in PIL's I mode: tested apart
        source = PIL.Image.fromarray(array)
        assert source.mode in ("F", "I;16")
    else:
        source = array
    squeezed = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
    fits = squeezed.ndim == 2 or (squeezed.ndim == 3 and squeezed.shape[-1] in (3, 4))
    if container == "tensor" and array.ndim == 3 and array.shape[-1] not in (1, 3, 4):
        fits = False  # a [C,H,W] tensor with C not 1, 3, 4 is not read as channels first
    big_enough = min(array.shape[:2]) >= 8
    try:
        picture = to_pil(source, "RGB")
    except InputError as error:
        assert "\n" not in str(error)
        assert expected is None or not fits or not big_enough, str(error)
        return
    assert expected is not None and fits and big_enough
    reference = expected[..., 0] if expected.ndim == 3 and expected.shape[-1] == 1 else expected
    if reference.ndim == 2:
        reference = np.repeat(reference[..., None], 3, axis=2)
    elif reference.shape[-1] == 4:  # over white, as the module documents
        alpha = reference[..., 3:].astype(np.float64) / 255
        reference = np.round(reference[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    got = np.asarray(picture).astype(int)
    assert got.shape == reference.shape
    assert np.abs(got - reference.astype(int)).max() <= 1  # rounding of the compositing and float16 casts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(array=arrays(), container=st.sampled_from(["array", "tensor", "pil"]))
def test_any_picture_is_right_or_a_one_line_error(array, container):
    _check(array, container)


PIL_MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "LA", "PA", "RGBX", "RGBa", "La",
             "I;16", "I;16L", "I;16B", "I;16N"]


@pytest.mark.parametrize("mode", PIL_MODES)
def test_every_pil_mode_gives_the_right_gray(mode):
    """A flat mid-gray in every mode Pillow has: the RGB picture is mid-gray (not black, not saturated white)."""
    gray = {"I": 32768, "I;16": 32768, "I;16L": 32768, "I;16B": 32768, "I;16N": 32768, "F": 0.5, "1": 255,
            "CMYK": (0, 0, 0, 127), "YCbCr": (128, 128, 128), "LAB": (136, 128, 128), "HSV": (0, 0, 128)}
    value = gray.get(mode, 128)
    if mode in ("RGB", "RGBX"):
        value = (128, 128, 128) + (() if mode == "RGB" else (255,))
    if mode in ("RGBA", "RGBa"):
        value = (128, 128, 128, 255)
    if mode in ("LA", "La"):
        value = (128, 255)
    if mode in ("P", "PA"):
        source = PIL.Image.new("RGBA", (16, 16), (128, 128, 128, 255)).convert(mode)
    else:
        source = PIL.Image.new(mode, (16, 16), value)
    picture = to_pil(source, "RGB")
    expected = 255 if mode == "1" else 128
    assert np.abs(np.asarray(picture).astype(int) - expected).max() <= 2, mode


def test_sixteen_bit_and_float_pil_pictures_scale_by_their_range():
    """The two silently wrong cases of the issue: I;16 spanning 0..65535 and F in [0, 1]."""
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    picture = np.asarray(to_pil(PIL.Image.fromarray(ramp), "L"))
    np.testing.assert_allclose(picture, np.round(ramp / 257), atol=1)
    as_int32 = np.asarray(to_pil(PIL.Image.fromarray(ramp.astype(np.int32)), "L"))  # mode I, as older Pillow reads PNGs
    np.testing.assert_allclose(as_int32, np.round(ramp / 257), atol=1)
    unit = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    picture = np.asarray(to_pil(PIL.Image.fromarray(unit), "L"))
    np.testing.assert_allclose(picture, np.round(unit * 255), atol=1)


def test_whole_number_floats_are_eight_bit_values():
    picture = np.arange(256, dtype=np.float64).repeat(16).reshape(64, 64)
    assert np.array_equal(np.asarray(to_pil(picture, "L")), picture.astype(np.uint8))


def test_huge_array_is_box_reduced_without_a_full_float_copy():
    huge = np.zeros((9000, 4200, 3), np.uint8)
    huge[:, :2100] = 200
    with pytest.warns(UserWarning, match="downscaled"):
        picture = np.asarray(to_pil(huge, "RGB"))
    assert picture.shape == (3000, 1400, 3)  # a 3×3 box, ceil(9000 / 4096) = 3
    assert (picture[:, :700] == 200).all() and (picture[:, 700:] == 0).all()


@pytest.fixture(scope="module")
def small() -> Inspector:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3, stride=2, padding=1),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3),
    )
    return Inspector(model, transform=Preprocess(resize=32, crop=32))


@pytest.mark.parametrize(
    ("bad", "fix"),
    [
        (torch.randn(3, 1, 1), "at least 4×4"),  # the model's total stride is 4
        (torch.randn(3, 32, 32) * 1e30, "beyond ±"),
        (torch.full((3, 32, 32), MAX_INPUT_MAGNITUDE * 2), "beyond ±"),
        (torch.empty(3, 32, 32, device="meta"), "'meta' device"),
        (torch.zeros(3, 32, 32, dtype=torch.complex64), "complex"),
        (torch.full((3, 32, 32), 300, dtype=torch.int64), "int64 image with values 300..300"),
        (torch.full((3, 32, 32), -1, dtype=torch.int16), "negative values"),
        ("https://example.com/cat.jpg", r"download it first: urllib.request.urlretrieve\('https://example.com/cat.jpg', 'cat.jpg'\)"),
    ],
)
def test_hostile_tensors_and_urls_get_one_line_errors(small, bad, fix):
    assert_refused(small, bad, fix)


def test_integer_and_bool_tensors_are_pictures_by_the_rule(small):
    gray = torch.full((3, 32, 32), 128, dtype=torch.uint8)
    reference = small.predict(gray)
    assert small.predict(gray.to(torch.int64)) == reference
    assert small.predict(torch.full((3, 32, 32), round(128 / 255 * (2**31 - 1)), dtype=torch.int32)) == reference
    assert small.predict(torch.full((3, 32, 32), 128 * 257, dtype=torch.int32).to(torch.uint16)) == reference
    white = small.predict(torch.full((3, 32, 32), 255, dtype=torch.uint8))
    assert small.predict(torch.ones(3, 32, 32, dtype=torch.bool)) == white


def test_float_input_of_another_dtype_or_device_is_accepted(small):
    x = torch.rand(1, 3, 32, 32)
    expected = small.logits(x)
    torch.testing.assert_close(small.logits(x.double()), expected)
    torch.testing.assert_close(small.logits(x.bfloat16()), small.logits(x.bfloat16().float()))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_all_finite_finds_one_bad_value_and_keeps_huge_finite_ones(bad):
    """`all_finite` answers from one sum: a NaN or ±inf anywhere carries through it; finite values whose sum
    overflows (3e38 + 3e38) are checked one by one and still pass."""
    from cnnwidgets.backend.images import all_finite

    values = torch.zeros(2, 3, 8, 8)
    assert all_finite(values)
    values[1, 2, 7, 7] = bad
    assert not all_finite(values)
    assert all_finite(torch.full((4,), 3e38))
    assert not all_finite(torch.tensor([float("inf"), -float("inf")]))
