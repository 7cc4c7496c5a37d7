"""The index on clip datasets (video models): top clips per channel with (t, row, col) positions equal a brute force,
filmstrip thumbnails, codes, exact merge and save/load; channels-last and token layers indexed as the maps users see;
receptive fields in space-time equal a hand computation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnwidgets import Inspector
from cnnwidgets.backend.clip_field import clip_field
from cnnwidgets.backend.clips import ClipPreprocess
from cnnwidgets.backend.index import Index, build_index
from cnnwidgets.backend.index.builder import filmstrip_frames
from cnnwidgets.errors import InputError
from tests.backend.test_index import assert_same_index
from tests.conftest import assert_same_state, hooks_left, model_state

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = ["1", "4"]


def tiny_c3d(seed: int = 0) -> nn.Sequential:
    """Integer weights on integer clips: every activation is exact, whatever the batch or summation order."""
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2), nn.Conv3d(4, 5, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(5, 3))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randint(-3, 4, parameter.shape, generator=generator).float())
    return model


def clip_inspector(model: nn.Module) -> Inspector:
    return Inspector(model, ClipPreprocess(resize=None, crop=None, mean=(0.0,) * 3, std=(1.0,) * 3))


@pytest.fixture
def c3d() -> Inspector:
    return clip_inspector(tiny_c3d())


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    generator = torch.Generator().manual_seed(2)
    x = torch.randint(0, 4, (11, 3, 6, 16, 16), generator=generator).float()  # [N,C,T,H,W] preprocessed clips
    x[7] = x[2]  # a duplicate: the tie goes to the lower id
    return x


def brute_force(inspector: Inspector, clips: torch.Tensor, layer: str, k: int):
    maps = torch.stack([inspector.activations(clip, layer) for clip in clips])  # [N, C, T, H, W]
    values, where = maps.flatten(2).max(2)
    _, _, _length, height, width = maps.shape
    expected = []
    for channel in range(maps.shape[1]):
        order = sorted(range(len(clips)), key=lambda i: (-float(values[i, channel]), i))[:k]
        expected.append([(i, float(values[i, channel]),
                          (int(where[i, channel]) // (height * width), int(where[i, channel]) // width % height, int(where[i, channel]) % width))
                         for i in order])
    return expected


def test_top_clips_with_space_time_positions_equal_brute_force(c3d, clips):
    state = model_state(c3d.model)
    index = build_index(c3d, clips, LAYERS, k=4, batch_size=3, thumbnails=8, progress=False)
    assert index.is_video and index.input_shape == (3, 6, 16, 16)
    assert index.layer_shape("1") == (4, 6, 16, 16) and index.layer_shape("4") == (5, 3, 8, 8)
    for layer in LAYERS:
        for channel, wanted in enumerate(brute_force(c3d, clips, layer, 4)):
            assert index.top(layer, channel) == wanted, (layer, channel)
    assert_same_state(state, model_state(c3d.model))
    assert hooks_left(c3d.model) == 0


def test_clip_index_codes_thumbnails_merge_and_save_are_exact(c3d, clips, tmp_path):
    index = build_index(c3d, clips, LAYERS, k=4, batch_size=4, thumbnails=8, codes="4", progress=False)
    with torch.inference_mode():
        expected_codes = torch.stack([c3d.activations(clip, "4").mean((1, 2, 3)) for clip in clips])
    assert torch.equal(index.codes, expected_codes)
    frames = filmstrip_frames(6)
    assert frames == [0, 2, 3, 5]
    assert index.thumbnails.shape == (11, 4, 8, 8, 3) and index.thumbnails.dtype == torch.uint8
    # a filmstrip frame is the frame shown at full size, shrunk: its mean colour stays within rounding
    pictures = build_index(c3d, clips[:3] / 4, ["1"], k=1, thumbnails=8, codes=None, progress=False)
    full = torch.from_numpy(pictures.image(2)).float()
    assert full.shape == (6, 16, 16, 3)
    assert torch.allclose(pictures.thumbnails[2].float().mean((1, 2)), full[frames].mean((1, 2)), atol=1.0)
    shards = [build_index(c3d, clips[:5], LAYERS, k=4, thumbnails=8, codes="4", progress=False),
              build_index(c3d, clips[5:], LAYERS, k=4, thumbnails=8, codes="4", offset=5, progress=False)]
    assert_same_index(Index.merge(shards[::-1]), index)
    index.save(tmp_path / "clips.idx")
    loaded = Index.load(tmp_path / "clips.idx", c3d, clips)
    assert_same_index(loaded, index)
    assert loaded.top("4", 1) == index.top("4", 1)


def test_a_clip_of_another_length_in_the_dataset_is_one_input_error(c3d, clips):
    mixed = [clips[0], clips[1, :, :4]]
    with pytest.raises(InputError, match="frames after preprocessing, others 6; pass clips of one length"):
        build_index(c3d, mixed, LAYERS, k=2, progress=False)


def test_the_zoo_clips_index_with_filmstrips_and_codes():
    from cnnwidgets import zoo

    inspector = zoo.motion_cnn("c3d")
    dataset = torch.utils.data.Subset(zoo.motion_clips("test"), range(0, 192, 23))
    index = build_index(inspector, dataset, ["features.conv3.1"], k=3, progress=False)
    assert index.thumbnails.shape == (9, 4, 32, 32, 3)
    assert index.codes.shape == (9, 32) and index.labels.tolist() == [dataset[i][1] for i in range(9)]
    clip_id, value, (t, row, col) = index.top("features.conv3.1", 0)[0]
    assert value == pytest.approx(float(inspector.activations(dataset[clip_id][0], "features.conv3.1")[0, t, row, col]), rel=1e-5)


def test_space_time_receptive_field_equals_the_hand_computation(c3d):
    c3d.preprocess(torch.zeros(3, 8, 16, 16))
    field = clip_field(c3d.model, c3d.layer("4"), (3, 8, 16, 16))
    # conv 3 (pad 1): size 3, start -1; max pool 2: size 4, jump 2; conv 3 (pad 1): size 4 + 2·2 = 8, start -1 - 2 = -3
    for t, row, col in [(0, 0, 0), (1, 2, 3), (3, 7, 7), (2, 4, 0)]:
        assert field.box(t, row, col) == (2 * t - 3, 2 * row - 3, 2 * col - 3, 2 * t + 5, 2 * row + 5, 2 * col + 5)
    assert field.size == (8, 8, 8)
    assert hooks_left(c3d.model) == 0


# --------------------------------------------------------------------------------------- layouts (issue 12)


@pytest.mark.parametrize("name, layer", [("convnext_atto", "stages.1.blocks.0.mlp.act"), ("vit_tiny_patch16_224", "blocks.1")])
def test_channels_last_and_token_layers_are_indexed_as_the_maps_users_see(name, layer):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    kwargs = {"img_size": 32, "patch_size": 8} if name.startswith("vit") else {"conv_mlp": False}  # mlp on [N,H,W,C]
    model = timm.create_model(name, pretrained=False, num_classes=4, **kwargs).eval()
    inspector = Inspector(model)
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(5, 3, 32, 32, generator=generator)
    inspector.preprocess(images[0])
    assert inspector.layer(layer).layout.kind in ("nhwc", "tokens")
    index = build_index(inspector, images, [layer], k=2, progress=False)
    maps = torch.stack([inspector.activations(image, layer) for image in images])  # [N, C, H, W] through the layout
    assert index.layer_shape(layer) == tuple(maps.shape[1:])
    values, where = maps.flatten(2).max(2)
    width = maps.shape[-1]
    for channel in (0, 5, maps.shape[1] - 1):
        order = sorted(range(5), key=lambda i: (-float(values[i, channel]), i))[:2]
        found = index.top(layer, channel)
        assert [entry[0] for entry in found] == order
        for (_image_id, value, (row, col)), i in zip(found, order):
            assert value == pytest.approx(float(values[i, channel]), rel=1e-4, abs=1e-5)
            assert (row, col) == (int(where[i, channel]) // width, int(where[i, channel]) % width)


def test_clips_of_another_frame_size_are_resized_and_a_damaged_clip_index_is_refused(c3d, clips, tmp_path):
    mixed = [clips[0], torch.nn.functional.interpolate(clips[1], size=(20, 20), mode="nearest")]  # [C,T,20,20]
    with pytest.warns(UserWarning, match="mixed sizes; each is resized to 16×16"):
        index = build_index(c3d, mixed, LAYERS, k=2, thumbnails=8, progress=False)
    assert len(index) == 2 and index.layer_shape("4") == (5, 3, 8, 8)
    state = index.state_dict()
    state["top"]["4"]["times"] = state["top"]["4"]["times"] + 3  # frames past the layer's 3
    torch.save(state, tmp_path / "damaged.idx")
    with pytest.raises(InputError, match=r"damaged index .*positions fall outside its 3×8×8 maps"):
        Index.load(tmp_path / "damaged.idx")
