"""The baselines: FSKD's closed form, CD's per-layer loss, PRACTISE's ranking, and that every
method beats the untrained pruned student on real Fashion-MNIST images."""

import pytest
import torch
from torch import nn

from mimir import api
from mimir.data import LabeledImages, sample_indices
from mimir.evaluate import accuracy
from mimir.methods import MethodInput, TrainConfig, get_method, list_methods
from mimir.methods._layers import capture, pruned_convs
from mimir.methods.cd import cross_distill_layer
from mimir.methods.fskd import absorb, least_squares
from mimir.methods.practise import select_blocks
from mimir.models.anatomy import residual_blocks
from mimir.prune import prune

X = torch.zeros(1, 1, 28, 28)


def _few(train, n, seed=0) -> LabeledImages:
    return train.subset(sample_indices(len(train), n, seed, labels=train.labels))


# ----------------------------------------------------------------------------- FSKD
def test_fskd_q_is_the_least_squares_optimum():
    torch.manual_seed(0)
    s = torch.randn(6, 5, 4, 4)
    t = s[:, [0, 2, 4]] * 2 + 0.3 * torch.randn(6, 3, 4, 4)
    q = least_squares(s, t)
    s_flat = s.permute(0, 2, 3, 1).reshape(-1, 5).double()
    t_flat = t.permute(0, 2, 3, 1).reshape(-1, 3).double()
    direct = torch.linalg.lstsq(s_flat, t_flat).solution
    assert torch.allclose(q, direct, atol=1e-9)
    # and it is optimal: any perturbation increases the residual
    res = (s_flat @ q - t_flat).pow(2).sum()
    assert (s_flat @ (q + 1e-3 * torch.randn_like(q)) - t_flat).pow(2).sum() > res


@pytest.mark.parametrize("with_bn", [True, False])
def test_absorbing_q_leaves_the_layer_output_unchanged(with_bn):
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=not with_bn)
    bn = nn.BatchNorm2d(6) if with_bn else None
    if bn is not None:
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.normal_()
        bn.bias.data.normal_()
        bn.eval()
    q = torch.randn(6, 6, dtype=torch.float64)
    x = torch.randn(3, 4, 8, 8)
    with torch.no_grad():
        pre = bn(conv(x)) if bn is not None else conv(x)
        expected = torch.einsum("nihw,ij->njhw", pre.double(), q).float()  # the 1x1 conv Q after the layer
        absorb(conv, bn, q)
        after = bn(conv(x)) if bn is not None else conv(x)
    assert conv.weight.shape == (6, 4, 3, 3)
    assert torch.allclose(after, expected, atol=1e-4, rtol=1e-4)


def test_fskd_fits_every_pruned_layer_better(teacher20, fmnist_train):
    teacher, config = teacher20
    student, arch = prune(teacher, "channels:0.5", X)
    few = _few(fmnist_train, 100).without_labels()
    layers = pruned_convs(teacher, student, arch, X, "fskd")
    assert len(layers) == 18  # conv1 and conv2 of the 9 blocks
    last = layers[-1]
    before = (capture(student, last.bn, few.images, config)
              - capture(teacher, last.bn, few.images, config)[:, last.kept_out]).pow(2).mean()
    model = get_method("fskd")(MethodInput(teacher, student, few, config, TrainConfig(), arch=arch, progress=False))
    after = (capture(model, last.bn, few.images, config)
             - capture(teacher, last.bn, few.images, config)[:, last.kept_out]).pow(2).mean()
    assert after < 0.5 * before


# ----------------------------------------------------------------------------- CD
def test_cd_per_layer_loss_falls(teacher20, fmnist_train):
    teacher, config = teacher20
    student, arch = prune(teacher, "channels:0.5", X)
    images = _few(fmnist_train, 100).images
    layers = [l for l in pruned_convs(teacher, student, arch, X, "cd")
              if len(l.kept_in) < teacher.get_submodule(l.conv).in_channels]
    assert [l.conv for l in layers] == [f"layer{s}.{b}.conv2" for s in (1, 2, 3) for b in (0, 1, 2)]
    for layer in layers[3:5]:
        x_t = capture(teacher, layer.conv, images, config, want="input")
        x_s = capture(student, layer.conv, images, config, want="input")
        losses = cross_distill_layer(student.get_submodule(layer.conv), teacher.get_submodule(layer.conv), x_t, x_s,
                                     layer.kept_out, layer.kept_in, 0.6, 80, 1e-3, 64,
                                     torch.Generator().manual_seed(0))
        first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
        assert last < 0.6 * first, (layer.conv, first, last)


