"""CAM methods: exact values on the tiny CNN, agreement with pytorch-grad-cam, layer errors, class switches."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from cnnwidgets import Inspector, InputError, LayerNotFoundError
from cnnwidgets.backend import gradients as backend_gradients
from cnnwidgets.methods import cam as C

from tests.conftest import assert_same_state, hooks_left, model_state

CAMS = [C.grad_cam, C.grad_cam_plus_plus, C.layer_cam, C.score_cam, C.guided_grad_cam]


def test_grad_cam_and_layer_cam_by_hand(tiny, tiny_input):
    # relu output channel 1 is 16i + 4j (channel 0 is closed); class 1 reads its max-pool, the value 20 at (1,1):
    # the gradient is 1 there, so Grad-CAM weighs channel 1 by 1/9 and Layer-CAM keeps only position (1,1)
    inspector = Inspector(tiny)
    inspector.preprocess(tiny_input)  # layers are listed for the input's size
    assert C.default_cam_layer(inspector) == "relu"
    relu1 = torch.tensor([[0.0, 4, 8], [16, 20, 24], [32, 36, 40]])
    torch.testing.assert_close(C.grad_cam(inspector, tiny_input, 1), C.upsample(relu1 / 9, (4, 4)))
    only = torch.zeros(3, 3)
    only[1, 1] = 20
    torch.testing.assert_close(C.layer_cam(inspector, tiny_input, 1), C.upsample(only, (4, 4)))
    # class 0 reads the closed channel: nothing to show
    assert C.grad_cam(inspector, tiny_input, 0).abs().sum() == 0
    assert hooks_left(tiny) == 0


def test_layer_errors_name_the_fix(tiny, tiny_input):
    inspector = Inspector(tiny)
    with pytest.raises(InputError, match=r"'pool' outputs 2×1×1, no spatial map.*'relu'"):
        C.grad_cam(inspector, tiny_input, 1, layer="pool")
    with pytest.raises(InputError, match=r"'fc' has no spatial output"):
        C.score_cam(inspector, tiny_input, 1, layer="fc")
    with pytest.raises(LayerNotFoundError, match="did you mean 'relu'"):
        C.layer_cam(inspector, tiny_input, 1, layer="reluu")
    with pytest.raises(InputError, match="out of range"):
        C.grad_cam(inspector, tiny_input, 3)
    with pytest.raises(InputError, match="out of range"):
        C.score_cam(inspector, tiny_input, 3, progress=False)
    assert hooks_left(tiny) == 0


@pytest.fixture(scope="module")
def resnet():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return Inspector(model, labels=[f"class {i}" for i in range(1000)]), image


def _normalized(cam) -> torch.Tensor:
    cam = torch.as_tensor(cam, dtype=torch.float64)
    cam = cam - cam.min()
    return cam / (cam.max() + 1e-12)


def _correlation(a, b) -> float:
    return float(torch.corrcoef(torch.stack([_normalized(a).flatten(), _normalized(b).flatten()]))[0, 1])


@pytest.mark.parametrize("ours, theirs, layer", [
    (C.grad_cam, "GradCAM", "layer4"),
    (C.grad_cam_plus_plus, "GradCAMPlusPlus", "layer4"),
    (C.layer_cam, "LayerCAM", "layer4"),
    (C.score_cam, "ScoreCAM", "layer2"),
], ids=["grad_cam", "grad_cam_plus_plus", "layer_cam", "score_cam"])
def test_matches_pytorch_grad_cam_on_resnet18(resnet, ours, theirs, layer):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    inspector, image = resnet
    assert C.default_cam_layer(inspector) == "layer4"
    target = int(inspector.logits(image).argmax())
    peer = copy.deepcopy(inspector.model)  # pytorch-grad-cam writes .grad into the model it is given
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        method = getattr(pytorch_grad_cam, theirs)(model=peer, target_layers=[peer.get_submodule(layer)])
        expected = method(input_tensor=image.clone(), targets=[ClassifierOutputTarget(target)])[0]
    before = model_state(inspector.model)
    options = {"progress": False} if ours is C.score_cam else {}
    got = ours(inspector, image, target, layer=layer, **options)
    assert got.shape == (64, 64) and got.min() >= 0 and got.max() > 0
    assert _correlation(got, expected) >= 0.999
    assert_same_state(before, model_state(inspector.model))
    assert hooks_left(inspector.model) == 0
    assert all(p.grad is None for p in inspector.model.parameters())


def test_guided_grad_cam_is_guided_backprop_times_grad_cam(resnet):
    from cnnwidgets.methods.gradients import guided_backprop

    inspector, image = resnet
    got = C.guided_grad_cam(inspector, image, 3)
    torch.testing.assert_close(got, guided_backprop(inspector, image, 3) * C.grad_cam(inspector, image, 3))
    assert got.shape == (3, 64, 64)


def test_a_class_switch_reuses_the_forward(tiny, tiny_input, monkeypatch):
    inspector = Inspector(tiny)
    forwards = []
    handle = tiny.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        for method in (C.grad_cam, C.grad_cam_plus_plus, C.layer_cam):
            method(inspector, tiny_input, 0)
        first = len(forwards)
        for target in (1, 2, 0, 1):
            C.grad_cam(inspector, tiny_input, target)
            C.layer_cam(inspector, tiny_input, target)
        assert len(forwards) == first  # the head's graph is kept: a backward per class, no forward
        C.score_cam(inspector, tiny_input, 1, progress=False)
        first = len(forwards)
        for target in (0, 2, 1):
            C.score_cam(inspector, tiny_input, target, progress=False)
        assert len(forwards) == first  # every class's scores are kept
    finally:
        handle.remove()
    # a changed weight is a new model: nothing stale is reused
    before = C.grad_cam(inspector, tiny_input, 1)
    with torch.no_grad():
        tiny.conv.weight[1] *= 2
    after = C.grad_cam(inspector, tiny_input, 1)
    assert not torch.equal(after, before)
    torch.testing.assert_close(after, C.grad_cam(Inspector(copy.deepcopy(tiny)), tiny_input, 1))


@pytest.mark.parametrize("method", CAMS, ids=lambda m: m.__name__)
def test_the_model_is_left_as_it_was(tiny, tiny_input, method):
    tiny.train()
    inspector = Inspector(tiny)
    before = model_state(tiny)
    options = {"progress": False} if method is C.score_cam else {}
    assert method(inspector, tiny_input, 1, **options).shape[-2:] == (4, 4)
    method(inspector, tiny_input, None, **options)
    assert_same_state(before, model_state(tiny))
    assert hooks_left(tiny) == 0
    assert all(p.grad is None for p in tiny.parameters())


def test_a_layer_forward_before_an_inplace_op_keeps_the_layers_values(tiny, tiny_input):
    # the conv's output goes through an in-place ReLU next; the captured values must not be rectified
    model = copy.deepcopy(tiny)
    model.relu.inplace = True
    inspector = Inspector(model)
    forward = backend_gradients.layer_forward(inspector, inspector.preprocess(tiny_input), "conv")
    assert forward.activation.min() < 0
    torch.testing.assert_close(forward.activation[0], inspector.activations(tiny_input, "conv"))
    torch.testing.assert_close(forward.scores[0], inspector.logits(tiny_input))


def test_score_cam_on_lite0_is_batched_and_cached(lite0, cat):
    scores = C.score_cam_scores(lite0, cat, "_blocks.0", batch_size=8, progress=False)
    assert scores.shape == (16, 1000)
    assert C.score_cam_scores(lite0, cat, "_blocks.0") is scores
    batch = lite0.preprocess(cat)
    activation = torch.nn.functional.interpolate(lite0.activations(cat, "_blocks.0")[None], size=(224, 224),
                                                 mode="bilinear", align_corners=True)[0, 5]
    mask = (activation - activation.min()) / (activation.max() - activation.min() + 1e-8)
    torch.testing.assert_close(scores[5], lite0.batch_logits(batch * mask)[0], rtol=1e-4, atol=1e-4)
    cam = C.score_cam(lite0, cat, "tabby", layer="_blocks.0", progress=False)
    assert cam.shape == (224, 224) and cam.max() > 0
