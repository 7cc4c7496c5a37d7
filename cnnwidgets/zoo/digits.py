"""Embedded small data and a small model that work offline: scikit-learn's digits, a CNN trained on them with
its training checkpoints, and crops of scikit-image's natural photos.

The digits CNN's weights live in `cnnwidgets/zoo/data/` and are made by `python -m cnnwidgets.zoo.train_digits`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..backend import Inspector, Preprocess
from ..errors import InputError

DATA = Path(__file__).resolve().parent / "data"
DIGITS_SIZE = 32
"""The 8×8 digits are upsampled (bilinear) to this size, so three conv-pool stages still leave a 4×4 map."""
DIGITS_MEAN = (0.5,)
DIGITS_STD = (0.5,)
DIGITS_LABELS = tuple(str(d) for d in range(10))
TEST_FRACTION = 0.2
SPLIT_SEED = 0
RUNS = {"main": "digits_cnn", "high_lr": "digits_cnn_high_lr"}
"""Training runs shipped: the good one, and a short one with a deliberately too-high learning rate."""


# ---------------------------------------------------------------------------------------------- digits data


@cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as [N, 32, 32] uint8 (0..255) and their labels [N] int64."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # [N,1,8,8] in [0, 1]
    big = F.interpolate(small, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False)
    images = (big[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return images, bunch.target.astype(np.int64)


def digits_split(split: str) -> np.ndarray:
    """Image positions (into all 1,797 digits) of a split: "all", "train" (80 %) or "test" (20 %, held out)."""
    count = len(_digits_arrays()[1])
    if split == "all":
        return np.arange(count)
    order = np.random.default_rng(SPLIT_SEED).permutation(count)
    test = np.sort(order[: round(count * TEST_FRACTION)])
    train = np.sort(order[round(count * TEST_FRACTION):])
    if split == "train":
        return train
    if split == "test":
        return test
    raise InputError(f"unknown digits split {split!r}; pick 'all', 'train' or 'test'")


class Digits(Dataset):
    """scikit-learn's handwritten digits as a torch dataset of (32×32 grayscale PIL image, label) pairs.

    `images` ([N, 32, 32] uint8) and `targets` ([N] int64) hold the same data as arrays for fast batch work;
    `positions` says where each item sits among all 1,797 digits.
    """

    classes = DIGITS_LABELS

    def __init__(self, split: str = "all") -> None:
        images, targets = _digits_arrays()
        self.split = split
        self.positions = digits_split(split)
        self.images = images[self.positions]
        self.targets = targets[self.positions]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[PIL.Image.Image, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"digit {index} is out of range; this split has {len(self)}")
        return PIL.Image.fromarray(self.images[index]), int(self.targets[index])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as one normalized [N, 1, 32, 32] float batch (as the digits CNN takes them) and labels [N]."""
        x = torch.from_numpy(self.images).float().div(255).unsqueeze(1)
        return (x - DIGITS_MEAN[0]) / DIGITS_STD[0], torch.from_numpy(self.targets)

    def __repr__(self) -> str:
        return f"Digits(split={self.split!r}, {len(self)} images of {DIGITS_SIZE}×{DIGITS_SIZE})"


def digits(split: str = "all") -> Digits:
    """scikit-learn's 1,797 handwritten digits (offline) as a torch dataset of (32×32 PIL image, label).

    `split` is "all", "train" (80 %) or "test" (the 20 % the shipped digits CNN never saw).
    """
    return Digits(split)


# ---------------------------------------------------------------------------------------------- digits CNN


