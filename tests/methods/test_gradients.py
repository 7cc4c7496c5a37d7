"""Data-gradient methods: exact values on hand-built nets, agreement with Captum, and the user's model untouched."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnwidgets import Inspector, InputError
from cnnwidgets.methods import gradients as G
from cnnwidgets.methods.reduce import display_map, normalize_map, reduce_map, to_uint8

from tests.conftest import assert_same_state, hooks_left, model_state

GRADIENT_METHODS = [G.saliency, G.guided_backprop, G.deconvnet, G.smoothgrad, G.integrated_gradients]


def tiny_inspector(model: nn.Module, labels=None) -> Inspector:
    return Inspector(model, labels=labels)


# ---------------------------------------------------------------------------------------- exact values on paper


def test_saliency_on_the_tiny_cnn_is_the_max_windows_filter(tiny, tiny_input):
    # conv channel 1 sums 2×2 windows minus 10: 16i + 4j; the max-pool keeps window (1,1) = 20, and class 1 reads it
    inspector = tiny_inspector(tiny)
    expected = torch.zeros(1, 4, 4)
    expected[0, 1:3, 1:3] = 1
    assert torch.equal(G.saliency(inspector, tiny_input, 1), expected)
    assert torch.equal(G.saliency(inspector, tiny_input), expected)  # top class: scores [0, 20, 20] -> class 1
    assert torch.equal(G.guided_backprop(inspector, tiny_input, 1), expected)
    assert torch.equal(G.deconvnet(inspector, tiny_input, 1), expected)


def test_deconvnet_ignores_the_forward_mask_and_guided_does_not(tiny, tiny_input):
    # conv channel 0 is x[i,j] − x[i+1,j+1] = −5 everywhere: ReLU closes it, so class 0 has no gradient…
    inspector = tiny_inspector(tiny)
    assert torch.equal(G.saliency(inspector, tiny_input, 0), torch.zeros(1, 4, 4))
    assert torch.equal(G.guided_backprop(inspector, tiny_input, 0), torch.zeros(1, 4, 4))
    # …but deconvnet passes relu(gradient) through the closed ReLU: the pool routes it to window (0,0), whose
    # filter [[1,0],[0,-1]] puts +1 at x[0,0] and −1 at x[1,1]
    expected = torch.zeros(1, 4, 4)
    expected[0, 0, 0], expected[0, 1, 1] = 1, -1
    assert torch.equal(G.deconvnet(inspector, tiny_input, 0), expected)


class TwoRelus(nn.Module):
    """Two pixels: h1 = relu(x), h2 = relu(3 − h1), score = h2₀ + h2₁ (1×1 convs, weights by hand)."""

    def __init__(self, functional: bool = False, inplace: bool = False) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1)
        self.relu1, self.relu2 = nn.ReLU(inplace=inplace), nn.ReLU(inplace=inplace)
        self.fc = nn.Linear(2, 1)
        self.functional = functional
        with torch.no_grad():
            self.conv1.weight.fill_(1), self.conv1.bias.zero_()
            self.conv2.weight.fill_(-1), self.conv2.bias.fill_(3)
            self.fc.weight.fill_(1), self.fc.bias.zero_()

    def forward(self, x):
        if self.functional:
            h = F.relu(self.conv2(F.relu(self.conv1(x))))
        else:
            h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(h.flatten(1))


TWO_PIXELS = torch.tensor([[[[2.0, -1.0]]]])


@pytest.mark.parametrize("variant", [{}, {"functional": True}, {"inplace": True}], ids=["modules", "functional", "inplace"])
def test_guided_backprop_drops_negative_gradients_by_hand(variant):
    # d score/d h2 = [1, 1] (both open); d/d h1 = −[1, 1]; relu1 is open at x₀ = 2 only:
    # saliency = [−1, 0]; guided backprop clamps −1 to 0 at relu1: [0, 0]; deconvnet too (relu of −1)
    inspector = tiny_inspector(TwoRelus(**variant))
    assert G.saliency(inspector, TWO_PIXELS, 0).tolist() == [[[-1.0, 0.0]]]
    assert G.guided_backprop(inspector, TWO_PIXELS, 0).abs().sum() == 0
    assert G.deconvnet(inspector, TWO_PIXELS, 0).abs().sum() == 0
    assert hooks_left(inspector.model) == 0


class Capped(nn.Module):
    """Three pixels through a 1×1 conv (weight 1), ReLU6, and a sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.act, self.fc = nn.Conv2d(1, 1, 1), nn.ReLU6(), nn.Linear(3, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1), self.conv.bias.zero_(), self.fc.weight.fill_(1), self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).flatten(1))


