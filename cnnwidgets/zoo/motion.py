"""An embedded, offline action dataset and two small video networks trained on it (after Feichtenhofer et al., CVPR
2018, "What have we learned from deep representations for action recognition?").

`motion_clips()`: synthetic clips of 16 frames × 32×32 px, 8 classes — an elliptic object with a dot on one end
moving left, right, up or down, rotating clockwise or anticlockwise, growing or shrinking, over a static textured
background. Every clip is drawn from a seeded generator, so the dataset is the same everywhere. A single frame says
nothing about the class; some pairs are deliberately confusable: rotations are slow (2–7°/frame), so clockwise and
anticlockwise differ by a few pixels per frame, and growing and shrinking by a fraction of a pixel.

Networks (weights in `cnnwidgets/zoo/data/`, made by `python -m cnnwidgets.zoo.train_motion`):
- `TwoStreamNet`: an appearance stream on the RGB frames (convolutions 1×3×3, so it sees frames one at a time and
  no motion) and a motion stream on frame differences (3×3×3), fused late by one linear layer over both streams'
  pooled features: the class score is a sum of an appearance part and a motion part (`stream_logits`).
- `C3DNet`: a plain 3-D CNN (3×3×3 convolutions) on the RGB frames.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..backend import Inspector
from ..backend.clips import ClipPreprocess, frame_differences
from ..errors import InputError

DATA = Path(__file__).resolve().parent / "data"
FRAMES = 16
SIZE = 32
MOTION_LABELS = ("left", "right", "up", "down", "rotate clockwise", "rotate anticlockwise", "grow", "shrink")
CONFUSABLE = ("rotate clockwise", "rotate anticlockwise")
"""The pair built to be confused: the same object turning a few degrees per frame one way or the other."""
CLIPS_PER_CLASS = {"train": 80, "test": 24}
SPLIT_SEEDS = {"train": 0, "test": 1}
MOTION_MEAN = (0.5, 0.5, 0.5)
MOTION_STD = (0.25, 0.25, 0.25)
NETWORKS = ("two_stream", "c3d")


# ------------------------------------------------------------------------------------------------ the clips


def _background(rng: np.random.Generator) -> np.ndarray:
    """[S,S,3] float texture in [0.15, 0.65]: three random colour gratings (stripes of random angle and period)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    texture = np.full((SIZE, SIZE, 3), 0.4, np.float32)
    for _ in range(3):
        angle, period, phase = rng.uniform(0, math.pi), rng.uniform(4, 12), rng.uniform(0, 2 * math.pi)
        wave = np.sin(2 * math.pi * (x * math.cos(angle) + y * math.sin(angle)) / period + phase)
        texture += 0.08 * wave[..., None] * rng.uniform(-1, 1, 3).astype(np.float32)
    return np.clip(texture, 0.15, 0.65)


