"""The errors cnnwidgets raises for bad input: one line each, naming the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class InputError(ValueError):
    """An argument cnnwidgets cannot use; the message says what to pass instead."""


class LayerNotFoundError(InputError):
    """A layer name that the model does not have."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        known = list(known)
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        if not close:
            close = [k for k in known if name and name in k][:5]
        hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else f"known layers include {', '.join(repr(k) for k in known[:8])}"
        super().__init__(f"unknown layer {name!r}; {hint} (see inspector.layers for all names)")
        self.name = name
        self.close_matches = close


@contextmanager
def model_errors(input_shape: tuple[int, ...]) -> Iterator[None]:
    """Report a model that fails on an input as a one-line InputError instead of a traceback from inside torch."""
    try:
        yield
    except (RuntimeError, AssertionError) as error:  # timm asserts its fixed input size
        lines = str(error).strip().splitlines() or [type(error).__name__]
        raise InputError(
            f"the model failed on an input of shape {tuple(input_shape)}: {lines[0]}; "
            "check the image size and the transform"
        ) from None