def test_relu6_passes_gradient_only_inside_zero_to_six():
    # the rule used for ReLU6: pass where the forward input is in (0, 6) and the gradient is positive
    inspector = tiny_inspector(Capped())
    x = torch.tensor([[[[7.0, 3.0, -1.0]]]])
    assert G.guided_backprop(inspector, x, 0).tolist() == [[[0.0, 1.0, 0.0]]]
    assert G.deconvnet(inspector, x, 0).tolist() == [[[1.0, 1.0, 1.0]]]  # deconvnet ignores the mask


class Reused(nn.Module):
    """conv → relu → conv → the same relu → pool → fc, like a torchvision BasicBlock's `self.relu`."""

    def __init__(self, distinct: bool = False, inplace: bool = True) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
        self.relu = nn.ReLU(inplace=inplace)
        self.relu_b = nn.ReLU(inplace=inplace) if distinct else self.relu
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.relu_b(self.conv2(self.relu(self.conv1(x)))).mean((2, 3)))


def test_a_relu_reused_twice_uses_each_calls_own_mask():
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    reused = tiny_inspector(Reused())
    distinct = Reused(distinct=True)
    distinct.load_state_dict(reused.model.state_dict())
    twin = tiny_inspector(distinct)
    for method in (G.guided_backprop, G.deconvnet, G.saliency):
        for target in range(4):
            torch.testing.assert_close(method(reused, x, target), method(twin, x, target), rtol=0, atol=0)
    from captum.attr import GuidedBackprop

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = GuidedBackprop(copy.deepcopy(distinct)).attribute(x.clone().requires_grad_(), target=2)[0]
    torch.testing.assert_close(G.guided_backprop(reused, x, 2), expected)


# ---------------------------------------------------------------------------------------- agreement with Captum


@pytest.fixture(scope="module")
def vgg():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.vgg11(weights=None).eval()  # nn.ReLU(inplace=True) everywhere
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return Inspector(model, labels=[f"class {i}" for i in range(1000)]), image


