"""Any timm model, by name: ``timm:NAME`` (``timm:resnet50``, ``timm:deit_tiny_patch16_224``).

timm already gives every model the split mimir needs: ``forward_features`` returns the map
before global pooling (a CNN's last feature map, a ViT's token sequence after its final norm) and
``forward_head(x, pre_logits=...)`` pools and classifies. The head is whatever ``forward_head``
runs (a ConvNeXt's norm, a MobileNetV3's 1x1 conv, a ViT's fc_norm), found by running it once.
Nothing is downloaded: weights come from the user's file.
"""

from __future__ import annotations

import timm
import timm.data
import torch
from torch import nn

from mimir.core import INTERPOLATIONS, DataConfig, eval_mode
from mimir.errors import MimirError
from mimir.models._base import SplitModel
from mimir.models._registry import register_model

PREFIX = "timm:"

#: families tested in tests/models/test_timm.py, with a small variant of each (see ``mimir models --timm``)
TESTED_FAMILIES = {
    "ResNet": "resnet18", "ResNet-D": "resnet18d", "RegNet": "regnetx_002", "EfficientNet": "efficientnet_b0",
    "MobileNetV3": "mobilenetv3_small_050", "ConvNeXt": "convnext_atto", "DeiT": "deit_tiny_patch16_224",
    "ViT": "vit_tiny_patch16_224", "ViT hybrid (ResNetV2 stem)": "vit_tiny_r_s16_p8_224",
}
#: construction arguments that make the transformers of TESTED_FAMILIES small enough to test
TEST_SIZES = {"deit_tiny_patch16_224": {"img_size": 32}, "vit_tiny_patch16_224": {"img_size": 32, "depth": 4},
              "vit_tiny_r_s16_p8_224": {"img_size": 64}}


def timm_name(name: str) -> str | None:
    """``NAME`` for ``timm:NAME``, else None."""
    return name[len(PREFIX):] if isinstance(name, str) and name.startswith(PREFIX) else None


def is_timm_model(name: str) -> bool:
    inner = timm_name(name)
    return inner is not None and timm.is_model(inner)


class TimmModel(SplitModel):
    """A timm model under mimir's split; ``self.model`` is the timm module itself."""

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__()
        if not timm.is_model(name):
            close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
            raise MimirError(f"timm has no model '{name}'",
                             f"use a name from timm.list_models(), e.g. {', '.join(close) or 'resnet50'}")
        try:
            self.model = timm.create_model(name, pretrained=False, **kwargs)
        except TypeError as err:
            raise MimirError(f"timm model '{name}' does not take these arguments ({err})",
                             "drop the argument, or choose a model that has it") from None
        classifier = self.model.pretrained_cfg.get("classifier")
        if not isinstance(classifier, str):  # e.g. distilled models with two heads
            raise MimirError(f"timm model '{name}' has {len(classifier or ())} classifier heads",
                             "mimir needs one head; choose a model with a single classifier")
        self.classifier_name = f"model.{classifier}"
        self._head_names: list[str] | None = None

    def default_data_config(self) -> DataConfig:
        """timm's own data config for this model (``resolve_data_config``: mean, std,
        interpolation, crop_pct), with the input size and channels of *this* instance (a ViT built
        with ``img_size=28`` expects 28 px, whatever its pretrained_cfg says)."""
        cfg = timm.data.resolve_data_config({}, model=self.model)
        in_chans = next((m.in_channels for m in self.model.modules() if isinstance(m, nn.Conv2d)), cfg["input_size"][0])
        size = cfg["input_size"][-1]
        fixed = getattr(getattr(self.model, "patch_embed", None), "img_size", None)
        if fixed is not None and getattr(self.model.patch_embed, "strict_img_size", True):
            size = int(fixed[-1])
        mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
        if len(mean) != in_chans:  # e.g. a 1-channel model: the average of timm's per-channel values
            mean, std = (sum(mean) / len(mean),) * in_chans, (sum(std) / len(std),) * in_chans
        interpolation = cfg.get("interpolation", "bilinear")
        return DataConfig(in_chans, size, mean, std, int(self.model.num_classes),
                          interpolation if interpolation in INTERPOLATIONS else "bilinear", float(cfg.get("crop_pct", 0.875)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.model.forward_head(features, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def trace_target(self) -> nn.Module:
        return self.model

    def head_module_names(self) -> list[str]:
        """The outermost modules with parameters that ``forward_head`` runs (found once, on a
        random input of the model's size)."""
        if self._head_names is None:
            names = {m: n for n, m in self.named_modules()}
            used: list[str] = []
            hooks = [m.register_forward_hook(lambda mod, a, o: used.append(names[mod]))
                     for m in self.model.modules() if any(True for _ in m.parameters(recurse=False))]
            config = self.default_data_config()
            size = (config.in_chans, config.input_size, config.input_size)
            param = next(self.parameters())
            try:
                with eval_mode(self), torch.no_grad():
                    features = self.forward_features(torch.zeros(1, *size, dtype=param.dtype, device=param.device))
                    used.clear()
                    self.forward_head(features)
            finally:
                for h in hooks:
                    h.remove()
            outer = [n for n in dict.fromkeys(used) if not any(n.startswith(o + ".") for o in used)]
            self._head_names = outer or [self.classifier_name]
        return list(self._head_names)


def create_timm_model(name: str, **kwargs) -> TimmModel:
    """``timm:NAME`` with random weights and ``kwargs`` passed to ``timm.create_model``."""
    inner = timm_name(name)
    if inner is None:
        raise MimirError(f"'{name}' is not a timm model name", "write timm:NAME, e.g. timm:resnet50")
    model = TimmModel(inner, **kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model


@register_model
def vit_p7(num_classes: int = 10, in_chans: int = 1) -> TimmModel:
    """A small timm VisionTransformer for 28 px images: 7 px patches (a 4 x 4 grid + class token),
    width 128, 6 blocks of 4 heads, MLP 512 (the bundled Fashion-MNIST ViT teacher)."""
    return TimmModel("vit_tiny_patch16_224", img_size=28, patch_size=7, embed_dim=128, depth=6, num_heads=4,
                     in_chans=in_chans, num_classes=num_classes)
