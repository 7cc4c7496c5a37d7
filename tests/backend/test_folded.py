"""The folded scoring copy: same class scores as the model, folds only what is safe, never touches the model."""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torch.nn.utils import prune

from cnnwidgets import Inspector
from cnnwidgets.backend.inspector import FOLD_AFTER_IMAGES
from cnnwidgets.backend.folded import fast_copy, foldable_pairs, folded_copy

from tests.conftest import assert_same_state, hooks_left, model_state


def conv_bn(seed: int = 0) -> nn.Sequential:
    """conv → BN → ReLU with non-trivial running statistics and affine parameters."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].weight.uniform_(0.5, 2)
        model[1].bias.uniform_(-1, 1)
    return model.eval()


class SharedConvOutput(nn.Module):
    """The conv output feeds the BN *and* a skip connection: folding would change the skip, so it must not fold."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Linear(3, 2)
        with torch.no_grad():
            self.bn.running_mean.fill_(0.5)
            self.bn.running_var.fill_(4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.head((self.bn(y) + y).mean((2, 3)))


def test_folded_conv_equals_conv_then_batch_norm_by_hand():
    model = conv_bn()
    x = torch.randn(2, 3, 8, 8)
    folded = folded_copy(model, [("0", "1")])
    conv, norm = model[0], model[1]
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    expected_weight = conv.weight * scale.view(-1, 1, 1, 1)
    expected_bias = (conv.bias - norm.running_mean) * scale + norm.bias
    assert torch.allclose(folded[0].weight, expected_weight, atol=1e-6)
    assert torch.allclose(folded[0].bias, expected_bias, atol=1e-6)
    assert isinstance(folded[1], nn.Identity)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)


def test_only_pairs_whose_conv_output_feeds_the_batch_norm_alone_are_folded():
    assert foldable_pairs(conv_bn(), torch.randn(1, 3, 8, 8)) == [("0", "1")]
    assert foldable_pairs(SharedConvOutput().eval(), torch.randn(1, 3, 8, 8)) == []


def test_resnet_copy_scores_like_the_model_and_leaves_it_as_it_came():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    for module in model.modules():  # non-trivial statistics, so folding matters
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    model.train()  # the user's flag: the copy must still score in eval mode, and the flag must survive
    before = model_state(model)
    x = torch.randn(3, 3, 64, 64)
    copy = fast_copy(model, x)
    assert copy is not None
    assert sum(isinstance(m, nn.BatchNorm2d) for m in copy.modules()) == 0  # all 20 batch norms folded
    with torch.inference_mode():
        model.eval()
        expected = model(x)
        model.train()
        assert torch.allclose(copy(x), expected, atol=1e-4, rtol=1e-4)
    assert_same_state(before, model_state(model))
    assert hooks_left(model) == 0


def test_models_with_hooks_or_pruning_are_not_copied():
    hooked = conv_bn()
    hooked[2].register_forward_hook(lambda module, inputs, output: output * 2)
    assert fast_copy(hooked, torch.randn(1, 3, 8, 8)) is None
    pruned = conv_bn()
    prune.l1_unstructured(pruned[0], "weight", amount=0.5)
    assert fast_copy(pruned, torch.randn(1, 3, 8, 8)) is None


def test_inspector_scores_come_from_the_copy_and_follow_weight_changes():
    model = conv_bn()
    inspector = Inspector(model)
    x = torch.randn(5, 3, 8, 8)
    assert inspector.scoring_model(x[:1]) is model  # weights seen once: not worth a copy yet
    scoring = inspector.scoring_model(x[:1])  # seen again: the copy pays for itself
    assert scoring is not model and inspector.scoring_model(x[:1]) is scoring
    with torch.no_grad():
        assert torch.allclose(inspector.batch_logits(x), model(x), atol=1e-5)
        model[5].bias.add_(1.0)  # a training step, in place
        assert torch.allclose(inspector.batch_logits(x), model(x), atol=1e-5)
    many = torch.randn(FOLD_AFTER_IMAGES, 3, 8, 8)
    assert inspector.scoring_model(many) not in (model, scoring)  # new weights, but enough images to fold at once


def test_a_training_loop_that_scores_every_step_never_pays_for_a_copy(monkeypatch):
    from cnnwidgets.backend import folded

    copies = []
    monkeypatch.setattr(folded, "folded_copy", lambda *args: copies.append(1))
    model = conv_bn()
    inspector = Inspector(model)
    x = torch.randn(4, 3, 8, 8)
    for _ in range(5):
        inspector.batch_logits(x)
        with torch.no_grad():
            model[0].weight.mul_(0.99)  # the weights change between every two calls
    assert copies == []


class Counted(nn.Sequential):
    """A model without batch norm that counts its forwards."""

    def __init__(self) -> None:
        super().__init__(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        return super().forward(x)


def test_a_model_with_nothing_to_fold_scores_with_itself():
    model = Counted().eval()
    assert fast_copy(model, torch.randn(1, 3, 8, 8)) is None
    assert model.forwards == 0  # no batch norm: nothing can fold, and no forward is traced to find that out
    assert Inspector(model).scoring_model(torch.randn(1, 3, 8, 8)) is model


class ViewHead(nn.Module):
    """conv → BN → ReLU, then `.view` of the map into the classifier: a view that channels-last memory refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.body = conv_bn()[:3]
        self.fc = nn.Linear(4 * 6 * 6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.fc(y.view(y.shape[0], -1))


def test_a_model_that_views_its_maps_keeps_the_usual_layout_and_still_folds():
    model = ViewHead().eval()
    x = torch.randn(2, 3, 8, 8)
    copy = fast_copy(model, x)
    assert copy is not None and isinstance(copy.body[1], nn.Identity)
    assert copy.body[0].weight.is_contiguous()  # back in the usual layout
    with torch.inference_mode():
        assert torch.allclose(copy(x), model(x), atol=1e-5)


class NormWithExtra(nn.BatchNorm2d):
    """A BatchNorm2d subclass that does something of its own after normalizing: it must not be folded."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.gate = nn.Sigmoid()

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.gate(super().forward(batch)) * 2


def test_timm_norm_and_activation_modules_fold_and_keep_their_activation():
    import timm

    torch.manual_seed(0)
    model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=10).eval()
    with torch.no_grad():  # running statistics away from 0 and 1, so that folding them shows
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2)
    before = model_state(model)
    example = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    pairs = foldable_pairs(model, example)
    assert ("conv_stem", "bn1") in pairs and len(pairs) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # all 49
    copy = fast_copy(model, example)
    assert copy is not None  # before, every BatchNormAct2d was left out and nothing was folded
    inner = copy.inner
    assert type(inner.bn1).__name__ == "AfterNorm" and isinstance(inner.get_submodule("bn1.act"), nn.SiLU)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in inner.modules())
    with torch.inference_mode():
        torch.testing.assert_close(copy(example), model(example), rtol=1e-4, atol=1e-5)
    assert_same_state(before, model_state(model))

    odd = nn.Sequential(nn.Conv2d(3, 4, 3), NormWithExtra(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    assert foldable_pairs(odd, example) == []
