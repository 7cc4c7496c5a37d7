"""What every cnnwidgets widget shares: its built front end, error and busy state, strict keyword arguments."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from contextlib import contextmanager

import anywidget
import numpy as np
import traitlets

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"


NOT_BUILT = "// cnnwidgets front end not built"


def front_end(name: str) -> pathlib.Path | str:
    """The built JS module of widget `name` (js/src/<name>.js bundled into cnnwidgets/static/).

    When it is not built yet the package still imports (the backend and methods need no JS); creating the
    widget then says how to build it.
    """
    path = STATIC / f"{name}.js"
    return path if path.is_file() else NOT_BUILT


def array_message(array: np.ndarray, **metadata: object) -> dict:
    """A numpy array as a synced-trait value: raw bytes (sent as a binary buffer, not base64), dtype and shape."""
    array = np.ascontiguousarray(array)
    return {"data": array.tobytes(), "dtype": str(array.dtype), "shape": list(array.shape), **metadata}


class CnnWidget(anywidget.AnyWidget):
    """Base of the widgets: `error` shows the last problem while the view keeps its last good state."""

    error = traitlets.Unicode("").tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)

    def __init__(self, **kwargs: object) -> None:
        unknown = sorted(set(kwargs) - set(self.class_trait_names(sync=True)) - {"layout"})
        if unknown:
            valid = sorted(name for name in self.class_trait_names(sync=True) if not name.startswith("_"))
            raise TypeError(f"{type(self).__name__} got unexpected arguments {unknown}; valid ones are {valid}")
        if self._esm == NOT_BUILT:
            raise RuntimeError(
                f"the front end of {type(self).__name__} is not built; run `npm --prefix js ci && npm --prefix js run build` "
                "in the cnnwidgets checkout, or reinstall the package"
            )
        super().__init__(**kwargs)

    @contextmanager
    def _working(self) -> Iterator[None]:
        """Mark the widget busy while Python computes, and show any error without losing the last good view."""
        self.busy = True
        try:
            yield
            self.error = ""
        except Exception as error:
            self.error = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise
        finally:
            self.busy = False

    def to_png(self, path: str | pathlib.Path | None = None) -> bytes:
        """A PNG picture of what the widget shows, for notebooks on GitHub and slides; written to `path` if given."""
        png = self._figure_png()
        if path is not None:
            pathlib.Path(path).write_bytes(png)
        return png

    def _figure_png(self) -> bytes:
        raise NotImplementedError
