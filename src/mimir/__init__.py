"""mimir: compress a trained network with a few unlabeled images (MiR and its baselines).

    import mimir
    result = mimir.compress("resnet20", data="fashion-mnist", samples=500, prune="channels:0.5")
    print(result.summary["compressed"])
    result.save("resnet20_mir.pt")
    model = mimir.load("resnet20_mir.pt")        # eval mode; model.data_config, model.mimir_info
    mimir.quantize("resnet20_mir.pt", "resnet20_mir.int8.onnx")   # int8, calibrated on its few samples
"""

from mimir._version import __version__
from mimir.api import CompressResult, compress, evaluate, export, latency, load_teacher, quantize, train_teacher
from mimir.core import DataConfig
from mimir.errors import MimirError
from mimir.export import load, load_model, save_model
from mimir.methods import list_methods
from mimir.models import create_model, list_models, wrap_model
from mimir.recipe import Recipe, load_recipe

__all__ = [
    "CompressResult", "DataConfig", "MimirError", "Recipe", "__version__", "compress", "create_model", "evaluate", "export", "latency", "list_methods",
    "list_models", "load", "load_model", "load_recipe", "load_teacher", "quantize", "save_model", "train_teacher", "wrap_model",
]
