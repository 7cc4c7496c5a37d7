"""numpy arrays as synced traits: the `Array` trait type and the `ArrayMessage` value it holds.

As lonboard's and jupyter-scatter's array traits do, an array travels as its raw bytes (a binary buffer of the
comm message, not base64), its dtype and its shape, with any metadata the view needs beside it (the layer it
belongs to, the request it answers). The front end turns it into a typed array with `toTypedArray`
(js/src/shared/arrays.js); Python reads it back with `.array`, never with a hand-written `np.frombuffer`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets

DTYPES = ("uint8", "int32", "float32")
"""What the front end decodes (Uint8Array, Int32Array, Float32Array)."""


class ArrayMessage(dict):
    """One array as a synced value: {"data": bytes, "dtype", "shape", **metadata}; `.array` gives it back.

    A dict, so the view's metadata reads as before (`message["layer"]`) and ipywidgets sends it as is; the empty
    message `ArrayMessage()` means "nothing to show".
    """

    @classmethod
    def of(cls, array: np.ndarray, **metadata: object) -> ArrayMessage:
        array = np.ascontiguousarray(array)
        if str(array.dtype) not in DTYPES:
            raise TypeError(f"an array message holds {', '.join(DTYPES)}, not {array.dtype}; cast it first")
        return cls(data=array.tobytes(), dtype=str(array.dtype), shape=list(array.shape), **metadata)

    @property
    def array(self) -> np.ndarray:
        """The array (a read-only view of the message's bytes)."""
        if not self:
            raise ValueError("the message is empty: there is no array to read")
        return np.frombuffer(self["data"], np.dtype(self["dtype"])).reshape(self["shape"])


def array_message(array: np.ndarray, **metadata: object) -> ArrayMessage:
    """`array` (uint8, int32 or float32) with `metadata` as the value of an `Array` trait."""
    return ArrayMessage.of(array, **metadata)


class Array(traitlets.TraitType[ArrayMessage, Any]):
    """A synced trait holding an ArrayMessage: a numpy array is converted on assignment; a message whose bytes do
    not match its dtype and shape is refused (a TraitError, so traitlets rolls it back)."""

    default_value = ArrayMessage()
    info_text = "a numpy array (uint8, int32 or float32) or an array message"

    def validate(self, obj: Any, value: Any) -> ArrayMessage:
        if isinstance(value, np.ndarray):
            return ArrayMessage.of(value)
        if not isinstance(value, dict):
            self.error(obj, value)
        if not value:
            return value if isinstance(value, ArrayMessage) else ArrayMessage()
        try:
            expected = int(np.prod(value["shape"])) * np.dtype(value["dtype"]).itemsize
            size = len(memoryview(value["data"]).cast("B"))
        except (KeyError, TypeError, ValueError):
            raise traitlets.TraitError(f"the {self.name!r} trait takes an array message with data, dtype and shape") from None
        if value["dtype"] not in DTYPES or size != expected:
            raise traitlets.TraitError(f"the {self.name!r} array message has {size} bytes, its dtype {value['dtype']} and "
                                       f"shape {value['shape']} need {expected} (dtypes: {', '.join(DTYPES)})")
        return value if isinstance(value, ArrayMessage) else ArrayMessage(value)