def _captum(cls, model, image, target, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(copy.deepcopy(model)).attribute(image.clone().requires_grad_(), target=target, **options)[0].detach()


@pytest.mark.parametrize("ours, theirs, options", [
    (G.saliency, "Saliency", {"abs": False}),
    (G.guided_backprop, "GuidedBackprop", {}),
    (G.deconvnet, "Deconvolution", {}),
], ids=["saliency", "guided_backprop", "deconvnet"])
def test_matches_captum_on_vgg11(vgg, ours, theirs, options):
    import captum.attr

    inspector, image = vgg
    target = int(inspector.logits(image).argmax())
    expected = _captum(getattr(captum.attr, theirs), inspector.model, image, target, **options)
    before = model_state(inspector.model)
    got = ours(inspector, image, target)
    assert got.abs().max() > 0
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    assert_same_state(before, model_state(inspector.model))
    assert hooks_left(inspector.model) == 0
    assert all(p.grad is None for p in inspector.model.parameters())


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
def test_integrated_gradients_matches_captum_on_vgg11(vgg, method):
    from captum.attr import IntegratedGradients

    inspector, image = vgg
    target = 7
    expected = _captum(IntegratedGradients, inspector.model, image, target, n_steps=8, method=method)
    got = G.integrated_gradients(inspector, image, target, steps=8, method=method)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_integrated_gradients_completeness_and_baselines(tiny, tiny_input):
    # the model is piecewise linear in x along the path only if the ReLU pattern holds; check the general
    # identity Σ attribution ≈ f(x) − f(baseline) with many steps, and that the baseline is honoured
    inspector = tiny_inspector(tiny)
    attribution = G.integrated_gradients(inspector, tiny_input, 1, steps=64)
    gap = inspector.logits(tiny_input)[1] - inspector.logits(torch.zeros_like(tiny_input))[1]
    assert float(attribution.sum()) == pytest.approx(float(gap), rel=2e-2)
    assert G.integrated_gradients(inspector, tiny_input, 1, baseline=tiny_input).abs().max() == 0
    with pytest.raises(InputError, match="baseline"):
        G.integrated_gradients(inspector, tiny_input, 1, baseline=torch.zeros(2, 2))
    with pytest.raises(InputError, match="integration method"):
        G.integrated_gradients(inspector, tiny_input, 1, method="simpson")


def test_smoothgrad_is_seeded_batched_and_zero_noise_is_saliency(tiny, tiny_input):
    inspector = tiny_inspector(tiny)
    torch.testing.assert_close(G.smoothgrad(inspector, tiny_input, 1, noise=0.0, samples=5), G.saliency(inspector, tiny_input, 1))
    state = torch.random.get_rng_state()
    first = G.smoothgrad(inspector, tiny_input, 1, samples=9, batch_size=2)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is not used
    torch.testing.assert_close(first, G.smoothgrad(inspector, tiny_input, 1, samples=9, batch_size=9))
    assert not torch.equal(first, G.smoothgrad(inspector, tiny_input, 1, samples=9, seed=1))


# ---------------------------------------------------------------------------------------- the user's model


@pytest.mark.parametrize("method", GRADIENT_METHODS, ids=lambda m: m.__name__)
def test_the_model_is_left_as_it_was(method):
    model = Reused(inplace=True)
    model.train()  # a model left in training mode stays so; the call itself runs in eval mode
    model.conv1.weight.requires_grad_(False)  # and requires_grad flags stay as they are
    inspector = tiny_inspector(model)
    x = torch.randn(1, 3, 8, 8)
    before = model_state(model)
    method(inspector, x, 1)
    method(inspector, x, None)
    assert_same_state(before, model_state(model))
    assert hooks_left(model) == 0
    assert all(p.grad is None for p in model.parameters())


class Swish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.act, self.relu, self.fc = nn.Conv2d(1, 2, 1), nn.SiLU(), nn.ReLU(), nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(self.relu(self.act(self.conv(x))).mean((2, 3)))


class NoRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 2, 1), nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("method", [G.guided_backprop, G.deconvnet], ids=lambda m: m.__name__)
def test_models_whose_relus_cannot_be_hooked_are_refused(method):
    for model, message in ((Swish(), r"also runs SiLU"), (NoRelu(), r"ran none")):
        inspector = tiny_inspector(model)
        with pytest.raises(InputError, match=message):
            method(inspector, torch.randn(1, 1, 4, 4), 0)
        assert hooks_left(model) == 0
    assert G.saliency(tiny_inspector(Swish()), torch.randn(1, 1, 4, 4), 0).shape == (1, 4, 4)