def _trajectory(label: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame centre x, y (px), angle (rad) and scale of the object for class `label`."""
    t = np.arange(FRAMES, dtype=np.float32)
    cx, cy = np.full(FRAMES, rng.uniform(12, 20)), np.full(FRAMES, rng.uniform(12, 20))
    angle = np.full(FRAMES, rng.uniform(0, 2 * math.pi))
    scale = np.ones(FRAMES)
    name = MOTION_LABELS[label]
    if name in ("left", "right", "up", "down"):
        speed = rng.uniform(0.5, 1.0)
        start = rng.uniform(8 + speed * (FRAMES - 1), 24) if name in ("left", "up") else rng.uniform(8, 24 - speed * (FRAMES - 1))
        track = start + (-1 if name in ("left", "up") else 1) * speed * t
        if name in ("left", "right"):
            cx = track
        else:
            cy = track
    elif name.startswith("rotate"):
        turn = math.radians(rng.uniform(2, 7)) * (1 if name == "rotate clockwise" else -1)  # y points down: + is clockwise
        angle = angle + turn * t
    else:
        rate = rng.uniform(0.02, 0.04) * (1 if name == "grow" else -1)
        scale = np.exp(rate * (t - (FRAMES - 1) / 2))
    return cx, cy, angle, scale


def render_clip(label: int, rng: np.random.Generator) -> np.ndarray:
    """One [T,S,S,3] uint8 clip of class `label`: an anti-aliased ellipse with a dark dot near one end."""
    background = _background(rng)
    colour = rng.uniform(0.75, 1.0, 3).astype(np.float32) * rng.permutation([1.0, 0.6, 0.2]).astype(np.float32)
    half_long, half_short = rng.uniform(6, 8), rng.uniform(2.5, 3.5)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    cx, cy, angle, scale = (np.asarray(a, np.float32).reshape(-1, 1, 1) for a in _trajectory(label, rng))  # [T,1,1]
    u = ((x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)) / scale
    v = (-(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)) / scale
    radius = np.sqrt((u / half_long) ** 2 + (v / half_short) ** 2)
    body = np.clip((1 - radius) * half_short * scale + 0.5, 0, 1)[..., None]  # ~1 px soft edge
    dot = np.clip(1.8 - np.sqrt((u - 0.6 * half_long) ** 2 + v**2) * scale, 0, 1)[..., None]
    frames = (background * (1 - body) + colour * body) * (1 - 0.8 * dot)
    return np.round(frames * 255).astype(np.uint8)


@cache
def _clips(split: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SPLIT_SEEDS[split])
    labels = np.tile(np.arange(len(MOTION_LABELS)), CLIPS_PER_CLASS[split])
    clips = np.stack([render_clip(int(label), rng) for label in labels])
    clips.flags.writeable = False
    return clips, labels


class MotionClips(Dataset):
    """Synthetic action clips: item i is ([T,H,W,3] uint8 frames, class index). See the module doc."""

    labels = MOTION_LABELS

    def __init__(self, split: str = "test") -> None:
        if split not in CLIPS_PER_CLASS:
            raise InputError(f"split={split!r} is unknown; pick 'train' or 'test'")
        self.split = split
        self.clips, self.targets = _clips(split)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.clips[index], int(self.targets[index])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All clips preprocessed, [N,3,T,H,W] float, and their labels [N]."""
        x = torch.from_numpy(self.clips.copy()).permute(0, 4, 1, 2, 3).float() / 255
        mean, std = torch.tensor(MOTION_MEAN).view(1, 3, 1, 1, 1), torch.tensor(MOTION_STD).view(1, 3, 1, 1, 1)
        return (x - mean) / std, torch.from_numpy(self.targets.copy())

    def __repr__(self) -> str:
        return f"MotionClips({self.split!r}: {len(self)} clips of {FRAMES}×{SIZE}×{SIZE}, {len(self.labels)} classes)"


def motion_clips(split: str = "test") -> MotionClips:
    """The embedded synthetic action dataset: "train" (640 clips) or "test" (192 held-out clips, other seeds)."""
    return MotionClips(split)


def motion_transform() -> ClipPreprocess:
    return ClipPreprocess(resize=SIZE, crop=SIZE, mean=MOTION_MEAN, std=MOTION_STD, frames=FRAMES)


# ------------------------------------------------------------------------------------------------ the networks


def _stage(channels_in: int, channels_out: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> nn.Sequential:
    padding = (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2)
    return nn.Sequential(nn.Conv3d(channels_in, channels_out, kernel, stride, padding), nn.ReLU())


class Stream(nn.Sequential):
    """Three conv stages (the first strided 2 in space, the second followed by a 2×2 spatial max pool), then global
    average pooling to one feature vector. `temporal` 1 makes an appearance stream (frames seen one by one)."""

    def __init__(self, temporal: int, widths: tuple[int, int, int] = (8, 16, 32)) -> None:
        k = (temporal, 3, 3)
        super().__init__(OrderedDict(
            conv1=_stage(3, widths[0], k, (1, 2, 2)), conv2=_stage(widths[0], widths[1], k, (1, 1, 1)),
            pool=nn.MaxPool3d((1, 2, 2)), conv3=_stage(widths[1], widths[2], k, (1, 1, 1)),
            gap=nn.AdaptiveAvgPool3d(1), flatten=nn.Flatten(),
        ))


class FrameDifference(nn.Module):
    """The motion stream's input: consecutive frame differences of the clip, [N,3,T-1,H,W]."""

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return frame_differences(clip)


class TwoStreamNet(nn.Module):
    """Appearance stream on the frames + motion stream on frame differences, fused late (see the module doc)."""

    def __init__(self, classes: int = len(MOTION_LABELS)) -> None:
        super().__init__()
        self.appearance = Stream(temporal=1)
        self.difference = FrameDifference()
        self.motion = Stream(temporal=3)
        self.fusion = nn.Linear(2 * 32, classes)

    def stream_inputs(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(appearance input, motion input) of a clip: the frames and their differences."""
        return clip, self.difference(clip)

    def forward_streams(self, appearance: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """Class scores from the two streams' inputs given separately (for joint maximization of both)."""
        return self.fusion(torch.cat([self.appearance(appearance), self.motion(motion)], 1))

    def stream_logits(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(appearance part, motion part) of the class scores; they sum to the scores minus the fusion bias."""
        appearance, motion = self.appearance(clip), self.motion(self.difference(clip))
        weight = self.fusion.weight
        return appearance @ weight[:, :32].T, motion @ weight[:, 32:].T

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.forward_streams(*self.stream_inputs(clip))


class C3DNet(nn.Module):
    """A plain 3-D CNN: the motion stream's architecture on the RGB frames, and a linear classifier."""

    def __init__(self, classes: int = len(MOTION_LABELS)) -> None:
        super().__init__()
        self.features = Stream(temporal=3)
        self.classifier = nn.Linear(32, classes)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(clip))


def build(network: str) -> nn.Module:
    if network not in NETWORKS:
        raise InputError(f"network={network!r} is unknown; pick one of {', '.join(map(repr, NETWORKS))}")
    return TwoStreamNet() if network == "two_stream" else C3DNet()


def weights_path(network: str) -> Path:
    return DATA / f"motion_{network}.pt"


@cache
def motion_info() -> dict:
    """What training recorded (settings, held-out accuracy, confusion matrix per network), from motion.json."""
    return json.loads((DATA / "motion.json").read_text())


def load_motion_network(network: str = "two_stream") -> nn.Module:
    """The trained network (float32, eval mode) from the shipped float16 weights."""
    model = build(network)
    state = torch.load(weights_path(network), map_location="cpu", weights_only=True)
    model.load_state_dict({key: value.float() for key, value in state.items()})
    return model.eval()


def motion_cnn(network: str = "two_stream", device: str | torch.device | None = None) -> Inspector:
    """An Inspector on the embedded action network trained on `motion_clips()`: "two_stream" (appearance + motion
    streams, late fusion) or "c3d" (a plain 3-D CNN). Offline; held-out accuracy in `motion_info()`."""
    model = load_motion_network(network)
    if device is not None:
        model = model.to(device)
    return Inspector(model, motion_transform(), MOTION_LABELS)
