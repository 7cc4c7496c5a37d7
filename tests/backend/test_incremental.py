"""The incremental occlusion engine equals full forwards on every position, for every kind of layer it handles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnwidgets.backend.cache import Memo
from cnnwidgets.backend.incremental import IncrementalEngine, Patch, UnsupportedModel, _crop, _paste, engine_for, verify
from cnnwidgets.zoo.efficientnet_lite0 import Conv2dSame

from tests.conftest import assert_same_state, hooks_left, model_state


class Zoo(nn.Module):
    """Every op kind the engine treats specially: paddings (regular, TF-same), strides, dilation, depthwise,
    1×1 stride-2 (pixels no window reads), max pool with padding and ceil mode, average pool, batch norm,
    residual adds of differently grown boxes, an SE-style product with a pooled vector, global pooling and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = Conv2dSame(3, 8, 3, 2, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.dw = nn.Conv2d(8, 8, 5, padding=2, groups=8)
        self.dilated = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
        self.down = nn.Conv2d(8, 12, 1, stride=2)
        self.branch = nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.avg = nn.AvgPool2d(2)
        self.se = nn.Linear(12, 12)
        self.head = nn.Linear(12, 5)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.bn(self.stem(x)))
        x = self.pool(x)
        x = x + F.relu6(self.dw(x))
        x = x + self.dilated(x) * 0.5
        x = self.down(x) + F.relu(self.branch(x))
        x = self.avg(x)
        scale = torch.sigmoid(self.se(x.mean((2, 3)))).unsqueeze(-1).unsqueeze(-1)
        return self.head((x * scale).mean((2, 3)))


