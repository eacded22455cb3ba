"""Teachers: the trained ones bundled with mimir, and how to train a new one on Fashion-MNIST."""

from mimir.teachers.bundled import BUNDLE_DIR, bundled_teacher_path, bundled_teachers
from mimir.teachers.training import fashion_mnist_model, train_teacher

__all__ = ["BUNDLE_DIR", "bundled_teacher_path", "bundled_teachers", "fashion_mnist_model", "train_teacher"]
