"""The Array trait: numpy arrays in, bytes + dtype + shape out, and messages that do not add up refused."""

from __future__ import annotations

import numpy as np
import pytest
import traitlets

from cnnwidgets.widgets.arrays import Array, ArrayMessage, array_message


class Holder(traitlets.HasTraits):
    values = Array()


def test_an_array_round_trips_with_its_metadata():
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    message = array_message(array, layer="conv1")
    assert message["data"] == array.tobytes() and message["dtype"] == "float32" and message["shape"] == [2, 3, 4]
    assert message["layer"] == "conv1"
    np.testing.assert_array_equal(message.array, array)


def test_the_trait_converts_arrays_and_keeps_messages():
    holder = Holder()
    assert holder.values == {} and isinstance(holder.values, ArrayMessage)
    holder.values = np.eye(3, dtype=np.uint8)
    np.testing.assert_array_equal(holder.values.array, np.eye(3, dtype=np.uint8))
    plain = {"data": np.ones(4, np.int32).tobytes(), "dtype": "int32", "shape": [2, 2]}
    holder.values = plain
    assert isinstance(holder.values, ArrayMessage) and holder.values.array.sum() == 4


@pytest.mark.parametrize("bad, message", [
    ({"data": b"\x00" * 7, "dtype": "uint8", "shape": [2, 4]}, "7 bytes"),
    ({"data": b"\x00" * 8, "dtype": "float64", "shape": [1]}, "dtypes"),
    ({"data": b"", "shape": [0]}, "data, dtype and shape"),
    ("not an array", "numpy array"),
])
def test_a_message_that_does_not_add_up_is_refused(bad, message):
    holder = Holder(values=np.zeros(2, np.uint8))
    with pytest.raises(traitlets.TraitError, match=message):
        holder.values = bad
    assert holder.values.array.tolist() == [0, 0]


def test_only_dtypes_the_front_end_decodes_are_sent():
    with pytest.raises(TypeError, match="float64"):
        array_message(np.zeros(3))