class Plain(nn.Module):
    """No SE product: everything up to the global pool stays incremental."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True),
            nn.Conv2d(6, 8, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ConvNeXtLike(nn.Module):
    """A ConvNeXt block as timm writes it with linear layers: a depthwise convolution, then a permute to [N,H,W,C],
    a layer norm and two linear layers over the channels with a GELU (all position-local), a per-channel scale, the
    permute back and a residual add; a LayerNorm2d-style norm (permute, norm, permute) before the global pool."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, stride=2)
        self.dw = nn.Conv2d(8, 8, 5, padding=2, groups=8)
        self.norm = nn.LayerNorm(8)
        self.up = nn.Linear(8, 16)
        self.down = nn.Linear(16, 8)
        self.gamma = nn.Parameter(torch.rand(8) + 0.5)
        self.pre_head = nn.LayerNorm(8)
        self.conv = nn.Conv2d(8, 6, 3, padding=1)
        self.head = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.down(F.gelu(self.up(self.norm(y)))) * self.gamma
        x = x + y.permute(0, 3, 1, 2)
        x = self.pre_head(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.head(F.relu(self.conv(x)).mean((2, 3)))


def brute_force(model: nn.Module, x: torch.Tensor, boxes, fill: torch.Tensor) -> torch.Tensor:
    batch = x.expand(len(boxes), -1, -1, -1).clone()
    for n, (y0, x0, y1, x1) in enumerate(boxes):
        batch[n, :, y0:y1, x0:x1] = fill[0, :, y0:y1, x0:x1]
    with torch.inference_mode():
        return model.eval()(batch)


def all_boxes(height: int, width: int, patch: int, stride: int, overhang: bool):
    """Every position of a grid; with `overhang`, squares that start in the image and are clipped at its border."""
    last_y = height - 1 if overhang else height - patch
    last_x = width - 1 if overhang else width - patch
    return [(y, x, min(y + patch, height), min(x + patch, width))
            for y in range(0, last_y + 1, stride) for x in range(0, last_x + 1, stride)]


@pytest.mark.parametrize("net", [Zoo, Plain, ConvNeXtLike])
@pytest.mark.parametrize(("patch", "stride", "overhang"), [(6, 2, False), (5, 3, True), (1, 4, True), (19, 7, True)])
def test_every_position_equals_full_forwards(net, patch, stride, overhang):
    torch.manual_seed(0)
    model = net().eval()
    x = torch.randn(1, 3, 21, 26)
    engine = IncrementalEngine(model, x)
    engine.set_image(x)
    fill = torch.randn_like(x)
    boxes = all_boxes(21, 26, patch, stride, overhang)
    expected = brute_force(model, x, boxes, fill)
    for batch_size in (1, 7):
        got = torch.cat([engine.logits(boxes[i:i + batch_size], fill) for i in range(0, len(boxes), batch_size)])
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_random_boxes_and_a_box_covering_everything():
    torch.manual_seed(1)
    model = Zoo().eval()
    x = torch.randn(1, 3, 32, 30)
    engine = engine_for(Memo(model, 0), x)
    engine.set_image(x)
    generator = torch.Generator().manual_seed(2)
    boxes = []
    for _ in range(40):
        y0, x0 = (int(torch.randint(0, n - 1, (1,), generator=generator)) for n in (32, 30))
        y1 = int(torch.randint(y0 + 1, 33, (1,), generator=generator))
        x1 = int(torch.randint(x0 + 1, 31, (1,), generator=generator))
        boxes.append((y0, x0, y1, x1))
    boxes.append((0, 0, 32, 30))
    fill = torch.zeros_like(x)
    torch.testing.assert_close(engine.logits(boxes, fill), brute_force(model, x, boxes, fill), atol=1e-5, rtol=1e-5)


def test_windows_gathered_and_patches_written_at_once_equal_one_by_one():
    """`_crop` and `_paste` index every position's pixels at once; the reference slices one position at a time,
    with offsets hanging over every edge and patches in either memory layout."""
    generator = np.random.default_rng(0)
    for case in range(60):
        channels, height, width, count = int(generator.choice([1, 3, 16])), *generator.integers(3, 20, 2), int(generator.integers(2, 9))
        h, w = int(generator.integers(1, height + 1)), int(generator.integers(1, width + 1))
        source = torch.randn(1, channels, height, width).contiguous(memory_format=torch.channels_last)
        ys, xs = generator.integers(0, height - h + 1, count), generator.integers(0, width - w + 1, count)
        crops = _crop(source, ys, xs, h, w)
        assert crops.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(crops, torch.stack([source[0, :, y:y + h, x:x + w] for y, x in zip(ys, xs)]))

        data = torch.randn(count, channels, h, w)
        data = data.contiguous(memory_format=torch.channels_last) if case % 2 else data
        target = torch.randn(count, channels, height, width).contiguous(memory_format=torch.channels_last)
        dy, dx = generator.integers(-h, height + 1, count), generator.integers(-w, width + 1, count)
        expected = target.clone()
        for b, (y, x) in enumerate(zip(dy.tolist(), dx.tolist())):
            top, left, bottom, right = max(y, 0), max(x, 0), min(y + h, height), min(x + w, width)
            if bottom > top and right > left:
                expected[b, :, top:bottom, left:right] = data[b, :, top - y:bottom - y, left - x:right - x]
        assert torch.equal(_paste(target, Patch(source, ys, xs, data), dy, dx), expected)


class SharedMaps(nn.Module):
    """Maps read by one op and maps read by two (an op written in place over them would change what the other reads),
    and zero pads: the same on both sides before a convolution (the convolution pads instead), one-sided (TF-"same"
    at stride 2), and one read by two convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 6, 3)
        self.c = nn.Conv2d(6, 6, 3, stride=2)
        self.e = nn.Conv2d(6, 6, 3)
        self.f = nn.Conv2d(6, 6, 3, dilation=1)
        self.d = nn.Conv2d(6, 6, 1)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x)
        x = x + F.relu(x)  # the convolution's output has two readers
        x = F.relu(self.b(F.pad(x, (1, 1, 1, 1))))
        x = torch.sigmoid(self.c(F.pad(x, (0, 1, 0, 1)))) * 2
        padded = F.pad(x, (1, 1, 1, 1))
        x = self.e(padded) + self.f(padded)
        return self.head(F.relu(self.d(x)).mean((2, 3)))


def test_ops_written_in_place_and_pads_left_to_the_convolution_change_no_value():
    torch.manual_seed(3)
    model = SharedMaps().eval()
    x = torch.randn(1, 3, 23, 19)
    engine = IncrementalEngine(model, x)
    # in place: the ReLU after b, the sigmoid and the product after c, the sum of e and f, the ReLU after d; not the
    # ReLU and the sum that read a's output. Only the symmetric pad read by one convolution is left to it.
    assert sorted(str(node.target) for node in engine._in_place) == [
        "aten.add.Tensor", "aten.mul.Tensor", "aten.relu.default", "aten.relu.default", "aten.sigmoid.default"]
    assert list(engine._absorbed_pads.values()) == [(1, 1)]
    engine.set_image(x)
    kept = {node: value.clone() for node, value in engine._full.items() if isinstance(value, torch.Tensor)}
    fill = torch.randn_like(x)
    boxes = all_boxes(23, 19, 7, 3, overhang=True) + [(0, 0, 23, 19)]  # small boxes stay patches, large ones go dense
    expected = brute_force(model, x, boxes, fill)
    for _ in range(2):  # the same answer twice: nothing the second call reads was written over by the first
        got = torch.cat([engine.logits(boxes[i:i + 5], fill) for i in range(0, len(boxes), 5)])
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert {"Patch", "Dense", "Unpadded"} <= set(engine.kinds.values())
    for node, value in kept.items():
        assert torch.equal(engine._full[node], value), node.name


def test_efficientnet_lite0_positions_including_borders(lite0, cat):
    x = lite0.preprocess(cat)
    engine = engine_for(lite0.memo, x)
    engine.set_image(x)
    boxes = [(0, 0, 32, 32), (192, 192, 224, 224), (0, 184, 40, 224), (96, 100, 128, 132), (200, 0, 224, 48), (13, 77, 14, 78)]
    fill = torch.zeros_like(x)
    got = engine.logits(boxes, fill)
    expected = brute_force(lite0.model, x, boxes, fill)
    torch.testing.assert_close(got.softmax(-1), expected.softmax(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)


def test_resnet18_random_weights_positions():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(1, 3, 96, 96)
    engine = engine_for(Memo(model, 0), x)
    engine.set_image(x)
    boxes = [(0, 0, 24, 24), (72, 72, 96, 96), (40, 8, 64, 40), (0, 80, 96, 96)]
    fill = torch.zeros_like(x)
    torch.testing.assert_close(engine.logits(boxes, fill), brute_force(model, x, boxes, fill), atol=1e-4, rtol=1e-5)


def test_the_model_is_untouched_and_parameters_are_shared_not_copied():
    torch.manual_seed(0)
    model = Zoo()
    model.train()  # a model left in training mode stays in training mode
    before = model_state(model)
    x = torch.randn(1, 3, 20, 20)
    engine = IncrementalEngine(model, x)
    engine.set_image(x)
    engine.logits([(2, 2, 9, 9)], torch.zeros_like(x))
    assert_same_state(before, model_state(model))
    assert hooks_left(model) == 0
    params = {p.data_ptr() for p in model.parameters()}
    traced = {t.data_ptr() for t in engine.graph.parameters()} | {
        getattr(engine.graph, n.target).data_ptr() for n in engine.nodes if n.op == "get_attr"}
    assert traced <= params | {b.data_ptr() for b in model.buffers()}


def test_the_cache_notices_changed_weights():
    torch.manual_seed(0)
    model = Plain().eval()
    x = torch.randn(1, 3, 16, 16)
    memo = Memo(model, 0)
    first = engine_for(memo, x)
    assert engine_for(memo, x) is first
    with torch.no_grad():
        model.features[0].weight.mul_(2)
    second = engine_for(memo, x)
    assert second is not first
    second.set_image(x)
    fill = torch.zeros_like(x)
    torch.testing.assert_close(second.logits([(3, 3, 8, 8)], fill), brute_force(model, x, [(3, 3, 8, 8)], fill), atol=1e-5, rtol=1e-5)


def test_verify_rejects_an_engine_that_disagrees(monkeypatch):
    torch.manual_seed(0)
    model = Plain().eval()
    x = torch.randn(1, 3, 16, 16)
    engine = IncrementalEngine(model, x)
    monkeypatch.setattr(IncrementalEngine, "logits", lambda self, boxes, fill: torch.zeros(len(boxes), 4))
    with pytest.raises(UnsupportedModel, match="differs"):
        verify(engine, model, x)


def test_convolutions_stay_incremental_until_global_ops():
    torch.manual_seed(0)
    model = Zoo().eval()
    x = torch.randn(1, 3, 40, 40)
    engine = IncrementalEngine(model, x)
    engine.set_image(x)
    engine.logits([(4, 4, 8, 8)], torch.zeros_like(x))
    convolutions = [name for name in engine.kinds if name.startswith("convolution")]
    assert len(convolutions) == 5
    assert all(engine.kinds[name] == "Patch" for name in convolutions), engine.kinds
    assert engine.kinds["mean"] == "Dense"


def test_layer_norms_and_linear_layers_over_channels_stay_incremental():
    torch.manual_seed(0)
    model = ConvNeXtLike().eval()
    x = torch.randn(1, 3, 40, 40)
    engine = IncrementalEngine(model, x)
    engine.set_image(x)
    fill = torch.zeros_like(x)
    boxes = [(4, 4, 8, 8), (30, 2, 36, 10)]
    torch.testing.assert_close(engine.logits(boxes, fill), brute_force(model, x, boxes, fill), atol=1e-5, rtol=1e-5)
    kinds = [engine.kinds[node.name] for node in engine.nodes if node.target in (
        torch.ops.aten.native_layer_norm.default, torch.ops.aten.mm.default, torch.ops.aten.gelu.default)]
    assert len(kinds) == 5
    assert set(kinds) <= {"Many", "Permuted"}, kinds  # a patch, not the full map (Many: the layer norm's outputs)
    assert engine.kinds["convolution_2"] == "Patch"  # the convolution after the permuted norms still sees a patch


def test_timm_convnext_positions_and_saving():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("convnext_atto", pretrained=False).eval()
    x = torch.randn(1, 3, 64, 64)
    engine = engine_for(Memo(model, 0), x)  # verified against full forwards
    assert engine.saving > 0.03  # 0.041; 0.008 while layer norms on permuted maps ran in full
    engine.set_image(x)
    boxes = [(0, 0, 16, 16), (48, 48, 64, 64), (20, 30, 36, 46)]
    fill = torch.zeros_like(x)
    torch.testing.assert_close(engine.logits(boxes, fill), brute_force(model, x, boxes, fill), atol=1e-4, rtol=1e-5)


def test_the_engine_is_traced_only_once_it_pays(monkeypatch):
    # a call of few positions runs full forwards and traces nothing; positions asked on the same weights add up,
    # and the engine is built once they reach ENGINE_PAYS_AFTER; changed weights start the count again
    from cnnwidgets.backend import incremental

    traced = []
    monkeypatch.setattr(incremental.IncrementalEngine, "__init__",
                        lambda self, model, example, _init=IncrementalEngine.__init__: traced.append(1) or _init(self, model, example))
    torch.manual_seed(0)
    model = Plain().eval()
    x = torch.randn(1, 3, 16, 16)
    step = incremental.ENGINE_PAYS_AFTER // 2
    memo = Memo(model, 0)
    assert engine_for(memo, x, positions=step) is None and not traced
    assert engine_for(memo, x, positions=step - 1) is None and not traced
    engine = engine_for(memo, x, positions=1)
    assert isinstance(engine, IncrementalEngine) and len(traced) == 1
    assert engine_for(memo, x, positions=1) is engine and len(traced) == 1
    with torch.no_grad():
        model.features[0].weight.mul_(2)
    assert engine_for(memo, x, positions=step) is None and len(traced) == 1


class GatedStem(nn.Module):
    """A squeeze-excitation gate (as modules) right after the stem, and a per-channel layer scale ([1,C,1,1], a
    constant, not a gate) after the body."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.excite = nn.Conv2d(8, 8, 1)
        self.body = nn.Conv2d(8, 32, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(1, 32, 1, 1))
        self.head = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = x * torch.sigmoid(self.excite(self.squeeze(x)))
        x = torch.relu(self.body(x)) * self.scale
        return self.head(x.mean((2, 3)))


class LayerScaled(GatedStem):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((torch.relu(self.body(torch.relu(self.stem(x)))) * self.scale).mean((2, 3)))


def test_local_share_is_the_convolution_work_before_the_first_map_wide_gate():
    # per output pixel: stem 8·(3·9) = 216 multiply-adds, the 1×1 excitation 8·8 = 64 on one pixel, body 32·(8·9) = 2304
    from cnnwidgets.backend.incremental import local_share

    x = torch.randn(1, 3, 10, 10)
    gated = local_share(Memo(GatedStem().eval(), 0), x)
    assert gated == pytest.approx((216 * 100 + 64) / (216 * 100 + 64 + 2304 * 100))
    assert local_share(Memo(LayerScaled().eval(), 0), x) == 1.0  # a constant per channel spreads nothing of the image
    assert local_share(Memo(Zoo().eval(), 0), torch.randn(1, 3, 32, 32)) > 0.9  # its gate comes after all convolutions
    training = GatedStem().train()  # the watched forward leaves the user's model as it came
    before = model_state(training)
    assert local_share(Memo(training, 0), x) == gated  # shapes decide the share, not weights
    assert hooks_left(training) == 0 and training.training
    assert_same_state(before, model_state(training))

    class OneImageOnly(GatedStem):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if len(x) != 1:
                raise RuntimeError("one image at a time")
            return super().forward(x)

    assert local_share(Memo(OneImageOnly().eval(), 0), x) == 1.0  # no bound known: tracing and `verify` decide


def test_models_whose_first_gate_comes_early_are_never_traced_by_auto(monkeypatch):
    # timm efficientnet_b0 has a squeeze-excitation gate in its first block: the engine could save at most 4 % of a
    # forward (it saved 3 %), so tracing it only cost a first call time; method="incremental" still traces it
    import timm

    from cnnwidgets.backend import incremental

    traced = []
    monkeypatch.setattr(incremental.IncrementalEngine, "__init__",
                        lambda self, model, example, _init=IncrementalEngine.__init__: traced.append(1) or _init(self, model, example))
    x = torch.randn(1, 3, 16, 16)
    memo = Memo(GatedStem().eval(), 0)
    assert engine_for(memo, x, positions=10 * incremental.ENGINE_PAYS_AFTER) is None and not traced
    assert isinstance(engine_for(memo, x), IncrementalEngine) and len(traced) == 1
    small = torch.randn(1, 3, 64, 64)
    assert incremental.local_share(Memo(timm.create_model("efficientnet_b0", pretrained=False).eval(), 0), small) < incremental.ENGINE_MIN_SAVING
    for name in ("convnext_atto", "resnet18d"):  # layer scale, and no gate at all
        assert incremental.local_share(Memo(timm.create_model(name, pretrained=False).eval(), 0), small) == 1.0


def test_occlusion_traces_the_engine_only_for_grids_where_it_pays(monkeypatch):
    from cnnwidgets import Inspector
    from cnnwidgets.backend import incremental
    from cnnwidgets.methods.occlusion import occlusion

    traced = []
    monkeypatch.setattr(incremental.IncrementalEngine, "__init__",
                        lambda self, model, example, _init=IncrementalEngine.__init__: traced.append(1) or _init(self, model, example))
    torch.manual_seed(0)
    inspector = Inspector(Plain().eval(), transform=lambda image: image)
    x = torch.randn(1, 3, 16, 16)
    small = occlusion(inspector, x, target=1, patch=4, stride=4, progress=False)  # 16 positions: full forwards
    assert not traced
    monkeypatch.setattr(incremental, "ENGINE_PAYS_AFTER", 100)
    large = occlusion(inspector, x, target=1, patch=4, stride=1, progress=False)  # 169 positions: traced
    assert len(traced) == 1
    torch.testing.assert_close(large[::4, ::4], small, atol=1e-6, rtol=1e-5)