class DigitsCNN(nn.Module):
    """conv-ReLU-pool ×3 (16, 32, 32 channels, 3×3 kernels) then FC 512→64, ReLU, FC 64→10; 32×32 grayscale in."""

    def __init__(self, channels: Sequence[int] = (16, 32, 32), hidden: int = 64) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.pool3 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(c3 * (DIGITS_SIZE // 8) ** 2, hidden)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.pool3(self.relu3(self.conv3(x)))
        return self.fc2(self.relu4(self.fc1(x.flatten(1))))


def digits_transform() -> Preprocess:
    """PIL image -> the digits CNN's input: 32×32 grayscale scaled to [-1, 1]."""
    return Preprocess(resize=DIGITS_SIZE, crop=DIGITS_SIZE, mean=DIGITS_MEAN, std=DIGITS_STD)


def checkpoint_path(epoch: int | None = None, run: str = "main") -> Path:
    """The shipped weights file: the final weights for `epoch=None`, else those after that epoch."""
    if run not in RUNS:
        raise InputError(f"unknown digits CNN run {run!r}; pick one of {', '.join(map(repr, RUNS))}")
    return DATA / (f"{RUNS[run]}.pt" if epoch is None else f"{RUNS[run]}_e{epoch:02d}.pt")


@cache
def digits_cnn_info() -> dict:
    """What the training script recorded: seeds, learning rates, epochs of the checkpoints, held-out accuracies."""
    path = DATA / "digits_cnn.json"
    if not path.is_file():
        raise InputError("the digits CNN weights are missing; run `python -m cnnwidgets.zoo.train_digits` in the checkout")
    return json.loads(path.read_text())


def checkpoint_epochs(run: str = "main") -> list[int]:
    """Epochs after which weights were saved for `run` ("main" or "high_lr")."""
    if run not in RUNS:
        raise InputError(f"unknown digits CNN run {run!r}; pick one of {', '.join(map(repr, RUNS))}")
    return list(digits_cnn_info()["runs"][run]["checkpoints"])


def load_digits_cnn(epoch: int | None = None, run: str = "main") -> DigitsCNN:
    """The digits CNN with shipped weights (final, or after `epoch`), in eval mode, on the CPU."""
    path = checkpoint_path(epoch, run)
    if not path.is_file():
        epochs = checkpoint_epochs(run)
        raise InputError(f"no digits CNN checkpoint after epoch {epoch} of run {run!r}; pick one of {epochs} or None (final)")
    model = DigitsCNN()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict({key: value.float() for key, value in state.items()}, strict=True)
    return model.eval()


def digits_cnn(epoch: int | None = None, run: str = "main", device: str | torch.device | None = None) -> Inspector:
    """An Inspector on the small CNN trained on `digits()` (weights shipped, offline, ≥ 97 % held-out accuracy).

    `epoch` picks a checkpoint saved during training (see `checkpoint_epochs()`); `run="high_lr"` is a short
    run with a deliberately too-high learning rate, to see what failed training looks like. It runs on the CPU
    unless `device` says otherwise (the model is tiny).
    """
    model = load_digits_cnn(epoch, run)
    if device is not None:
        model.to(device)
    inspector = Inspector(model, digits_transform(), DIGITS_LABELS)
    inspector.preprocess(PIL.Image.new("L", (DIGITS_SIZE, DIGITS_SIZE)))  # layer shapes are for 32×32 inputs from the start
    return inspector


# ---------------------------------------------------------------------------------------------- natural patches

PATCH_SOURCES = ("astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel", "hubble_deep_field",
                 "immunohistochemistry", "moon", "page", "retina", "rocket", "text", "cell")
"""scikit-image photos (all bundled with its wheel, so offline) that patches are cut from."""


@cache
def _photo(name: str) -> PIL.Image.Image:
    import skimage.data

    return PIL.Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


class SamplePatches(Dataset):
    """Square crops of scikit-image's natural photos at several scales, as (RGB PIL image, source index) pairs.

    Crops of side `scale × the photo's shorter side` are cut on a grid with half-overlap, for each scale, and
    resized to `size` pixels. `classes` names the source photo of each label; `boxes` is (photo, left, top, side).
    """

    def __init__(self, size: int = 224, scales: Sequence[float] = (0.5, 0.25, 0.125), sources: Sequence[str] = PATCH_SOURCES,
                 limit: int | None = None, seed: int = 0) -> None:
        unknown = sorted(set(sources) - set(PATCH_SOURCES))
        if unknown:
            raise InputError(f"unknown patch sources {unknown}; pick among {', '.join(PATCH_SOURCES)}")
        if not scales or not all(0 < s <= 1 for s in scales):
            raise InputError(f"scales must be fractions of the photo's shorter side in (0, 1], not {tuple(scales)}")
        self.size = size
        self.classes = tuple(sources)
        boxes = []
        for label, name in enumerate(sources):
            width, height = _photo(name).size
            for scale in scales:
                side = max(8, round(min(width, height) * scale))
                step = max(1, side // 2)
                for top in range(0, height - side + 1, step):
                    for left in range(0, width - side + 1, step):
                        boxes.append((label, left, top, side))
        if limit is not None and limit < len(boxes):
            keep = np.sort(np.random.default_rng(seed).choice(len(boxes), limit, replace=False))
            boxes = [boxes[i] for i in keep]
        self.boxes = boxes
        self.targets = np.array([box[0] for box in boxes], np.int64)

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: int) -> tuple[PIL.Image.Image, int]:
        label, left, top, side = self.boxes[index]
        crop = _photo(self.classes[label]).crop((left, top, left + side, top + side))
        return crop.resize((self.size, self.size), PIL.Image.Resampling.BILINEAR), label

    def __repr__(self) -> str:
        return f"SamplePatches({len(self)} crops of {len(self.classes)} photos, {self.size}×{self.size})"


def sample_patches(size: int = 224, scales: Sequence[float] = (0.5, 0.25, 0.125), limit: int | None = None,
                   seed: int = 0) -> SamplePatches:
    """A few thousand square crops of scikit-image's natural photos at several scales (offline), as a torch
    dataset of (RGB PIL image, source-photo index); `limit` keeps a random subset of that many."""
    return SamplePatches(size, scales, limit=limit, seed=seed)
