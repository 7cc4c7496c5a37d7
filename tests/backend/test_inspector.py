"""The shared backend: exact activations, predictions, caching, layers, and the user's model left untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnwidgets import Inspector, InputError, LayerNotFoundError
from cnnwidgets.backend import inspector as inspector_module

from tests.conftest import assert_refused, assert_same_state, hooks_left, model_state


def hand_conv(x: np.ndarray) -> np.ndarray:
    """The TinyCNN conv by explicit loops: filter 0 = x[i,j] - x[i+1,j+1], filter 1 = 2×2 sum - 10."""
    out = np.zeros((2, 3, 3))
    for i in range(3):
        for j in range(3):
            out[0, i, j] = x[i, j] - x[i + 1, j + 1]
            out[1, i, j] = x[i:i + 2, j:j + 2].sum() - 10
    return out


def test_tiny_activations_equal_hand_computation(tiny, tiny_input):
    inspector = Inspector(tiny)
    conv = hand_conv(tiny_input[0, 0].numpy())
    np.testing.assert_allclose(inspector.activations(tiny_input, "conv").numpy(), conv)
    np.testing.assert_allclose(inspector.activations(tiny_input, "relu").numpy(), np.maximum(conv, 0))
    pooled = np.maximum(conv, 0)[:, :2, :2].max(axis=(1, 2)).reshape(2, 1, 1)
    np.testing.assert_allclose(inspector.activations(tiny_input, "pool").numpy(), pooled)
    # filter 0 is -5 everywhere, so after the ReLU channel 0 is dead; filter 1 ranges over 0..38
    assert conv[0].max() == -5 and inspector.activations(tiny_input, "relu")[0].abs().max() == 0


def test_tiny_layers_in_forward_order_with_shapes(tiny, tiny_input):
    inspector = Inspector(tiny)
    inspector.activations(tiny_input, "conv")
    assert [(l.name, l.kind, l.shape) for l in inspector.layers] == [
        ("conv", "conv", (2, 3, 3)), ("relu", "activation", (2, 3, 3)), ("pool", "pool", (2, 1, 1))]


def test_tiny_predict_uses_labels_and_softmax(tiny, tiny_input):
    inspector = Inspector(tiny, labels=["a", "b", "c"])
    # pooled features are (0, 28) -> logits (0, 28, 28): "b" and "c" tie at 0.5
    top = inspector.predict(tiny_input, k=3)
    assert [label for label, _ in top][2] == "a"
    np.testing.assert_allclose([p for _, p in top], [0.5, 0.5, 0.0], atol=1e-6)


def test_lite0_activations_equal_truncated_forward(lite0, cat):
    model = lite0.model
    batch = lite0.preprocess(cat)
    with torch.no_grad():
        x = model._stem_act(model._bn0(model._conv_stem(batch)))
        for block in model._blocks[:4]:
            x = block(x)
        expand = model._blocks[4]._expand_act(model._blocks[4]._bn0(model._blocks[4]._expand_conv(x)))
    torch.testing.assert_close(lite0.activations(cat, "_blocks.3"), x[0])
    torch.testing.assert_close(lite0.activations(cat, "_blocks.4._expand_act"), expand[0])


def test_lite0_classifies_the_cat_as_a_cat(lite0, cat):
    labels = [label for label, _ in lite0.predict(cat, k=3)]
    assert {"Egyptian cat", "tiger cat", "tabby"} & set(labels)
    assert labels[0] in {"Egyptian cat", "tiger cat", "tabby"}


def test_reused_module_gives_one_layer_per_call():
    from cnnwidgets import zoo

    resnet = zoo.torchvision_model("resnet18", weights=None, device="cpu")
    names = resnet.layer_names
    assert "layer1.0.relu#1" in names and "layer1.0.relu#2" in names and "layer1.0.relu" not in names
    image = torch.randn(3, 64, 64)
    block = resnet.model.layer1[0]
    with torch.no_grad():
        stem = resnet.model.maxpool(resnet.model.relu(resnet.model.bn1(resnet.model.conv1(image[None]))))
        first = torch.relu(block.bn1(block.conv1(stem)))
        second = torch.relu(block.bn2(block.conv2(first)) + stem)
    torch.testing.assert_close(resnet.activations(image, "layer1.0.relu#1"), first[0])
    torch.testing.assert_close(resnet.activations(image, "layer1.0.relu#2"), second[0])
    with pytest.raises(LayerNotFoundError, match="relu#1"):
        resnet.activations(image, "layer1.0.relu")


def test_cache_avoids_forward_and_sees_weight_changes(tiny, tiny_input, monkeypatch):
    inspector = Inspector(tiny)
    forwards = []
    real = inspector_module.capture_outputs
    monkeypatch.setattr(inspector_module, "capture_outputs", lambda *a: forwards.append(1) or real(*a))
    both = inspector.activations(tiny_input, ["conv", "relu"])
    assert len(forwards) == 1 and set(both) == {"conv", "relu"}
    inspector.activations(tiny_input, "relu")
    inspector.activations(tiny_input.clone(), "conv")
    assert len(forwards) == 1
    with torch.no_grad():
        tiny.conv.bias.add_(1.0)  # an in-place weight change (as an optimizer step does) invalidates the cache
    assert inspector.activations(tiny_input, "conv")[1, 0, 0] == both["conv"][1, 0, 0] + 1
    assert len(forwards) == 2


def test_cache_stays_within_its_byte_bound(tiny):
    inspector = Inspector(tiny, cache_bytes=2 * 9 * 4 * 3)  # room for three [2,3,3] float maps
    for offset in range(10):
        inspector.activations(torch.full((1, 1, 4, 4), float(offset)), "conv")
    assert inspector.memo.bytes <= inspector.memo.max_bytes and len(inspector.memo) == 3


def test_unknown_layer_lists_close_matches(lite0):
    with pytest.raises(LayerNotFoundError, match="_stem_act") as raised:
        lite0.layer("_stem_actt")
    assert "\n" not in str(raised.value)


def test_model_left_exactly_as_it_came(tiny, tiny_input):
    tiny.train()
    tiny.pool.eval()
    tiny.fc.weight.requires_grad_(False)
    before = model_state(tiny)
    inspector = Inspector(tiny, labels=["a", "b", "c"])
    inspector.activations(tiny_input, ["conv", "pool"])
    inspector.predict(tiny_input)
    inspector.batch_logits(torch.cat([tiny_input] * 5), batch_size=2)
    assert hooks_left(tiny) == 0
    assert_same_state(before, model_state(tiny))


def test_model_left_intact_when_a_call_raises(tiny, tiny_input):
    class Exploding(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom inside the model")

    tiny.train()
    before = model_state(tiny)
    inspector = Inspector(tiny)
    inspector.activations(tiny_input, "conv")  # layers discovered while the model still works
    tiny.pool.register_forward_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("boom in a hook")))
    with pytest.raises(InputError, match="the model failed"):
        inspector.activations(tiny_input, "pool")
    tiny.pool._forward_hooks.clear()
    assert hooks_left(tiny) == 0
    assert_same_state(before, model_state(tiny))
    tiny.add_module("explode", Exploding())
    tiny.forward = lambda x: tiny.explode(x)  # a model that fails from the start
    with pytest.raises(InputError, match="boom inside the model"):
        Inspector(tiny).layers
    assert hooks_left(tiny) == 0 and [m.training for m in tiny.modules()][:1] == [True]


def test_model_is_the_users_object_and_stays_on_its_device(tiny):
    inspector = Inspector(tiny)
    assert inspector.model is tiny and inspector.device == torch.device("cpu")
    assert Inspector(tiny, device="cpu").model is tiny


def test_inputs_of_every_kind_reach_the_same_batch(lite0, cat, tmp_path):
    path = tmp_path / "cat.png"
    cat.save(path)
    reference = lite0.preprocess(cat)
    for same in (np.asarray(cat), str(path), path, torch.from_numpy(np.asarray(cat).copy()).permute(2, 0, 1)):
        torch.testing.assert_close(lite0.preprocess(same), reference)
    torch.testing.assert_close(lite0.preprocess(reference[0]), reference)
    assert lite0.display_image(cat).shape == (224, 224, 3)


def test_grayscale_and_rgba_images_are_converted(lite0, cat):
    assert lite0.preprocess(cat.convert("L")).shape == (1, 3, 224, 224)
    assert lite0.preprocess(np.asarray(cat.convert("L"))).shape == (1, 3, 224, 224)
    rgba = cat.convert("RGBA")
    torch.testing.assert_close(lite0.preprocess(rgba), lite0.preprocess(cat))


def test_grayscale_model_gets_one_channel(tiny, cat):
    batch = Inspector(tiny, transform=None).preprocess(cat)
    assert batch.shape == (1, 1, 224, 224)


def test_huge_image_is_downscaled_with_a_note(lite0):
    huge = np.zeros((5000, 4200, 3), np.uint8)
    with pytest.warns(UserWarning, match="downscaled"):
        assert lite0.preprocess(huge).shape == (1, 3, 224, 224)


@pytest.mark.parametrize(
    ("bad", "fix"),
    [
        (np.zeros((4, 4, 3), np.uint8), "at least"),
        (np.zeros((3, 64, 64), np.uint8), "transpose"),
        (np.full((32, 32, 3), 7.5), "uint8 values 0..255 or floats"),
        (np.full((32, 32, 3), np.nan), "NaN"),
        (np.zeros((32, 32, 5), np.uint8), "H×W×3"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
        (torch.zeros(10), "this model takes one image"),
        (torch.zeros(2, 3, 32, 32), "this model takes one image"),
        (torch.zeros(1, 5, 32, 32), "this model takes one image"),
        ("/no/such/cat.png", "no image file"),
        ({"not": "an image"}, "pass a PIL image"),
    ],
)
def test_bad_input_gets_one_line_error_naming_the_fix(lite0, bad, fix):
    assert_refused(lite0, bad, fix)


def test_model_without_convolutions_is_refused():
    with pytest.raises(InputError, match="no convolutional layers"):
        Inspector(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)))


def test_input_too_small_for_the_model_is_reported(lite0):
    tiny_model = nn.Sequential(nn.Conv2d(3, 4, 5), nn.Conv2d(4, 4, 5), nn.Flatten(), nn.LazyLinear(2))
    inspector = Inspector(tiny_model)
    with pytest.raises(InputError, match="the model failed on an input of shape"):
        inspector.activations(torch.zeros(1, 3, 6, 6), "0")


def test_torchvision_models_work_through_the_same_inspector():
    from cnnwidgets import zoo

    for name in ("resnet18", "alexnet", "vgg16"):
        inspector = zoo.torchvision_model(name, weights=None, device="cpu")
        assert len(inspector.labels) == 1000 and inspector.transform.crop_size == [224]
        assert any(layer.kind == "conv" for layer in inspector.layers)
        assert len(inspector.predict(np.zeros((300, 260, 3), np.uint8), k=2)) == 2


def test_class_index_from_index_name_or_top_prediction(lite0, cat):
    assert lite0.class_index(None, cat) == lite0.labels.index(lite0.predict(cat, k=1)[0][0])
    assert lite0.class_index("espresso") == 967 and lite0.class_index(3) == 3
    with pytest.raises(InputError, match="did you mean 'espresso'"):
        lite0.class_index("expresso")
    with pytest.raises(InputError, match="out of range; pick 0..999"):
        lite0.class_index(1000)
