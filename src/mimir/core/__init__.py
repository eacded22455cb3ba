"""The bottom layer: specs and helpers every other package uses, importing nothing of mimir
but :mod:`mimir.errors`."""

from mimir.core.cpu import CpuInfo, cpu_info
from mimir.core.data_config import FASHION_MNIST, IMAGENET, INTERPOLATIONS, DataConfig
from mimir.core.files import atomic_save, atomic_write, cache_root, file_lock
from mimir.core.memo import Memo
from mimir.core.tensors import eval_mode, fingerprint, frozen_except, model_device, seeded_global_rng, trace_target

__all__ = ["FASHION_MNIST", "IMAGENET", "INTERPOLATIONS", "CpuInfo", "DataConfig", "Memo", "atomic_save", "atomic_write",
           "cache_root", "cpu_info", "file_lock", "eval_mode", "fingerprint", "frozen_except", "model_device", "seeded_global_rng",
           "trace_target"]
