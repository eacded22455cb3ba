"""Models split into body (-> pre-pool feature map) and head (global pool + classifier)."""

from mimir.models import cifar_resnet, torchvision_models, vgg  # noqa: F401  (registration)
from mimir.models._base import SplitModel
from mimir.models._registry import accepts, list_models, model_entrypoint, register_model
from mimir.models.custom import WrappedModel, build_from_factory, wrap_model
from mimir.models.factory import create_model, is_model
from mimir.models.timm_models import TimmModel, create_timm_model, is_timm_model, timm_name

__all__ = ["SplitModel", "TimmModel", "WrappedModel", "accepts", "build_from_factory", "create_model", "create_timm_model",
           "is_model", "is_timm_model", "list_models", "model_entrypoint", "register_model", "timm_name",
           "wrap_model"]