# ----------------------------------------------------------------------------- PRACTISE
@pytest.mark.slow
def test_practise_ranking_is_deterministic_and_drops_k(teacher20, fmnist_train):
    teacher, config = teacher20
    few = _few(fmnist_train, 50, seed=4).without_labels()   # the draw compress() makes with seed 4
    cfg = TrainConfig(iterations=8)   # each candidate adaptor's steps (the option practise_iterations)
    chosen_a, ranking_a = select_blocks(teacher, few, config, 3, cfg, seed=4, progress=False)
    chosen_b, ranking_b = select_blocks(teacher, few, config, 3, cfg, seed=4, progress=False)
    assert ranking_a == ranking_b and chosen_a == chosen_b
    assert len(chosen_a) == 3 and len(set(chosen_a)) == 3
    assert {r["block"] for r in ranking_a} == set(residual_blocks(teacher))
    scores = [r["score"] for r in ranking_a]
    assert scores == sorted(scores) and chosen_a == [r["block"] for r in ranking_a[:3]]

    result = api.compress(teacher, data=fmnist_train, samples=50, prune="blocks:auto:3", method="practise",
                          iterations=2, options={"practise_iterations": 8}, seed=4, data_config=config,
                          eval_data=None, progress=False)
    assert result.summary["dropped_blocks"] == chosen_a
    assert sum(isinstance(m, nn.Identity) for n, m in result.model.named_modules() if n in chosen_a) == 3


# ----------------------------------------------------------------------------- every method
SHORT = {"cd_steps": 50, "practise_iterations": 20}   # and 100 iterations


@pytest.mark.slow
@pytest.mark.parametrize("method", [m for m in list_methods() if m != "none"])
def test_every_method_improves_on_none(teacher20, fmnist_train, test_subset, method):
    teacher, config = teacher20
    scheme = "blocks:layer1.1,layer2.1,layer2.2,layer3.1" if method == "practise" else "channels:0.5"
    few = _few(fmnist_train, 100)
    student, arch = prune(teacher, scheme, X)
    floor = accuracy(student, test_subset, config)
    m = get_method(method)
    samples = few if m.needs_labels else few.without_labels()
    options = {k: v for k, v in SHORT.items() if k in m.options}
    model = m(MethodInput(teacher, student, samples, config, TrainConfig(iterations=100), seed=0, options=options,
                          progress=False, arch=arch))
    acc = accuracy(model, test_subset, config)
    assert acc >= floor + 10, (method, floor, acc)


# ----------------------------------------------------------------------------- labels
@pytest.mark.slow
@pytest.mark.parametrize("method", [m for m in list_methods() if not get_method(m).needs_labels] + ["bp"])
def test_label_free_methods_cannot_reach_labels(teacher20, fmnist_train, method):
    """Same images, labels scrambled: a label-free method must give bit-identical weights.
    ``bp`` is the control: it uses labels, so its weights must change."""
    teacher, config = teacher20
    few = _few(fmnist_train, 24, seed=3)
    scrambled = LabeledImages(few.images, (few.labels + 1 + torch.arange(24) % 9) % 10, few.classes)
    prune_scheme = "blocks:auto:1" if method == "practise" else "channels:0.5"
    kwargs = dict(samples=24, seed=0, prune=prune_scheme, method=method, iterations=3, data_config=config,
                  eval_data=None, progress=False,
                  options={k: v for k, v in {"cd_steps": 3, "practise_iterations": 3}.items()
                           if k in get_method(method).options})   # each method takes only its own options
    a = api.compress(teacher, data=few, **kwargs).model.state_dict()
    b = api.compress(teacher, data=scrambled, **kwargs).model.state_dict()
    same = all(torch.equal(a[k], b[k]) for k in a)
    assert same == (method != "bp")
