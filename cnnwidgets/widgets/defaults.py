"""What a widget looks into when it is not told: the embedded model and the sample photo.

These live with the widgets, not in the backend: the backend takes whatever model it is given and knows nothing of
the embedded defaults in `zoo` (which itself builds on the backend).
"""

from __future__ import annotations

from torch import nn

from ..backend import Inspector
from ..backend.images import ImageLike


def as_inspector(source: Inspector | nn.Module | None) -> Inspector:
    """An Inspector as is, a bare model wrapped with the default preprocessing, or, for None, the embedded
    EfficientNet-Lite0."""
    if isinstance(source, Inspector):
        return source
    if source is None:
        from ..zoo import efficientnet_lite0

        return efficientnet_lite0()
    return Inspector(source)


def default_image(image: ImageLike | None) -> ImageLike:
    """`image`, or the sample photo of a cat when none is given."""
    if image is not None:
        return image
    from ..zoo import sample_image

    return sample_image("cat")
