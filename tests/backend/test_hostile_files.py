"""Hostile files: truncated, textual, malicious or hand-made checkpoints and indexes give one InputError line that
names the file; diverged (NaN) checkpoints are named in the widget instead of drawn as if fine."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from cnnwidgets import InputError, Inspector
from cnnwidgets.backend.checkpoints import load_checkpoints
from cnnwidgets.backend.index import Index, build_index
from cnnwidgets.backend.preprocess import Preprocess
from cnnwidgets.widgets.feature_evolution import FeatureEvolution

from tests.conftest import hooks_left

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test


def small_cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))


class Boom:
    """Unpickling this would run code; weights_only=True must refuse it."""

    ran = False

    def __reduce__(self):
        return (exec, ("import tests.backend.test_hostile_files as m; m.Boom.ran = True",))


def broken_files(tmp_path, good: dict) -> dict[str, object]:
    torch.save(good, tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    files = {}
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    files["truncated"] = tmp_path / "truncated.pt"
    (tmp_path / "text.pt").write_text("epoch,accuracy\n1,0.5\n")
    files["text"] = tmp_path / "text.pt"
    with open(tmp_path / "malicious.pt", "wb") as handle:
        pickle.dump({"weight": Boom()}, handle)
    files["malicious"] = tmp_path / "malicious.pt"
    (tmp_path / "empty.pt").write_bytes(b"")
    files["empty"] = tmp_path / "empty.pt"
    return files


@pytest.mark.parametrize("kind", ["truncated", "text", "malicious", "empty"])
def test_unreadable_checkpoints_name_the_file_in_one_line(tmp_path, kind):
    path = broken_files(tmp_path, small_cnn().state_dict())[kind]
    with pytest.raises(InputError, match=str(path.name)) as raised:
        load_checkpoints({1: path})
    assert "\n" not in str(raised.value) and "cannot read" in str(raised.value)
    assert not Boom.ran
    expected = {"truncated": "zip archive", "text": "not a torch file: it starts with b'epoch,accuracy", "empty": "file is empty",
                "malicious": "not loaded for safety"}[kind]
    assert expected in str(raised.value)


def test_a_checkpoint_that_is_not_a_state_dict_names_the_file(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(InputError, match="state dict.*list.pt"):
        load_checkpoints({1: tmp_path / "list.pt"})


def test_a_checkpoint_missing_keys_gets_one_line(tmp_path):
    state = small_cnn().state_dict()
    del state["0.weight"]
    data = torch.randn(6, 1, 12, 12)
    with pytest.raises(InputError, match="does not fit the model") as raised:
        FeatureEvolution(small_cnn(), {1: state}, data)
    assert "\n" not in str(raised.value)


def test_nan_weights_are_named_not_drawn(tmp_path):
    data = torch.randn(6, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    diverged = small_cnn(2).state_dict()
    diverged["3.weight"][0, 0, 0, 0] = float("nan")
    diverged["7.bias"][1] = float("inf")
    widget = FeatureEvolution(small_cnn(), {1: small_cnn(1).state_dict(), 2: diverged}, data, features=[("1", 0)])
    assert widget.epochs == [1]
    assert widget.error.startswith("epoch 2 not shown: NaN or infinite weights (3.weight, 7.bias)")
    with pytest.raises(InputError, match="epoch 3 not shown"):
        widget.add_checkpoint(3, diverged)
    assert widget.epochs == [1] and "epoch 3" in widget.error


# --- indexes -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    inspector = Inspector(small_cnn(), transform=Preprocess(resize=12, crop=12))
    images = torch.rand(10, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    path = tmp_path_factory.mktemp("index") / "index.pt"
    index = build_index(inspector, images, ["1", "4"], k=3, path=path, progress=False)
    return inspector, images, index, path


def damaged(state: dict, change) -> dict:
    state = {key: (dict(value) if isinstance(value, dict) else value) for key, value in state.items()}
    change(state)
    return state


DAMAGE = {
    "missing codes": (lambda s: s.pop("codes"), "missing codes"),
    "count 1e9": (lambda s: s.update(count=10**9), "hashes has shape"),
    "float count": (lambda s: s.update(count=1e9), "must be non-negative integers"),
    "offset -5": (lambda s: s.update(offset=-5), "must be non-negative integers"),
    "offset moved": (lambda s: s.update(offset=100), "outside ids 100..109"),
    "short labels": (lambda s: s.update(labels=s["labels"][:4]), "labels has shape"),
    "k 0": (lambda s: s.update(config={**s["config"], "k": 0}), "k=0"),
    "top of a layer missing": (lambda s: s.update(top={"1": s["top"]["1"]}), "'4'"),
    "top rows outside": (lambda s: s.update(top={**s["top"], "1": {**s["top"]["1"], "rows": s["top"]["1"]["rows"] + 99}}), "outside its"),
    "thumbnails short": (lambda s: s.update(thumbnails=s["thumbnails"][:2]), "thumbnails does not hold"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damaged_index_is_refused_on_load(built, tmp_path, name):
    change, message = DAMAGE[name]
    path = tmp_path / "damaged.pt"
    torch.save(damaged(built[2].state_dict(), change), path)
    with pytest.raises(InputError, match=message) as raised:
        Index.load(path)
    assert "\n" not in str(raised.value) and "damaged.pt" in str(raised.value)


@pytest.mark.parametrize("kind", ["truncated", "text", "malicious", "empty"])
def test_unreadable_index_names_the_file(built, tmp_path, kind):
    path = broken_files(tmp_path, built[2].state_dict())[kind]
    with pytest.raises(InputError, match=path.name) as raised:
        Index.load(path)
    assert "\n" not in str(raised.value)
    assert not Boom.ran


def test_index_image_outside_is_an_input_error(built):
    inspector, images, _, path = built
    index = Index.load(path, inspector, images)
    assert index.image(9).shape == (12, 12, 3)
    for bad in (10, -1, -5, 10**9, 2.0, "3", True):
        with pytest.raises(InputError):
            index.image(bad)
    assert hooks_left(inspector.model) == 0
