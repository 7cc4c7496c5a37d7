"""Embedded digits data, the shipped digits CNN and its checkpoints, and the natural-photo patches."""

from __future__ import annotations

import sys

import PIL.Image
import pytest
import torch

import cnnwidgets.zoo.digits  # noqa: F401 - the module (the package exports a function of the same name)
from cnnwidgets.errors import InputError
from cnnwidgets.zoo.train_digits import train

from tests.conftest import hooks_left

zd = sys.modules["cnnwidgets.zoo.digits"]


def test_digits_dataset_and_its_splits():
    everything, train_split, test_split = zd.digits(), zd.digits("train"), zd.digits("test")
    assert len(everything) == 1797
    assert len(train_split) + len(test_split) == 1797
    assert not set(train_split.positions) & set(test_split.positions)
    image, label = everything[0]
    assert isinstance(image, PIL.Image.Image) and image.size == (32, 32) and image.mode == "L"
    assert label == 0 and everything.classes[label] == "0"
    x, y = test_split.tensors()
    assert x.shape == (len(test_split), 1, 32, 32) and -1 <= float(x.min()) and float(x.max()) <= 1
    with pytest.raises(InputError, match="unknown digits split"):
        zd.digits("validation")


def test_the_shipped_cnn_reproduces_its_reported_accuracy():
    info = zd.digits_cnn_info()
    inspector = zd.digits_cnn()
    x, y = zd.digits("test").tensors()
    accuracy = float((inspector.batch_logits(x).argmax(1) == y).float().mean())
    assert accuracy == pytest.approx(info["runs"]["main"]["final_test_accuracy"], abs=1e-4)
    assert accuracy >= 0.97
    assert inspector.predict(zd.digits("test")[1][0], k=1)[0][0] == str(int(y[1]))  # PIL images go the same way
    assert torch.equal(inspector.preprocess(zd.digits("test")[1][0])[0], x[1])
    assert hooks_left(inspector.model) == 0


def test_checkpoints_are_shipped_small_and_load_safely():
    files = sorted(zd.DATA.glob("*.pt"))
    assert sum(f.stat().st_size for f in files) + (zd.DATA / "digits_cnn.json").stat().st_size < 5 * 2**20
    assert zd.checkpoint_epochs() == [1, 2, 5, 10, 20, 30]
    for run in zd.RUNS:
        for epoch in [*zd.checkpoint_epochs(run), None]:
            state = torch.load(zd.checkpoint_path(epoch, run), map_location="cpu", weights_only=True)
            assert set(state) == set(zd.DigitsCNN().state_dict())
    x, y = zd.digits("test").tensors()
    first = zd.digits_cnn(epoch=1)
    accuracy_1 = float((first.batch_logits(x).argmax(1) == y).float().mean())
    assert accuracy_1 == pytest.approx(zd.digits_cnn_info()["runs"]["main"]["test_accuracy"]["1"], abs=1e-4)
    failed = zd.digits_cnn(run="high_lr")
    assert float((failed.batch_logits(x).argmax(1) == y).float().mean()) < 0.5  # the too-high learning rate fails
    with pytest.raises(InputError, match="no digits CNN checkpoint after epoch 3"):
        zd.digits_cnn(epoch=3)
    with pytest.raises(InputError, match="unknown digits CNN run"):
        zd.digits_cnn(run="fast")


def test_one_epoch_of_the_training_script_learns():
    model, saved, history = train(lr=1e-3, epochs=1, checkpoints=[1], log=False)
    assert history[0]["test_accuracy"] > 0.5 and set(saved) == {1}
    assert all(value.dtype == torch.float16 for value in saved[1].values())
    assert not model.training


def test_sample_patches():
    patches = zd.sample_patches(size=64, limit=50)
    assert len(patches) == 50
    image, label = patches[3]
    assert image.size == (64, 64) and image.mode == "RGB" and patches.classes[label] in zd.PATCH_SOURCES
    assert len({patches.boxes[i][3] for i in range(len(patches))}) > 1  # several scales
    assert 2000 <= len(zd.SamplePatches(scales=(0.5, 0.25, 0.125))) <= 10000
    with pytest.raises(InputError, match="scales"):
        zd.sample_patches(scales=(2.0,))
