"""cnnwidgets: live Jupyter widgets that show what a convolutional network sees."""

from . import methods, zoo
from .backend import Inspector, LayerInfo, Preprocess
from .errors import InputError, LayerNotFoundError
from .widgets import LayerExplorer

__all__ = ["Inspector", "InputError", "LayerExplorer", "LayerInfo", "LayerNotFoundError", "Preprocess", "methods", "zoo"]
__version__ = "0.1.0"
