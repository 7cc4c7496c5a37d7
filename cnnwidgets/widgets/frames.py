"""The `frame` trait the widgets share on video models: which time step a view shows, checked against how many
there are. The front end's slider and play button are `js/src/shared/frames.js`."""

from __future__ import annotations

from ..errors import InputError


def check_frame(frame: object, steps: int, what: str) -> int:
    """`frame` when it is a time step of `what` (which has `steps` of them), else an InputError naming the range."""
    if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < steps:
        if steps == 1:
            raise InputError(f"frame {frame!r} is out of range; {what} has one time step (frame 0)")
        raise InputError(f"frame {frame!r} is out of range; {what} has time steps 0..{steps - 1}")
    return frame


def layer_steps(shape: tuple[int, ...] | list[int], video: bool) -> int:
    """How many time steps a layer's map of `shape` has: T' of a video model's [C,T',H,W], else 1."""
    return int(shape[1]) if video and len(shape) == 4 else 1
