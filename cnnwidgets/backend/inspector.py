"""The shared inference backend every widget and method calls: model, preprocessing, labels, device, caching."""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import torch
from torch import nn

from ..errors import InputError, model_errors
from .cache import Memo, image_key, weights_key
from .clips import ClipPreprocess, display_clip, is_video_model, preprocess_clip, probe_shape, reject_clip
from .device import batch_size_for, batches, device_of, unwrap
from .hooks import capture_outputs, eval_mode
from .images import ImageLike, all_finite, check_input, to_pil
from .layers import LayerInfo, discover_layers, find_layer, has_conv
from .layout import fixed_input_size
from .preprocess import Preprocess, to_display

if TYPE_CHECKING:
    from .index import Index

DEFAULT_CACHE_BYTES = 512 * 2**20
PROBE_SIDE = 224
"""Input side used to list layers before any image was seen, and to measure the model's total stride."""
FOLD_AFTER_IMAGES = 16
"""A call scoring this many images makes the folded scoring copy at once (it pays for itself within the call)."""


class Inspector:
    """A CNN image classifier ready to be looked into: preprocessing, labels, layers, activations, predictions.

    `model` is kept as the very object passed in and is never modified: calls run it in eval mode under
    `torch.inference_mode()` and restore every module's `training` flag; hooks live only for one call.
    The one exception is on request: `device=` moves the model there (`model.to(device)`, which changes it
    in place). Without it the model runs where its parameters already are, and inputs follow it. DataParallel,
    DistributedDataParallel and `torch.compile` wrappers are unwrapped (`model` is then the module inside); a model
    in float16, bfloat16 or float64 runs in its own dtype (see `hooks.eval_mode`).

    `transform` maps a PIL image to a [C,H,W] float tensor (a torchvision preset such as
    `ResNet18_Weights.DEFAULT.transforms()` works); the default is the ImageNet recipe (resize 256, crop 224).
    `labels` names the output classes; the default is "class 0", "class 1", …, and those names work as targets.
    `reshape` maps layer names to the layout of their output where it cannot be read off the model:
    "nhwc", "nchw", "tokens" or a function from the batched output to [N,C,H,W] (see `backend.layout`).
    A model that takes one input size only (timm ViT, Swin) says so in `input_size`; the default transform then
    crops to it, and other sizes are refused with an InputError.
    """

    def __init__(
        self,
        model: nn.Module,
        transform: Callable | None = None,
        labels: Sequence[str] | None = None,
        device: str | torch.device | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        reshape: dict[str, object] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputError(f"Inspector needs a torch.nn.Module, not a {type(model).__name__}")
        model = unwrap(model)
        if not has_conv(model):
            raise InputError(
                f"{type(model).__name__} has no convolutional layers; cnnwidgets looks into CNNs, pass a model with Conv2d layers"
            )
        if device is not None:
            model.to(device)
        self.model = model
        self.is_video = is_video_model(model)  # clips [N,C,T,H,W] in, see backend.clips
        self.input_size = None if self.is_video else fixed_input_size(model)  # (height, width) it requires, or None
        if transform is None and self.input_size is not None and self.input_size[0] == self.input_size[1]:
            side = self.input_size[0]
            transform = Preprocess(resize=round(side * 256 / 224), crop=side)  # the ImageNet recipe's ratio
        self.reshape = dict(reshape or {})
        self.transform: Callable = transform if transform is not None else (ClipPreprocess() if self.is_video else Preprocess())
        self.labels = list(labels) if labels is not None else None
        self.memo = Memo(model, cache_bytes)  # everything computed from the current weights (see `backend.cache`)
        self._layers: dict[tuple[int, ...], list[LayerInfo]] = {}
        self._input_shape: tuple[int, ...] | None = None
        self._min_side: int | None = None  # smallest input side the model downsamples to at least one pixel

    # --- inputs -----------------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where the model's parameters are, so where inputs go."""
        return device_of(self.model)

    @property
    def in_channels(self) -> int:
        """How many channels the model's first convolution expects (3 for RGB, 1 for grayscale)."""
        first = next(m for m in self.model.modules() if isinstance(m, nn.modules.conv._ConvNd))
        return first.in_channels

    def preprocess(self, image: ImageLike, device: torch.device | str | None = None) -> torch.Tensor:
        """The [1,C,H,W] float batch fed to the model for `image`, on the model's device (or on `device`: the
        index prepares images on the CPU in DataLoader worker processes, which must not touch CUDA).

        A float tensor is taken as already preprocessed ([C,H,W] or [1,C,H,W]) and checked (`images.check_input`);
        anything else is a picture (`images.to_pil`) and goes through `transform`. Grayscale and RGBA pictures are
        converted to what the model expects. The batch is float32; the model's own dtype is applied at its input.
        """
        if self.is_video:
            batch = preprocess_clip(image, self.transform, self.in_channels)
            self._input_shape = tuple(batch.shape)
            return batch.to(device or self.device)
        reject_clip(image)
        if isinstance(image, torch.Tensor) and (image.is_floating_point() or image.is_complex()):
            small = image.dim() >= 2 and min(image.shape[-2:]) < PROBE_SIDE  # no stride exceeds PROBE_SIDE
            batch = check_input(image, self.in_channels, self.min_input_side if small else 1)
        else:
            pil = to_pil(image, "L" if self.in_channels == 1 else "RGB")
            batch = torch.as_tensor(self.transform(pil)).unsqueeze(0)
            if batch.dim() != 4 or batch.shape[0] != 1 or batch.shape[1] != self.in_channels:
                raise InputError(
                    f"the transform gave an input of shape {tuple(batch.shape)}; "
                    f"this model takes one image as [{self.in_channels},H,W] or [1,{self.in_channels},H,W]"
                )
            if not all_finite(batch):
                raise InputError("the input contains NaN or infinite values; pass a finite image")
        if self.input_size is not None and tuple(batch.shape[-2:]) != self.input_size:
            height, width = self.input_size
            raise InputError(
                f"this model takes {height}×{width} inputs only, not {batch.shape[-2]}×{batch.shape[-1]}; "
                f"resize the image or pass transform=Preprocess(resize={round(height * 256 / 224)}, crop={height})"
            )
        self._input_shape = tuple(batch.shape)
        return batch.to(device or self.device, torch.float32)

    def display_image(self, image: ImageLike) -> np.ndarray:
        """The H×W×3 uint8 picture the model sees for `image` (after resizing and cropping); for a video model the
        [T,H,W,3] frames of the clip."""
        if self.is_video:
            return display_clip(self.preprocess(image), self.transform)
        return to_display(self.preprocess(image), self.transform)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """The shape of the last batch preprocessed ([1,C,H,W], [1,C,T,H,W] for video), None before any."""
        return self._input_shape

    # --- layers -----------------------------------------------------------------------------------------------

    @property
    def min_input_side(self) -> int:
        """The smallest side a float-tensor input may have: the model's total stride (224 / the smallest conv output
        side above 1 at 224×224; 32 for EfficientNet-Lite0), below which its last feature maps would be built from padding
        alone. Pictures are resized by the transform and are held to `images.MIN_SIDE` instead. A model that runs
        only on one input size (a flattening head) fails on any other by itself; its minimum is 1. (So a fault
        raised by the model's forward during this one probe also leaves the minimum at 1 for this Inspector.)"""
        if self._min_side is None:
            probe = (1, self.in_channels, PROBE_SIDE, PROBE_SIDE)
            try:
                if self.reshape:  # raw layouts: the user's `reshape` functions are written for the real input size
                    with eval_mode(self.model), torch.inference_mode():
                        layers = discover_layers(self.model, torch.zeros(probe, device=self.device))
                else:
                    layers = self._layers_at(probe)
            except InputError:
                layers = []
            # 1×1 outputs are left out: squeeze-excitation convs act on a pooled vector at every input size
            sides = [side for layer in layers if layer.kind == "conv" and len(layer.shape) == 3
                     and (side := min(layer.shape[1:])) > 1]
            self._min_side = max(1, PROBE_SIDE // max(1, min(sides))) if sides else 1
        return self._min_side

    @property
    def layers(self) -> list[LayerInfo]:
        """Pickable layers in forward order, with map shapes [C,H,W] ([C,T,H,W] for video) for the last input
        preprocessed (before any: the model's fixed input size, else 224×224). Layers whose output layout is unknown
        are left out (asking for one by name says how to set it with `reshape=`)."""
        return [layer for layer in self._all_layers() if layer.layout.kind != "unknown"]

    def _all_layers(self) -> list[LayerInfo]:
        if self._input_shape is not None:
            return self._layers_at(self._input_shape)
        if self.is_video:
            return self._layers_at(probe_shape(self.transform, self.in_channels))
        return self._layers_at((1, self.in_channels, *(self.input_size or (PROBE_SIDE, PROBE_SIDE))))

    def _layers_at(self, shape: tuple[int, ...]) -> list[LayerInfo]:
        if shape not in self._layers:
            with eval_mode(self.model), torch.inference_mode():
                self._layers[shape] = discover_layers(self.model, torch.zeros(shape, device=self.device), self.reshape)
        return self._layers[shape]

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def layer(self, name: str) -> LayerInfo:
        """The layer called `name`; an unknown name raises an error that lists close matches, and a layer whose
        output layout cannot be known an error naming `reshape=`."""
        unknown = next((layer for layer in self._all_layers() if layer.name == name and layer.layout.kind == "unknown"), None)
        if unknown is not None:
            raise InputError(
                f"layer {name!r} outputs {tuple(unknown.shape)}, a layout cnnwidgets cannot read as [C,H,W]; pass "
                f"Inspector(model, reshape={{{name!r}: 'nhwc'}}) ('nchw', 'tokens' or a function) or pick another layer"
            )
        return find_layer(self.layers, name)

    def module(self, name: str) -> nn.Module:
        """The module behind layer `name`."""
        return self.model.get_submodule(self.layer(name).module_name)

    # --- forward passes -------------------------------------------------------------------------------------------

    @overload
    def activations(self, image: ImageLike, layer: str) -> torch.Tensor: ...
    @overload
    def activations(self, image: ImageLike, layer: list[str] | tuple[str, ...]) -> dict[str, torch.Tensor]: ...

    def activations(self, image, layer):
        """The [C,H,W] output of `layer` for `image` (on the CPU); for a list of layers, a dict of them.

        All layers missing from the memo come from one forward pass; results are kept per (image, layer) while
        the weights stay the same, so asking again — another channel, a layer seen before — runs no forward.
        """
        names = [layer] if isinstance(layer, str) else list(layer)
        batch = self.preprocess(image)
        infos = [self.layer(name) for name in names]
        key = image_key(batch)
        found = {info.name: self.memo.get(("activation", info.name), key) for info in infos}
        missing = {info.name: (self.model.get_submodule(info.module_name), info.call) for info in infos if found[info.name] is None}
        if missing:
            with eval_mode(self.model), torch.inference_mode(), model_errors(tuple(batch.shape)):
                captured = capture_outputs(self.model, missing, batch)
            by_name = {info.name: info for info in infos}
            for name, output in captured.items():
                found[name] = by_name[name].to_map(output)[0].contiguous().cpu()
                self.memo.put(("activation", name), found[name], key)
        return found[names[0]] if isinstance(layer, str) else {name: found[name] for name in names}

    def index(self, dataset: object, layers: Sequence[str] | None = None, engine: str = "local", **options: Any) -> Index:
        """Stream `dataset` through the model once and return its `Index`: the top-k images of every channel of
        `layers` (default: every activation layer), and each image's pooled code, label and prediction. Options:
        k, codes, thumbnails, batch_size, num_workers, amp, offset, path, save_every, progress (see
        `backend.index.build_index`). `engine="ray"` builds it in shards on Ray workers, merged exactly (options of
        `backend.distributed.index_on_ray`)."""
        if engine == "ray":
            from .distributed import index_on_ray

            return index_on_ray(self, dataset, layers, **options)
        if engine != "local":
            raise InputError(f"engine must be 'local' or 'ray', not {engine!r}")
        from .index import build_index

        return build_index(self, dataset, layers, **options)

    def logits(self, image: ImageLike) -> torch.Tensor:
        """The class scores [classes] of one image."""
        return self.batch_logits(self.preprocess(image))[0]

    def batch_logits(self, images: torch.Tensor | Sequence[ImageLike], batch_size: int | None = None) -> torch.Tensor:
        """Class scores [N, classes] of an [N,C,H,W] preprocessed batch or a list of images, in fast-sized batches."""
        batch = images if isinstance(images, torch.Tensor) else torch.cat([self.preprocess(image) for image in images])
        if batch.dim() != (5 if self.is_video else 4) or batch.shape[1] != self.in_channels:
            raise InputError(f"a batch of shape {tuple(batch.shape)} does not fit; pass [N,{self.in_channels},{'T,' if self.is_video else ''}H,W]")
        if not all_finite(batch):
            raise InputError("the input contains NaN or infinite values; pass finite images")
        size = batch_size or batch_size_for(self.device)
        with eval_mode(self.model), torch.inference_mode(), model_errors(tuple(batch.shape)):
            model = self.scoring_model(batch[:size].to(self.device), images=len(batch))
            outputs = [class_scores(model(batch[part].to(self.device))) for part in batches(len(batch), size)]
        return torch.cat(outputs).float().cpu()

    def scoring_model(self, example: torch.Tensor, images: int | None = None) -> nn.Module:
        """The module to run for class scores only (never for gradients), given an [N,C,H,W] example input: a private
        copy with batch norms folded into convolutions, channels-last, when that is possible and gives the model's
        scores on `example` (see `backend.folded`), else the model itself. Kept while the weights stay the same.

        The copy costs a deep copy and three forward passes, so it is made only where it pays: for a call that
        scores at least FOLD_AFTER_IMAGES images (`images`, default the example's), or for weights already seen
        by an earlier call. A training loop that changes the weights between calls keeps using the model itself.
        """
        from .folded import fast_copy

        found = self.memo.get("scoring model")
        if isinstance(found, nn.Module):
            return found
        if found is None and (len(example) if images is None else images) < FOLD_AFTER_IMAGES:
            self.memo.put("scoring model", "seen", nbytes=0)  # these weights were scored once
            return self.model
        with eval_mode(self.model), torch.inference_mode(), model_errors(tuple(example.shape)):
            scorer = fast_copy(self.model, example) or self.model
        self.memo.put("scoring model", scorer, nbytes=0)  # one per weights, outside the byte budget like the model
        return scorer

    def predict(self, image: ImageLike, k: int = 5) -> list[tuple[str, float]]:
        """The top-`k` (label, probability) pairs for `image`, most probable first."""
        probabilities = self.logits(image).softmax(-1)
        top = probabilities.topk(min(k, len(probabilities)))
        return [(self.label(int(i)), float(p)) for p, i in zip(top.values, top.indices)]

    def class_index(self, target: int | str | None, image: ImageLike | None = None) -> int:
        """The class index for `target`: an index, a label name, or None for the top prediction on `image`."""
        classes = len(self.labels) if self.labels is not None else None
        if target is None:
            if image is None:
                raise InputError("target=None means the top predicted class, which needs an image; pass one")
            return int(self.logits(image).argmax())
        if isinstance(target, str) and self.labels is None and re.fullmatch(r"class \d+", target):
            target = int(target.removeprefix("class "))  # the default names, "class 0", "class 1", …
        if isinstance(target, str):
            if self.labels is None or target not in self.labels:
                known = self.labels or []
                close = difflib.get_close_matches(target, known, n=5, cutoff=0.6) or [k for k in known if target.lower() in k.lower()][:5]
                hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "see inspector.labels"
                raise InputError(f"no class named {target!r}; {hint}")
            return self.labels.index(target)
        if not isinstance(target, (int, np.integer)) or isinstance(target, bool):
            raise InputError(f"a target must be a class index, a class name or None, not {type(target).__name__}")
        if classes is None and image is not None:
            classes = len(self.logits(image))
        if target < 0 or (classes is not None and target >= classes):
            raise InputError(f"class index {target} is out of range; pick 0..{(classes or 1) - 1}")
        return int(target)

    def label(self, index: int) -> str:
        """The name of class `index`."""
        if self.labels is None:
            return f"class {index}"
        if index >= len(self.labels):
            raise InputError(f"the model scores class {index} but only {len(self.labels)} labels were given; pass one label per class")
        return self.labels[index]

    def private_copy(self) -> Inspector:
        """An Inspector over a deep copy of the model (same transform, labels, layouts and memo budget), for work off
        the main thread.

        The model is never shared across threads: a widget's background work runs on its own copy, so the user's
        calls (and the eval-mode switches and hooks they make) never interleave with it. A copy, not one lock per
        model: measured on Lite0 (2-core CPU, one thread), a lock would make a main-thread `activations` call
        (30 ms) wait up to a whole background step (67 ms for ActivationMaximization at 160 px), and it would not
        cover the methods that run the model themselves; the copy costs 19 MB and 32 ms, once per widget and
        again only when the user's weights change.
        """
        twin = Inspector(copy.deepcopy(self.model), self.transform, self.labels, cache_bytes=self.memo.max_bytes, reshape=self.reshape)
        twin._input_shape = self._input_shape  # its layers are found at the input this one last saw, not at 224
        return twin

    def weights_key(self) -> int:
        """Changes whenever any parameter or buffer is replaced or modified in place (training, load_state_dict)."""
        return weights_key(self.model)


def class_scores(output: object) -> torch.Tensor:
    """The class-score tensor of a model output (the first element of a tuple, `.logits` of a dataclass)."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    output = getattr(output, "logits", output)
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise InputError(f"the model returned {shape}, not class scores [N, classes]; pass an image classifier")
    return output
