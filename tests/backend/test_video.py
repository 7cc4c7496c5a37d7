"""Video through the Inspector: clips in every form, [C,T,H,W] layer shapes, exact activations, bad input."""

from __future__ import annotations

import sys

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnwidgets import Inspector
from cnnwidgets.backend.clips import ClipPreprocess, read_video
from cnnwidgets.errors import InputError

from tests.conftest import assert_same_state, hooks_left, model_state

pytestmark = pytest.mark.usefixtures("one_thread")  # CI-sized: one thread, restored after each test


class Tiny3D(nn.Module):
    """3-channel clip -> conv 2×2×2 (2 filters: sum of the window, and red minus blue at the window's first voxel)
    -> ReLU -> global average -> linear to 3 classes; weights set by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 2, kernel_size=2)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0] = 1.0
            self.conv.weight[1, 0, 0, 0, 0], self.conv.weight[1, 2, 0, 0, 0] = 1.0, -1.0
            self.conv.bias.copy_(torch.tensor([-4.0, 0.0]))
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def identity_inspector(model: nn.Module, frames: int | None = None) -> Inspector:
    """An Inspector whose transform only scales uint8 to [0, 1] (no resize, crop or normalization)."""
    return Inspector(model, ClipPreprocess(resize=None, crop=None, mean=(0, 0, 0), std=(1, 1, 1), frames=frames))


@pytest.fixture
def clip() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)


def hand_activations(clip: np.ndarray) -> np.ndarray:
    """The Tiny3D conv+ReLU output [2,T-1,H-1,W-1] computed with explicit loops."""
    x = clip.astype(np.float64) / 255  # [T,H,W,3]
    t, h, w, _ = x.shape
    out = np.zeros((2, t - 1, h - 1, w - 1))
    for i in range(t - 1):
        for j in range(h - 1):
            for k in range(w - 1):
                out[0, i, j, k] = x[i:i + 2, j:j + 2, k:k + 2].sum() - 4
                out[1, i, j, k] = x[i, j, k, 0] - x[i, j, k, 2]
    return np.maximum(out, 0)


def test_clip_forms_give_the_same_batch(clip: np.ndarray) -> None:
    inspector = identity_inspector(Tiny3D())
    expected = torch.from_numpy(clip).permute(3, 0, 1, 2).float()[None] / 255
    forms = [clip, list(clip), [PIL.Image.fromarray(frame) for frame in clip], torch.from_numpy(clip),
             torch.from_numpy(clip).permute(0, 3, 1, 2), clip.astype(np.float32) / 255, expected[0], expected]
    for form in forms:
        assert torch.allclose(inspector.preprocess(form), expected, atol=1e-6)


def test_layers_report_c_t_h_w_and_activations_are_exact(clip: np.ndarray) -> None:
    model = Tiny3D()
    before = model_state(model)
    inspector = identity_inspector(model)
    assert inspector.is_video
    activations = inspector.activations(clip, "relu")
    assert {layer.name: layer.shape for layer in inspector.layers}["relu"] == (2, 3, 7, 7)
    np.testing.assert_allclose(activations.numpy(), hand_activations(clip), atol=1e-5)
    logits = inspector.logits(clip)
    pooled = hand_activations(clip).mean((1, 2, 3))
    np.testing.assert_allclose(logits.numpy(), [pooled[0], pooled[1], pooled[0] - pooled[1]], atol=1e-5)
    assert inspector.display_image(clip).shape == (4, 8, 8, 3)
    assert hooks_left(model) == 0
    assert_same_state(before, model_state(model))


def test_r3d_18_activations_exact_and_kinetics_names() -> None:
    from torchvision.models.video import R3D_18_Weights, r3d_18

    model = r3d_18(weights=None).train()
    weights = R3D_18_Weights.KINETICS400_V1
    inspector = Inspector(model, weights.transforms(), weights.meta["categories"])
    before = model_state(model)
    clip = torch.randn(3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    found = inspector.activations(clip, ["stem", "layer2"])
    with torch.no_grad():
        model.eval()
        stem = model.stem(clip[None])
        layer2 = model.layer2(model.layer1(stem))
        model.train()
    assert torch.equal(found["stem"], stem[0])
    assert torch.equal(found["layer2"], layer2[0])
    assert {layer.name: layer.shape for layer in inspector.layers}["layer2"] == (128, 2, 8, 8)
    assert len(inspector.labels) == 400 and inspector.predict(clip, 1)[0][0] in inspector.labels
    frames = np.zeros((6, 60, 80, 3), np.uint8)  # uint8 frames go through the weights' transform: 112×112 crops
    assert tuple(inspector.preprocess(frames).shape) == (1, 3, 6, 112, 112)
    assert hooks_left(model) == 0
    assert_same_state(before, model_state(model))


@pytest.mark.parametrize("name", ["mc3_18", "r2plus1d_18"])
def test_torchvision_video_models_classify_a_clip(name: str) -> None:
    from cnnwidgets import zoo

    inspector = zoo.torchvision_model(name, weights=None, device="cpu")
    clip = torch.randn(3, 8, 64, 64, generator=torch.Generator().manual_seed(0))
    assert inspector.is_video and len(inspector.logits(clip)) == 400
    assert all(len(layer.shape) == 4 for layer in inspector.layers if layer.kind == "conv")


def test_mvit_transformer_case() -> None:
    from cnnwidgets import zoo

    inspector = zoo.torchvision_model("mvit_v1_b", weights=None, device="cpu")
    clip = torch.randn(3, 16, 224, 224, generator=torch.Generator().manual_seed(0))
    assert inspector.is_video
    inspector.preprocess(clip)
    assert inspector.layers[0].shape == (96, 8, 56, 56)  # the patch embedding: a Conv3d, [C,T,H,W]
    with pytest.raises(InputError, match=r"failed on an input of shape \(1, 3, 16, 112, 112\)") as error:
        inspector.logits(torch.randn(3, 16, 112, 112))  # its position embedding fixes the clip size
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((8, 32, 32, 3), np.uint8), "takes 16: pass 16 frames"),
    (torch.zeros(3, 16, 20, 20), "frames are 20×20; this model takes 32×32"),
    (np.zeros((16, 32, 32, 2), np.uint8), "2 channels"),
    (torch.zeros(2, 16, 32, 32), r"takes one clip as \[3,T,H,W\]"),
    (np.zeros((32, 32, 3), np.uint8), "got a single image; pass a clip"),
    (PIL.Image.new("RGB", (32, 32)), "got a single image; pass a clip"),
    ([np.zeros((32, 32, 3), np.uint8), np.zeros((30, 32, 3), np.uint8)], "differ in size"),
    (np.full((16, 32, 32, 3), 2.0, np.float32), "ambiguous"),
    (np.zeros((16, 4, 4, 3), np.uint8), "at least 8×8"),
    ("/no/such/clip.mp4", "no video file"),
])
def test_bad_clips_are_one_line_input_errors(bad: object, message: str) -> None:
    from cnnwidgets import zoo

    inspector = zoo.motion_cnn("c3d")
    with pytest.raises(InputError, match=message) as error:
        inspector.preprocess(bad)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("clip", [np.zeros((4, 8, 8, 3), np.uint8), [np.zeros((8, 8, 3), np.uint8)] * 2,
                                  torch.zeros(1, 1, 2, 4, 4), "video.mp4"])
def test_a_clip_given_to_an_image_model_is_refused(tiny, clip: object) -> None:
    with pytest.raises(InputError, match="image model and got a clip"):
        Inspector(tiny).preprocess(clip)


def write_video(path, frames: np.ndarray) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def test_video_file_is_decoded_with_pyav(tmp_path) -> None:
    pytest.importorskip("av")
    frames = np.zeros((6, 32, 48, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(6).reshape(6, 1, 1) * 40  # red rising frame by frame
    write_video(tmp_path / "clip.mp4", frames)
    decoded = read_video(tmp_path / "clip.mp4")
    assert decoded.shape == (6, 32, 48, 3)
    assert np.abs(decoded[..., 0].mean((1, 2)) - frames[..., 0].mean((1, 2))).max() < 8
    inspector = identity_inspector(Tiny3D())
    assert tuple(inspector.preprocess(tmp_path / "clip.mp4").shape) == (1, 3, 6, 32, 48)


def test_video_file_without_a_decoder_names_the_fix(tmp_path, monkeypatch) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"\0" * 64)
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(InputError, match="pip install av"):
        identity_inspector(Tiny3D()).preprocess(tmp_path / "clip.mp4")


def test_clip_preprocess_matches_torchvision_preset() -> None:
    from torchvision.models.video import R3D_18_Weights

    frames = torch.randint(0, 256, (5, 3, 90, 120), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    ours, theirs = ClipPreprocess()(frames), R3D_18_Weights.KINETICS400_V1.transforms()(frames)
    assert ours.shape == theirs.shape == (3, 5, 112, 112)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(ours, F.pad(theirs, (1, 0))[..., :112], atol=1e-3)  # the comparison can fail


def test_s3d_too_small_a_clip_is_a_one_line_error() -> None:
    from cnnwidgets import zoo

    inspector = zoo.torchvision_model("s3d", weights=None, device="cpu")
    with pytest.raises(InputError, match=r"failed on an input of shape \(1, 3, 8, 64, 64\): input image .* smaller than kernel size") as error:
        inspector.logits(torch.randn(3, 8, 64, 64))
    assert "\n" not in str(error.value)
