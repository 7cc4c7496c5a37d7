"""What every cnnwidgets widget shares: its built front end, error and busy state, strict keyword arguments, and
refusal of bad values.

Refusing a bad value, wherever it comes from: every `@traitlets.validate` of a widget raises `InputError`; the base
turns it into `RefusedValue` (an `InputError` that is also a `traitlets.TraitError`), because traitlets rolls a
change back only on `TraitError`, also inside `hold_trait_notifications()` where the browser's updates land. The
trait keeps its last good value, `error` says why in one line, no observer runs, so the view is unchanged; a value
refused from the browser is sent back to it, so its control returns to the good value too.

The request protocol, which a new widget follows:

* **State** is a synced trait. A control that needs Python work (a drag, a layer pick) sets its traits and a
  `request` id (`RequestStamp.next()` in `js/src/shared/requests.js`), in one message; the answer trait carries
  `request` back (`answer(...)` below), and the front end draws only the answer to its newest request
  (`RequestStamp.accept`). Changes from Python alone (no request) are answered with the current id.
* **Actions** (start, stop, reset, run the sanity check, grow a fooling image) go one way: the front end sends the
  custom message `{"action": name}` (`sendAction` in `js/src/shared/actions.js`); the widget runs the method
  `name` if it is listed in its `ACTIONS`. No counter traits, no flipped state.
* **Long work** runs on the widget's `Jobs` runner (`cnnwidgets.widgets.jobs`): a newer request cancels the older
  work, errors go to `error` with the last good view kept, `busy` and `progress` show it.
* **Errors**: `error` holds one line, `busy` is true while Python works.

One meaning per trait name, in every widget: `target` (and `fool_target`) is a class index, an Int, with -1 for
the top class of the widget's image (an untargeted attack moves away from it); constructors also take a class name.
`layers` (or `layer_names`) lists the layers a widget offers to pick from; the picked one is `layer`, several
picked ones `selected_layers` (a constructor's `layers=` argument may choose them).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anywidget
import torch
import traitlets

from ..backend import Inspector
from ..errors import InputError
from .arrays import array_message as array_message  # re-exported: EmbeddingScatter imports it from here

STATIC = pathlib.Path(__file__).resolve().parent.parent / "static"


NOT_BUILT = "// cnnwidgets front end not built"


def front_end(name: str) -> pathlib.Path | str:
    """The built JS module of widget `name` (js/src/<name>.js bundled into cnnwidgets/static/).

    When it is not built yet the package still imports (the backend and methods need no JS); creating the
    widget then says how to build it.
    """
    path = STATIC / f"{name}.js"
    return path if path.is_file() else NOT_BUILT


class RefusedValue(InputError, traitlets.TraitError):
    """A trait value a widget's validator refused; traitlets rolls the change back because it is a TraitError."""


def _refusing(handler: Callable[[CnnWidget, Any], object]) -> Callable[[CnnWidget, Any], object]:
    """`handler` (a trait validator) with its InputError raised as a RefusedValue, which traitlets rolls back."""

    def validate(widget: CnnWidget, proposal: Any) -> object:
        try:
            return handler(widget, proposal)
        except InputError as error:
            raise refused(error) from None

    return validate


def refused(error: InputError) -> RefusedValue:
    """`error` as a RefusedValue of its own class too (a LayerNotFoundError stays one), with the same message."""
    if isinstance(error, RefusedValue):
        return error
    if type(error) is InputError:
        return RefusedValue(*error.args)
    kind = _REFUSED_KINDS.get(type(error))
    if kind is None:
        kind = _REFUSED_KINDS[type(error)] = type(f"Refused{type(error).__name__}", (type(error), RefusedValue), {})
    copy: RefusedValue = Exception.__new__(kind)
    copy.__dict__.update(error.__dict__)
    copy.args = error.args
    return copy


_REFUSED_KINDS: dict[type, type] = {}


def top_predictions(inspector: Inspector, probabilities: torch.Tensor, k: int = 5) -> list[dict]:
    """The value of a `predictions` trait, the same in every widget: the top-`k` classes of one image, most probable
    first, each {"index", "label", "probability"}."""
    top = probabilities.topk(min(k, len(probabilities)))
    return [{"index": int(i), "label": inspector.label(int(i)), "probability": float(p)} for p, i in zip(top.values, top.indices)]


def one_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none): what `error` shows."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


class CnnWidget(anywidget.AnyWidget):
    """Base of the widgets: `error` shows the last problem while the view keeps its last good state."""

    error = traitlets.Unicode("").tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
    progress = traitlets.Float(1.0).tag(sync=True)
    request = traitlets.Int(0).tag(sync=True)

    ACTIONS: tuple[str, ...] = ()
    """Methods the front end may call with the custom message {"action": name}."""

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
        self.on_msg(self._on_action)

    def _on_action(self, _widget: object, content: object, _buffers: object) -> None:
        """A one-way action from the front end: run the method it names, if this widget lists it in ACTIONS."""
        name = content.get("action") if isinstance(content, dict) else None
        if name in self.ACTIONS:
            try:
                getattr(self, name)()
            except Exception as error:  # noqa: BLE001 - shown in the widget, not as a traceback in the kernel log
                self.error = one_line(error)

    def answer(self, **message: object) -> dict:
        """An answer trait's value for the current request: `message` with the `request` id it answers."""
        return {"request": self.request, **message}

    def __setattr__(self, name: str, value: object) -> None:
        """Setting a trait from Python: a refused value raises, and `error` says why (the trait keeps its value)."""
        try:
            super().__setattr__(name, value)
        except traitlets.TraitError as error:
            if name != "error":
                self.error = one_line(error)
            raise

    def _register_validator(self, handler: Callable[..., object], names: tuple) -> None:
        super()._register_validator(_refusing(handler), names)

    @contextmanager
    def hold_trait_notifications(self) -> Iterator[None]:
        """traitlets' context manager, with `error` set after a refused value is rolled back (the rollback would
        undo an `error` set while the notifications are held)."""
        try:
            with super().hold_trait_notifications():
                yield
        except traitlets.TraitError as error:
            self.error = one_line(error)
            raise

    def set_state(self, sync_data: dict) -> None:
        """An update from the browser: a refused value is rolled back (all of the message's values with it), the
        browser gets the good values back, and `error` says why, instead of a traceback in the kernel's log."""
        try:
            super().set_state(sync_data)
        except traitlets.TraitError:
            self.send_state([name for name in sync_data if name in self.keys])

    @contextmanager
    def _working(self) -> Iterator[None]:
        """Mark the widget busy while Python computes, and show any error without losing the last good view."""
        self.busy = True
        try:
            yield
            self.error = ""
        except Exception as error:
            self.error = one_line(error)
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
