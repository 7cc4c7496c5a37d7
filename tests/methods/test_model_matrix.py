"""Every model people train today, with random weights: timm 1.0 and torchvision families through the methods and
widgets, each number against an independent reference.

Every model runs the core set: activations equal a hooked plain forward (through the layer's layout for NHWC and
token layers), saliency equals Captum's `Saliency`, Grad-CAM at the default layer equals pytorch-grad-cam's
`GradCAM` (with the matching `reshape_transform` for Swin and ViT), and the model is left as it came with no hook
behind. The expensive checks (other references, every widget) run on a fixed sample: check j runs on model i when
(i + j) % SAMPLE_STRIDE == 0, over the lists below in their written order, so every check meets several families
and every family meets several checks; the sample never rotates. Inputs are the smallest each model takes with a
spatial final map (64 px for most), models have 10 classes, one thread.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import timm
import torch
import torchvision
from torch import nn

from cnnwidgets import Inspector, InputError
from cnnwidgets.methods import cam, gradients
from cnnwidgets.methods.occlusion import occlusion

from tests.conftest import assert_same_state, hooks_left, model_state

CLASSES = 10
SAMPLE_STRIDE = 5


def _timm(name: str, **options) -> Callable[[], nn.Module]:
    return lambda: timm.create_model(name, pretrained=False, num_classes=CLASSES, **options)


def _torchvision(name: str, **options) -> Callable[[], nn.Module]:
    return lambda: getattr(torchvision.models, name)(weights=None, num_classes=CLASSES, **options)


MODELS: dict[str, tuple[Callable[[], nn.Module], int]] = {  # name: (builder, input side)
    "resnet50": (_timm("resnet50"), 64),
    "resnet18d": (_timm("resnet18d"), 64),
    "seresnext26d_32x4d": (_timm("seresnext26d_32x4d"), 64),
    "efficientnet_b0": (_timm("efficientnet_b0"), 64),
    "tf_efficientnet_b0": (_timm("tf_efficientnet_b0"), 64),
    "mobilenetv3_large_100": (_timm("mobilenetv3_large_100"), 64),
    "convnext_nano": (_timm("convnext_nano"), 64),
    "regnety_008": (_timm("regnety_008"), 64),
    "densenet121": (_timm("densenet121"), 64),
    "inception_v3": (_timm("inception_v3"), 160),
    "vgg11_bn": (_timm("vgg11_bn", mlp_ratio=0.125), 64),  # a 512-wide 7×7 pre-logits conv: 24 M weights, not 129 M
    "repvgg_a0": (_timm("repvgg_a0"), 64),
    "dla34": (_timm("dla34"), 64),
    "ghostnet_100": (_timm("ghostnet_100"), 64),
    "cspresnet50": (_timm("cspresnet50"), 64),
    "hrnet_w18_small": (_timm("hrnet_w18_small"), 64),
    "mobilevit_xxs": (_timm("mobilevit_xxs"), 64),
    "vit_tiny_patch16_224": (_timm("vit_tiny_patch16_224", img_size=64), 64),
    "swin_tiny_patch4_window7_224": (_timm("swin_tiny_patch4_window7_224", img_size=64, window_size=4), 64),
    "tv_googlenet": (_torchvision("googlenet", aux_logits=False, init_weights=False), 64),
    "tv_squeezenet1_0": (_torchvision("squeezenet1_0"), 64),
    "tv_shufflenet_v2_x1_0": (_torchvision("shufflenet_v2_x1_0"), 64),
    "tv_mnasnet0_5": (_torchvision("mnasnet0_5"), 64),
    "tv_alexnet": (_torchvision("alexnet"), 64),
    "tv_swin_t": (_torchvision("swin_t"), 64),
    "tv_resnet18": (_torchvision("resnet18"), 64),  # in-place ReLUs
}
NAMES = list(MODELS)
RELU_ONLY = {"resnet50", "resnet18d", "vgg11_bn", "repvgg_a0", "dla34", "tv_squeezenet1_0", "tv_alexnet", "tv_resnet18",
             "tv_mnasnet0_5", "tv_shufflenet_v2_x1_0"}
"""Models whose every activation is an nn.ReLU module: where Captum's guided backprop and deconvolution are defined."""
TOKENS_OR_NHWC = {"vit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "tv_swin_t"}

_BUILT: dict[str, tuple[nn.Module, torch.Tensor]] = {}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def built(name: str) -> tuple[nn.Module, torch.Tensor]:
    """The model (random weights, seeded, in train mode as constructors leave it) and a preprocessed input."""
    if name not in _BUILT:
        _BUILT.clear()  # one model in memory at a time
        builder, side = MODELS[name]
        torch.manual_seed(0)
        model = builder()
        image = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
        _BUILT[name] = (model, image)
    return _BUILT[name]


def peer_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy for a reference library, with in-place ReLUs made out-of-place (pytorch-grad-cam keeps a
    detached alias of the layer output, which an in-place ReLU would rectify behind its back)."""
    peer = copy.deepcopy(model).eval()
    for module in peer.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    return peer


def reshape_transform(info) -> Callable[[torch.Tensor], torch.Tensor]:
    """pytorch-grad-cam's reshape_transform for a layer, written by hand from its documentation (ViT: drop the class
    token, tokens to the patch grid; Swin: [B,H,W,C] to [B,C,H,W])."""
    layout = info.layout
    if layout.kind == "nhwc":
        return lambda tensor: tensor.permute(0, 3, 1, 2)
    if layout.kind == "tokens":
        rows, columns = layout.grid
        return lambda tensor: tensor[:, layout.prefix:, :].reshape(tensor.size(0), rows, columns, tensor.size(2)).permute(0, 3, 1, 2)
    return lambda tensor: tensor


def correlation(a: torch.Tensor, b) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def sampled(checks: list[str]) -> list:
    """(model, check) pairs of the fixed sample (see the module doc)."""
    return [pytest.param(name, check, id=f"{name}-{check}") for j, check in enumerate(checks)
            for i, name in enumerate(NAMES) if (i + j) % SAMPLE_STRIDE == 0]


# --- the core set, every model --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_core(name):
    from captum.attr import Saliency
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, image = built(name)
    before = model_state(model)
    inspector = Inspector(model)
    inspector.preprocess(image)  # layers are listed for the input's size
    layers = inspector.layers
    assert layers, name
    if name in TOKENS_OR_NHWC:
        assert {layer.layout.kind for layer in layers} & {"nhwc", "tokens"}
    default = cam.default_cam_layer(inspector)
    info = inspector.layer(default)
    assert len(info.shape) == 3 and info.shape[1] * info.shape[2] > 1

    # activations: equal to a hooked plain forward, mapped by hand
    picked = [layers[0], layers[len(layers) // 2], info]
    captured: dict[str, torch.Tensor] = {}

    def keep(key: str) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            captured[key] = output.detach().clone()  # before any in-place op after the layer

        return hook

    handles = [model.get_submodule(layer.module_name).register_forward_hook(keep(layer.module_name))
               for layer in picked if layer.call == 0]
    training = [module.training for module in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(image)
    finally:
        for module, flag in zip(model.modules(), training):
            module.training = flag
        for handle in handles:
            handle.remove()
    got = inspector.activations(image, [layer.name for layer in picked])
    for layer in picked:
        if layer.call == 0:
            expected = reshape_transform(layer)(captured[layer.module_name])[0]
            assert torch.equal(got[layer.name], expected), (name, layer.name)

    # saliency: Captum
    target = int(inspector.logits(image).argmax())
    peer = peer_copy(model)
    expected = Saliency(peer).attribute(image.clone().requires_grad_(), target=target, abs=False)[0]
    ours = gradients.saliency(inspector, image, target)
    torch.testing.assert_close(ours, expected, atol=1e-5 * float(expected.abs().max()) + 1e-12, rtol=1e-4)

    # Grad-CAM at the default layer: pytorch-grad-cam with the layer's reshape_transform
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        method = GradCAM(model=peer, target_layers=[peer.get_submodule(info.module_name)], reshape_transform=reshape_transform(info))
        theirs = method(input_tensor=image.clone(), targets=[ClassifierOutputTarget(target)])[0]
        method.activations_and_grads.release()
    ours = cam.grad_cam(inspector, image, target, layer=default)
    assert ours.shape == image.shape[-2:]
    if float(theirs.max()) > 0:
        assert correlation(ours, theirs) >= 0.999, name
    else:
        assert float(ours.max()) == 0
    assert hooks_left(model) == 0
    assert_same_state(before, model_state(model))


# --- references, a fixed sample -----------------------------------------------------------------------------------

REFERENCE_CHECKS = ["integrated_gradients", "occlusion", "torchcam_layer_cam", "grad_cam_plus_plus", "guided_backprop",
                    "deconvnet", "score_cam"]


def _reference(check: str, name: str, inspector: Inspector, peer: nn.Module, image: torch.Tensor, target: int):
    """(ours, theirs, how to compare) for one reference check."""
    from captum.attr import Deconvolution, GuidedBackprop, IntegratedGradients, Occlusion

    layer = inspector.layer(cam.default_cam_layer(inspector))
    if check == "integrated_gradients":
        theirs = IntegratedGradients(peer).attribute(image.clone(), target=target, n_steps=8)[0]
        return gradients.integrated_gradients(inspector, image, target, steps=8), theirs, "close"
    if check == "occlusion":
        patch, stride = image.shape[-1] // 2, image.shape[-1] // 4
        theirs = Occlusion(lambda x: peer(x).softmax(-1)).attribute(
            image.clone(), sliding_window_shapes=(3, patch, patch), strides=(3, stride, stride), baselines=0.0, target=target)
        return occlusion(inspector, image, target, patch=patch, stride=stride, output="attribution", progress=False), theirs[0, 0], "close"
    if check == "torchcam_layer_cam":
        from torchcam.methods import LayerCAM

        if layer.layout.kind != "nchw":  # torchcam reads [N,C,H,W] layers only: pytorch-grad-cam's Layer-CAM instead
            from pytorch_grad_cam import LayerCAM as PeerLayerCAM
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                method = PeerLayerCAM(model=peer, target_layers=[peer.get_submodule(layer.module_name)],
                                      reshape_transform=reshape_transform(layer))
                theirs = method(input_tensor=image.clone(), targets=[ClassifierOutputTarget(target)])[0]
                method.activations_and_grads.release()
            return cam.layer_cam(inspector, image, target, layer=layer.name), theirs, "correlation"
        extractor = LayerCAM(peer, target_layer=layer.module_name)
        try:
            scores = peer(image.clone())
            theirs = extractor(target, scores)[0][0]
        finally:
            extractor.remove_hooks()
        # torchcam gives the map at the layer's resolution, scaled to [0, 1]: upsampled like ours, it correlates
        return cam.layer_cam(inspector, image, target, layer=layer.name), cam.upsample(theirs, image.shape[-2:]), "correlation"
    if check == "grad_cam_plus_plus":
        from pytorch_grad_cam import GradCAMPlusPlus
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            method = GradCAMPlusPlus(model=peer, target_layers=[peer.get_submodule(layer.module_name)],
                                     reshape_transform=reshape_transform(layer))
            theirs = method(input_tensor=image.clone(), targets=[ClassifierOutputTarget(target)])[0]
            method.activations_and_grads.release()
        return cam.grad_cam_plus_plus(inspector, image, target, layer=layer.name), theirs, "correlation"
    if check in ("guided_backprop", "deconvnet"):
        ours_method = getattr(gradients, check)
        if name not in RELU_ONLY:  # SiLU, GELU, Hardswish: refused; functional ReLUs (GoogLeNet): Captum cannot see them
            try:
                assert ours_method(inspector, image, target).shape == image.shape[1:]
            except InputError as error:
                assert "ReLU" in str(error)
            return None
        peer_class = GuidedBackprop if check == "guided_backprop" else Deconvolution
        theirs = peer_class(peer).attribute(image.clone(), target=target)[0]
        return ours_method(inspector, image, target), theirs, "close"
    if check == "score_cam":  # one forward per channel: on the spatial layer with the fewest channels, called once
        layer = min((info for info in inspector.layers if cam._spatial(info) and "#" not in info.name), key=lambda info: info.shape[0])
        from pytorch_grad_cam import ScoreCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            method = ScoreCAM(model=peer, target_layers=[peer.get_submodule(layer.module_name)],
                              reshape_transform=reshape_transform(layer))
            method.batch_size = 64
            import tqdm as tqdm_module

            quiet, tqdm_module.tqdm = tqdm_module.tqdm, lambda iterable, *a, **k: iterable
            try:
                theirs = method(input_tensor=image.clone(), targets=[ClassifierOutputTarget(target)])[0]
            finally:
                tqdm_module.tqdm = quiet
                method.activations_and_grads.release()
        return cam.score_cam(inspector, image, target, layer=layer.name, progress=False), theirs, "correlation"
    raise AssertionError(check)


@pytest.mark.parametrize("name, check", sampled(REFERENCE_CHECKS))
def test_reference(name, check):
    model, image = built(name)
    before = model_state(model)
    inspector = Inspector(model)
    target = int(inspector.logits(image).argmax())  # (and layers listed for the input's size)
    found = _reference(check, name, inspector, peer_copy(model), image, target)
    if found is not None:
        ours, theirs, compare = found
        theirs = torch.as_tensor(np.asarray(theirs)).float()
        assert ours.shape == theirs.shape
        if compare == "close":
            torch.testing.assert_close(ours.float(), theirs, atol=1e-4 * float(theirs.abs().max()) + 1e-9, rtol=1e-3)
        elif float(theirs.max()) > 0:
            assert correlation(ours, theirs) >= 0.99, (name, check)
    assert hooks_left(model) == 0
    assert_same_state(before, model_state(model))


# --- widgets, a fixed sample --------------------------------------------------------------------------------------

WIDGETS = ["SaliencyOverlay", "LayerExplorer", "OcclusionSlider", "AdversarialExplorer", "ActivationMaximization",
           "CodeInversion", "InvarianceProbe"]


def _widget(kind: str, inspector: Inspector, image: torch.Tensor):
    from cnnwidgets import widgets

    side = image.shape[-1]
    if kind == "SaliencyOverlay":
        return widgets.SaliencyOverlay(inspector, image, side_by_side=True, ig_steps=4)
    if kind == "OcclusionSlider":
        return widgets.OcclusionSlider(inspector, image, patch=side // 2, stride=side // 4)
    if kind == "AdversarialExplorer":
        return widgets.AdversarialExplorer(inspector, image, method="fgsm")
    if kind == "ActivationMaximization":
        return widgets.ActivationMaximization(inspector, target=0, size=side)
    if kind == "CodeInversion":
        return widgets.CodeInversion(inspector, image)
    if kind == "InvarianceProbe":
        return widgets.InvarianceProbe(inspector, image, positions=5)
    return getattr(widgets, kind)(inspector, image)


@pytest.mark.parametrize("name, kind", sampled(WIDGETS))
def test_widget(name, kind):
    model, image = built(name)
    before = model_state(model)
    inspector = Inspector(model)  # no labels: "class 0" … "class 9"
    widget = _widget(kind, inspector, image)
    assert widget.error == ""
    png = widget.to_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert hooks_left(model) == 0
    assert_same_state(before, model_state(model))