def test_bad_targets_say_what_to_pass(tiny, tiny_input):
    inspector = tiny_inspector(tiny, labels=["cat", "dog", "tabby cat"])
    with pytest.raises(InputError, match="out of range; pick 0..2"):
        G.saliency(inspector, tiny_input, 3)
    with pytest.raises(InputError, match="did you mean 'tabby cat'"):
        G.guided_backprop(inspector, tiny_input, "taby cat")
    assert torch.equal(G.saliency(inspector, tiny_input, "dog"), G.saliency(inspector, tiny_input, 1))
    unlabelled = tiny_inspector(TinyCopy(tiny))
    with pytest.raises(InputError, match="out of range"):
        G.saliency(unlabelled, tiny_input, 5)
    assert hooks_left(tiny) == 0


def TinyCopy(model):  # noqa: N802
    return copy.deepcopy(model)


# ---------------------------------------------------------------------------------------- the reducer


def test_reducer_abs_max_and_positive_part():
    raw = torch.tensor([[[1.0, -4.0]], [[-3.0, 2.0]], [[0.5, 0.0]]])  # [3,1,2]
    assert reduce_map(raw, "abs").tolist() == [[3.0, 4.0]]
    assert reduce_map(raw, "positive").tolist() == [[1.0, 2.0]]
    assert reduce_map(torch.tensor([[-1.0, 2.0]]), "positive").tolist() == [[0.0, 2.0]]  # CAMs pass through
    shown = display_map(torch.arange(1000.0).view(1, 10, 100), percentile=50)
    assert shown.max() == 1 and shown[0, 0] == 0 and 0.0 < float(shown[0, 1]) < 0.01
    assert normalize_map(torch.zeros(3, 3)).abs().sum() == 0
    assert to_uint8(torch.tensor([0.0, 0.5, 1.0])).tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match="how must be"):
        reduce_map(raw, "square")


# ---------------------------------------------------------------------------------------- class switches and speed


def test_a_class_switch_reuses_the_forward_and_gives_each_class_its_own_gradient(lite0, cat, monkeypatch):
    from cnnwidgets.backend import gradients as backend_gradients

    batch = lite0.preprocess(cat)
    first, second = lite0.logits(batch).topk(2).indices.tolist()
    G.saliency(lite0, batch, first)
    forwards = []
    built = backend_gradients.InputForward.__init__
    monkeypatch.setattr(backend_gradients.InputForward, "__init__", lambda self, *a, **k: (forwards.append(1), built(self, *a, **k))[1])
    ours = {target: G.saliency(lite0, batch, target) for target in (second, first)}
    assert forwards == []  # both classes came from the kept graph
    model = lite0.model
    with torch.enable_grad():
        for target in (first, second):  # the plain gradient through the user's own model (batch norms not folded)
            x = batch.clone().requires_grad_(True)
            with torch.inference_mode(False):
                model.eval()
                (expected,) = torch.autograd.grad(model(x)[0, target], x)
            # folding changes float rounding, which can flip the odd ReLU6 sitting exactly at 0 or 6; everywhere
            # else the two agree to float precision
            scale = float(expected.abs().max())
            error = (ours[target] - expected[0]).abs()
            assert float((error > 1e-5 * scale).float().mean()) < 1e-2
            assert float(error.max()) < 1e-2 * scale
    assert not torch.allclose(ours[first], ours[second])
    G.guided_backprop(lite0, batch, first)  # another rule is another graph
    assert forwards == [1]


def test_the_same_call_gives_the_same_map_whatever_ran_before():
    # resnet18d has batch norms to fold; a map must not depend on whether an earlier call made the scoring copy
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet18d", pretrained=False, num_classes=10)
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    first = Inspector(model)
    fresh = {method: method(first, image, 3) for method in (G.saliency, G.smoothgrad)}
    later = Inspector(model)
    later.batch_logits(image.expand(16, -1, -1, -1))  # enough images to make the folded scoring copy
    later.predict(image)
    assert later.scoring_model(image) is not model  # the copy exists now, and gradients still do not use it
    for method, expected in fresh.items():
        assert torch.equal(method(later, image, 3), expected), method.__name__
    assert torch.equal(G.saliency(first, image, 3), fresh[G.saliency])
