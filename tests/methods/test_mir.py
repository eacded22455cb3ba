"""MiR learns on real Fashion-MNIST images, with no labels, and keeps the teacher's head."""

import pytest
import torch

from mimir.data import LabeledImages, UnlabeledImages, sample_indices
from mimir.evaluate import accuracy, feature_mse
from mimir.methods import MethodInput, TrainConfig, get_method
from mimir.prune import prune


def _few(train, n, seed=0) -> LabeledImages:
    return train.subset(sample_indices(len(train), n, seed, labels=train.labels))




@pytest.mark.parametrize("method,min_gain", [("mir", 40.0), ("mir-postpool", 30.0)])
def test_short_run_recovers_the_pruned_student(teacher20, fmnist_train, test_subset, method, min_gain):
    teacher, config = teacher20
    few = _few(fmnist_train, 100, seed=0)
    student, _ = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))
    teacher_acc = accuracy(teacher, test_subset, config)
    pruned_acc = accuracy(student, test_subset, config)
    mse_before = feature_mse(student, teacher, few, config)
    cfg = TrainConfig(iterations=150)
    model = get_method(method)(MethodInput(teacher, student, few.without_labels(), config, cfg, seed=0,
                                           progress=False))
    acc = accuracy(model, test_subset, config)
    mse_after = feature_mse(model, teacher, few, config)
    # pruning half the inner channels wrecks the teacher; 150 label-free steps must bring it back
    assert teacher_acc > 90 and pruned_acc < 60
    assert acc >= pruned_acc + min_gain, (pruned_acc, acc)
    assert acc > teacher_acc - 8, (teacher_acc, acc)
    assert mse_after < 0.5 * mse_before, (mse_before, mse_after)


def test_mir_recovers_the_pruned_bundled_vit(fmnist_train, test_subset):
    """The bundled ViT (timm VisionTransformer) with half of each MLP and 2 of 4 heads per block
    pruned: 150 label-free steps mimicking all 17 tokens win back a wide margin."""
    from mimir.export import load_model
    from mimir.teachers import bundled_teacher_path

    teacher, config, _ = load_model(bundled_teacher_path("vit_p7"))
    student, _ = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))
    assert student.model.blocks[0].attn.num_heads == 2
    teacher_acc, pruned_acc = accuracy(teacher, test_subset, config), accuracy(student, test_subset, config)
    few = _few(fmnist_train, 100, seed=0).without_labels()
    model = get_method("mir")(MethodInput(teacher, student, few, config, TrainConfig(iterations=150), seed=0,
                                          progress=False))
    acc = accuracy(model, test_subset, config)
    # measured: teacher 89.05, pruned 70.65, after 150 steps 81.05 (2,000 test images)
    assert teacher_acc > 87 and pruned_acc < teacher_acc - 10
    assert acc >= pruned_acc + 6, (pruned_acc, acc)


def test_replace_gives_an_exact_copy_of_the_teachers_head(teacher20, fmnist_train):
    teacher, config = teacher20
    student, _ = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))
    with torch.no_grad():
        student.fc.weight.add_(1.0)  # a head that drifted must be replaced, not kept
    few = _few(fmnist_train, 20).without_labels()
    model = get_method("mir")(MethodInput(teacher, student, few, config, TrainConfig(iterations=3), progress=False))
    assert torch.equal(model.fc.weight, teacher.fc.weight) and torch.equal(model.fc.bias, teacher.fc.bias)
    assert model.fc.weight.data_ptr() != teacher.fc.weight.data_ptr()


@pytest.mark.parametrize("method", ["mir", "mir-postpool", "none"])
def test_label_free_methods_refuse_labelled_samples(teacher20, fmnist_train, method):
    teacher, config = teacher20
    student, _ = prune(teacher, "channels:0.5", torch.zeros(1, 1, 28, 28))
    with pytest.raises(TypeError, match="label-free"):
        get_method(method)(MethodInput(teacher, student, _few(fmnist_train, 10), config,
                                       TrainConfig(iterations=1), progress=False))


def test_compress_hands_label_free_methods_no_labels(monkeypatch):
    """Spy on what the method receives through the public API: images only, no labels anywhere."""
    from mimir import api
    from mimir.methods.mir import MiR

    seen = {}

    def spy(self, inp):
        seen["type"] = type(inp.samples)
        seen["has_labels"] = any("label" in name for name in vars(inp.samples))
        return inp.student.eval()

    monkeypatch.setattr(MiR, "run", spy)
    result = api.compress("resnet20", samples=30, iterations=1, eval_data=None, progress=False)
    assert seen == {"type": UnlabeledImages, "has_labels": False}
    assert result.summary["used_labels"] is False
