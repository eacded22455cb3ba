"""Few-sample data: Fashion-MNIST, users' image folders, the seeded sampler, augmentation."""

from mimir.core import FASHION_MNIST, DataConfig
from mimir.data.datasets import LabeledImages, UnlabeledImages
from mimir.data.fashion_mnist import load_fashion_mnist
from mimir.data.few_sample import sample_indices
from mimir.data.folder import (
                               FolderIndex,
                               LabeledImageFiles,
                               index_folder,
                               load_folder,
                               load_image_folder,
                               load_labeled_folder,
                               sample_folder,
)
from mimir.data.transforms import Augment, center_crop, normalize

__all__ = [
    "FASHION_MNIST", "Augment", "DataConfig", "FolderIndex", "LabeledImageFiles", "LabeledImages", "UnlabeledImages",
    "center_crop", "index_folder", "load_fashion_mnist", "load_folder", "load_image_folder", "load_labeled_folder",
    "normalize", "sample_folder", "sample_indices",
]
