"""Sample photos for demos and tests, from scikit-image's bundled (offline) data."""

from __future__ import annotations

import difflib

from PIL import Image

from ..errors import InputError

# Public name -> skimage.data function name.
_SAMPLES = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket", "astronaut": "astronaut"}


def sample_images() -> list[str]:
    """Names accepted by ``sample_image``."""
    return list(_SAMPLES)


def sample_image(name: str = "cat") -> Image.Image:
    """Return the named sample photo as an RGB PIL image; unknown names raise ``InputError``."""
    if name not in _SAMPLES:
        close = difflib.get_close_matches(name, _SAMPLES, n=3)
        hint = f" did you mean {', '.join(map(repr, close))}?" if close else ""
        raise InputError(f"unknown sample image {name!r}; valid names: {', '.join(_SAMPLES)}.{hint}")
    import skimage.data

    return Image.fromarray(getattr(skimage.data, _SAMPLES[name])()).convert("RGB")
