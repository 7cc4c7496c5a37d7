"""EmbeddingScatter: a dataset's CNN codes in 2-D (PCA at once, then t-SNE or UMAP), with images on hover."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F
import traitlets

from .. import render
from ..backend.index import Index
from ..backend.index.builder import filmstrip_frames
from ..errors import InputError
from ..methods.embed import DEFAULT_METHOD, FIT_SAMPLE, MAX_GRID, METHODS, embed, grid_layout, grid_shape, normalize, pca
from .base import CnnWidget, array_message, front_end

SPRITE_BYTES = 24 * 2**20
"""The thumbnail sprite sheet is at most this big: thumbnails shrink for large datasets (20 px at 20,000 images)."""
SPRITE_MIN_THUMB = 16
SPRITE_MAX_IMAGES = SPRITE_BYTES // (3 * SPRITE_MIN_THUMB**2)
"""Up to this many images (32,768) all thumbnails go to the browser at once, in one sheet, at 16 px or more; beyond,
the browser asks for the few it shows (hovered, selected, grid cells) with `thumbnail_request`."""
REQUEST_THUMB = 64
"""Side of a thumbnail sent on request when the index keeps none (it is cut from the dataset's image)."""
LIVE_UPDATES_PER_S = 4
"""How often a running t-SNE sends its current layout to the browser."""
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def clip_mosaic(filmstrips: np.ndarray) -> np.ndarray:
    """[N, t, t, 3] square thumbnails of clips from [N, F, t', t', 3] filmstrips: the F frames shrunk and tiled in
    reading order (2×2 for the index's 4), so a dot's thumbnail shows how its clip moves."""
    count, frames, side = filmstrips.shape[0], filmstrips.shape[1], filmstrips.shape[2]
    across = math.ceil(math.sqrt(frames))
    cell = side // across
    small = F.interpolate(torch.from_numpy(np.ascontiguousarray(filmstrips)).flatten(0, 1).permute(0, 3, 1, 2).float(),
                          size=(cell, cell), mode="bilinear", antialias=True, align_corners=False)
    tiles = small.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(count, frames, cell, cell, 3).numpy()
    mosaic = np.full((count, side, side, 3), 255, np.uint8)
    for frame in range(frames):
        row, column = divmod(frame, across)
        mosaic[:, row * cell:(row + 1) * cell, column * cell:(column + 1) * cell] = tiles[:, frame]
    return mosaic


def sprite_sheet(thumbnails: np.ndarray, max_bytes: int = SPRITE_BYTES) -> tuple[np.ndarray, int, int]:
    """All [N, t, t, 3] thumbnails in one image of ceil(√N) columns, shrunk so it stays under `max_bytes`;
    returns (sheet, thumbnail side, columns)."""
    count, side = len(thumbnails), thumbnails.shape[1]
    fitted = max(4, min(side, int(np.sqrt(max_bytes / (3 * max(count, 1))))))
    if fitted < side:
        small = F.interpolate(torch.from_numpy(np.ascontiguousarray(thumbnails)).permute(0, 3, 1, 2).float(),
                              size=(fitted, fitted), mode="bilinear", antialias=True, align_corners=False)
        thumbnails = small.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        side = fitted
    columns = max(1, int(np.ceil(np.sqrt(count))))
    rows = int(np.ceil(count / columns))
    sheet = np.zeros((rows, side, columns, side, 3), np.uint8)
    padded = np.zeros((rows * columns, side, side, 3), np.uint8)
    padded[:count] = thumbnails
    sheet[:] = padded.reshape(rows, columns, side, side, 3).transpose(0, 2, 1, 3, 4)
    return sheet.reshape(rows * side, columns * side, 3), side, columns


class EmbeddingScatter(CnnWidget):
    """The CNN codes of an index's images embedded in 2-D, one dot per image colored by label or prediction;
    hover a dot to see its image, drag to pan, scroll to zoom, shift-drag to select a box of images, or pick
    "select with a lasso" under "drag to" and draw around them (shown below, and in `selection`). Drawn on the CPU
    into the canvas's pixels, it stays fluid at a million points; above SPRITE_MAX_IMAGES the browser asks for the
    thumbnails it shows instead of receiving them all, and layouts are fitted on a sample (methods/embed.py).
    `arrangement="grid"` snaps images to a regular grid by linear assignment (the CS231n t-SNE figure). PCA shows
    at once; t-SNE (the default, openTSNE when installed) or UMAP replaces it when ready, updating live while it
    runs; `wait()` blocks until then.
    """

    _esm = front_end("embedding_scatter")

    method = traitlets.Enum(list(METHODS), DEFAULT_METHOD).tag(sync=True)
    color_by = traitlets.Enum(["label", "prediction"], "label").tag(sync=True)
    arrangement = traitlets.Enum(["scatter", "grid"], "scatter").tag(sync=True)
    """"scatter" (dots) or "grid" (images snapped to a grid); not `layout`, which ipywidgets keeps for CSS layout."""
    points = traitlets.Dict().tag(sync=True)
    grid = traitlets.Dict().tag(sync=True)
    labels = traitlets.Dict().tag(sync=True)
    predictions = traitlets.Dict().tag(sync=True)
    label_names = traitlets.List().tag(sync=True)
    class_names = traitlets.List().tag(sync=True)
    sprite = traitlets.Dict().tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    progress = traitlets.Float(1.0).tag(sync=True)
    selection = traitlets.List(traitlets.Int()).tag(sync=True)
    has_labels = traitlets.Bool(True).tag(sync=True)
    first_id = traitlets.Int(0).tag(sync=True)
    """Image id of the first point (the index's offset): selection and hover speak in image ids."""
    thumbnails_on_request = traitlets.Bool(False).tag(sync=True)
    thumbnail_request = traitlets.Dict().tag(sync=True)
    """From the browser: {"request": id, "images": [image ids]}, answered in `thumbnails` with the same id."""
    thumbnails = traitlets.Dict().tag(sync=True)
    """[n, t, t, 3] uint8 of the images asked for, with the `request` id it answers and the `images` ids."""

    def __init__(self, index: Index, method: str = DEFAULT_METHOD, *, seed: int = 0, **kwargs: object) -> None:
        if not isinstance(index, Index):
            raise InputError(f"EmbeddingScatter needs an index from inspector.index(dataset), not a {type(index).__name__}")
        if index.codes is None:
            raise InputError("this index has no CNN codes; build it with inspector.index(dataset, codes='auto')")
        if len(index) < 5:
            raise InputError(f"an embedding needs at least 5 images; this index has {len(index)}")
        index.check()
        if method not in METHODS:
            raise InputError(f"unknown embedding method {method!r}; pick one of {', '.join(METHODS)}")
        self.index = index
        self._codes: torch.Tensor = index.codes  # [N, D], checked above: what the layouts embed
        self.seed = seed
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._layouts: dict[str, np.ndarray] = {}
        self._ready = False
        has_labels = index.labels is not None
        if kwargs.get("color_by") == "label" and not has_labels:
            raise InputError("the dataset has no labels; use color_by='prediction'")
        kwargs.setdefault("color_by", "label" if has_labels else "prediction")
        super().__init__(method=method, **kwargs)
        self.has_labels = has_labels
        self.labels = array_message((index.predictions if index.labels is None else index.labels).numpy().astype(np.int32))
        self.predictions = array_message(index.predictions.numpy().astype(np.int32))
        self.label_names = index.label_names
        self.class_names = index.class_names
        self.first_id = index.offset
        has_images = index.thumbnails is not None or (index.source is not None and index.source.random_access)
        if index.thumbnails is not None and len(index) <= SPRITE_MAX_IMAGES:
            own = index.thumbnails.numpy()
            sheet, side, columns = sprite_sheet(clip_mosaic(own) if index.is_video else own)
            self.sprite = array_message(sheet, thumb=side, columns=columns, count=len(index), offset=index.offset)
        else:
            self.thumbnails_on_request = has_images
        self._ready = True
        self._start(method)

    # --- layouts ------------------------------------------------------------------------------------------------

    @traitlets.validate("color_by")
    def _check_color_by(self, proposal: dict) -> str:
        if proposal["value"] == "label" and self._ready and not self.has_labels:
            raise InputError("the dataset has no labels; use color_by='prediction'")
        return proposal["value"]

    @traitlets.observe("method")
    def _on_method(self, change: dict) -> None:
        if self._ready:
            self._start(change["new"])

    @traitlets.observe("thumbnail_request")
    def _on_thumbnail_request(self, change: dict) -> None:
        request = change["new"]
        if not self.thumbnails_on_request or not isinstance(request, dict) or not isinstance(request.get("images"), list):
            return
        first, last = self.index.offset, self.index.offset + len(self.index)
        wanted = [image for image in request["images"][:MAX_GRID] if isinstance(image, int) and first <= image < last]
        if not wanted:
            return
        self.thumbnails = array_message(self._thumbnails(wanted), request=request.get("request"), images=wanted)

    def _thumbnails(self, image_ids: list[int]) -> np.ndarray:
        """[n, t, t, 3] uint8 thumbnails of `image_ids`: the index's own, else cut from the dataset's images (clips:
        mosaics of their filmstrip frames)."""
        if self.index.thumbnails is not None:
            own = self.index.thumbnails[torch.as_tensor(image_ids) - self.index.offset].numpy()
            return clip_mosaic(own) if own.ndim == 5 else own  # a clip index keeps [F, t, t, 3] filmstrips
        if self.index.is_video:
            length = self.index.input_shape[1]
            strips = np.stack([self.index.image(i)[filmstrip_frames(length)] for i in image_ids])
            return clip_mosaic(strips)
        pictures = torch.stack([torch.from_numpy(np.ascontiguousarray(self.index.image(i))).permute(2, 0, 1).float()
                                for i in image_ids])
        small = F.interpolate(pictures, size=(REQUEST_THUMB, REQUEST_THUMB), mode="bilinear", antialias=True, align_corners=False)
        return small.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    @traitlets.observe("arrangement")
    def _on_arrangement(self, _change: dict) -> None:
        if self._ready:
            self._show_grid()

    def _start(self, method: str) -> None:
        """Show PCA (or a layout computed before) at once; compute the slower layout in a background thread."""
        self._generation += 1
        generation = self._generation
        if "pca" not in self._layouts:
            with self._working():
                self._layouts["pca"] = pca(self._codes, 2, self.seed, FIT_SAMPLE)
        if method in self._layouts:
            self._set_points(self._layouts[method], method, final=True)
            self.status, self.progress = f"{METHOD_NAMES[method]} of {len(self.index)} images", 1.0
            return
        self._set_points(self._layouts["pca"], "pca", final=False)
        self.status, self.progress = f"PCA shown; computing {METHOD_NAMES[method]}…", 0.0
        self._thread = threading.Thread(target=self._compute, args=(method, generation), daemon=True)
        self._thread.start()

    def _compute(self, method: str, generation: int) -> None:
        started = time.perf_counter()
        last_sent = [0.0]

        def report(fraction: float, layout: np.ndarray | None) -> None:
            if generation != self._generation:
                raise _Superseded
            now = time.perf_counter()
            if fraction < 1.0 and now - last_sent[0] >= 1 / LIVE_UPDATES_PER_S:
                last_sent[0] = now
                self.progress = float(fraction)
                self.status = f"computing {METHOD_NAMES[method]}… {fraction:.0%}"
                if layout is not None and np.isfinite(layout).any():  # a sample fit shows before the rest is placed
                    self._set_points(layout, method, final=False)

        try:
            layout = embed(self._codes, method, self.seed, progress=report, sample=FIT_SAMPLE)
        except _Superseded:
            return
        except Exception as error:  # noqa: BLE001 - shown in the widget; the PCA view stays
            if generation == self._generation:
                self.error = str(error).splitlines()[0] if str(error) else type(error).__name__
                self.status, self.progress = "PCA shown", 1.0
            return
        if generation != self._generation:
            return
        self._layouts[method] = layout
        self._set_points(layout, method, final=True)
        self.error = ""
        self.status = f"{METHOD_NAMES[method]} of {len(self.index)} images ({time.perf_counter() - started:.1f} s)"
        self.progress = 1.0

    def _set_points(self, layout: np.ndarray, method: str, final: bool) -> None:
        self.points = array_message(normalize(layout), method=method, final=final)
        if final:
            self._show_grid()

    def _show_grid(self) -> None:
        if self.arrangement != "grid" or not self.points or not self.points.get("final"):
            return
        with self._working():
            layout = np.frombuffer(self.points["data"], np.float32).reshape(self.points["shape"])
            chosen = self._grid_members(len(layout))
            columns, rows = grid_shape(len(chosen))
            cells = np.full((len(layout), 2), -1, np.int32)
            cells[chosen] = grid_layout(layout[chosen], columns, rows)
            self.grid = array_message(cells, columns=columns, rows=rows, method=self.points["method"])

    @staticmethod
    def _grid_members(count: int) -> np.ndarray:
        if count <= MAX_GRID:
            return np.arange(count)
        return np.unique(np.linspace(0, count - 1, MAX_GRID).round().astype(int))

    def wait(self, timeout: float | None = None) -> EmbeddingScatter:
        """Block until the requested layout is computed (or `timeout` seconds pass); returns the widget."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self

    # --- reading ----------------------------------------------------------------------------------------------

    @property
    def coordinates(self) -> np.ndarray:
        """[N, 2] the layout shown now, scaled into [0, 1]²."""
        return np.frombuffer(self.points["data"], np.float32).reshape(self.points["shape"]).copy()

    def selected_images(self) -> list[np.ndarray]:
        """The pictures of the images in `selection` (as the model sees them)."""
        return [self.index.image(image_id) for image_id in self.selection]

    # --- export -----------------------------------------------------------------------------------------------

    def _figure_png(self) -> bytes:
        import matplotlib.pyplot as plt

        colors = np.frombuffer((self.labels if self.color_by == "label" else self.predictions)["data"], np.int32)
        names = self.label_names if self.color_by == "label" else self.class_names
        points = self.coordinates
        figure, axis = plt.subplots(figsize=(7, 7))
        if self.arrangement == "grid" and self.grid and (self.sprite or self.thumbnails_on_request):
            self._draw_grid(axis)
        else:
            palette = plt.get_cmap("tab10" if colors.max(initial=0) < 10 else "tab20")
            for value in np.unique(colors):
                members = colors == value
                name = names[value] if 0 <= value < len(names) else str(value)
                axis.scatter(points[members, 0], 1 - points[members, 1], s=6 if len(points) <= SPRITE_MAX_IMAGES else 0.2,
                             color=palette(value % palette.N), label=name, rasterized=True)
            if len(np.unique(colors)) <= 20:
                axis.legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)
            if self.selection:
                chosen = np.array(self.selection) - self.index.offset
                axis.scatter(points[chosen, 0], 1 - points[chosen, 1], s=30, facecolors="none", edgecolors="black", linewidths=0.8)
        method = METHOD_NAMES[self.points.get("method", "pca")]
        if self.arrangement == "grid" and self.grid and (self.sprite or self.thumbnails_on_request):
            axis.set_title(f"{method} of {len(points)} CNN codes ({self.index.codes_layer}) snapped to a grid", fontsize=9)
        else:
            axis.set_title(f"{method} of {len(points)} CNN codes ({self.index.codes_layer}), colored by {self.color_by}", fontsize=9)
        axis.set_aspect("equal")
        axis.axis("off")
        return render.figure_png(figure)

    def _draw_grid(self, axis) -> None:
        cells = np.frombuffer(self.grid["data"], np.int32).reshape(self.grid["shape"])
        members = np.flatnonzero(cells[:, 0] >= 0)
        if self.sprite:
            side, sheet_columns = self.sprite["thumb"], self.sprite["columns"]
            sheet = np.frombuffer(self.sprite["data"], np.uint8).reshape(self.sprite["shape"])
            pictures = [sheet[sy * side:(sy + 1) * side, sx * side:(sx + 1) * side]
                        for sy, sx in (divmod(int(image), sheet_columns) for image in members)]
        else:
            pictures = list(self._thumbnails((members + self.index.offset).tolist()))
            side = pictures[0].shape[0]
        columns, rows = self.grid["columns"], self.grid["rows"]
        canvas = np.full((rows * side, columns * side, 3), 255, np.uint8)
        for picture, (column, row) in zip(pictures, cells[members]):
            canvas[row * side:(row + 1) * side, column * side:(column + 1) * side] = picture
        axis.imshow(canvas)


class _Superseded(Exception):
    """Raised inside a running layout's progress callback when a newer method was asked for, to stop it."""
