"""Pruning keeps the head's input, keeps teacher weights, and cuts MACs by the expected amount."""

import pytest
import torch
from torch import nn

from mimir.core import FASHION_MNIST
from mimir.errors import MimirError
from mimir.evaluate import count_macs_params
from mimir.export import load_model, save_model
from mimir.models import list_models, wrap_model
from mimir.prune import parse_scheme, prune
from mimir.prune.channels import kept_channels
from mimir.prune.structure import channel_groups, dependency_graph
from tests.helpers import UsersNet, small_model, tiered

X = torch.zeros(1, 1, 28, 28)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("ratio", tiered([0.3, 0.5, 0.75], {0.5}))   # every model at 0.5 in the fast tier
def test_channels_keep_the_pre_pool_map_and_head(name, ratio):
    teacher = small_model(name).eval()
    student, arch = prune(teacher, f"channels:{ratio}", X)
    with torch.no_grad():
        assert student.forward_features(X).shape == teacher.forward_features(X).shape
    t_fc, s_fc = (m.get_submodule(teacher.classifier_name) for m in (teacher, student))
    assert (s_fc.in_features, s_fc.out_features) == (t_fc.in_features, t_fc.out_features)
    assert torch.equal(s_fc.weight, t_fc.weight)
    t_macs, t_params = count_macs_params(teacher, X)
    s_macs, s_params = count_macs_params(student, X)
    assert s_macs < t_macs and s_params < t_params
    for conv in _inner_roots(teacher):
        c = _width(teacher.get_submodule(conv))
        assert _width(student.get_submodule(conv)) == kept_channels(c, ratio)


def _width(layer):
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


def _inner_roots(model):
    """Layers whose out-channels channels:R prunes (not attention q/k/v: those lose whole heads)."""
    groups = channel_groups(model, dependency_graph(model, X))
    return [g.root for g in groups if not (g.coupled or g.reaches_head or g.attention)]


def _conv_macs(model, x):
    """Independent count: k*k*Cin/groups MACs per conv output element, in*out per linear layer."""
    totals: list[int] = []

    def hook(m, inputs, output):
        totals.append(m.weight[0].numel() * output.numel() if isinstance(m, nn.Conv2d) else m.weight.numel())

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return sum(totals)


def test_resnet20_half_channels_halves_the_block_convs():
    teacher = small_model("resnet20")
    student, _ = prune(teacher, "channels:0.5", X)
    # every block conv loses exactly half its MACs (conv1: half the filters, conv2: half the inputs)
    block_convs = sum(_conv_macs_of(teacher, n) for n in _block_convs(teacher))
    expected = _conv_macs(teacher, X) - block_convs // 2
    assert _conv_macs(student, X) == expected
    t_macs, _ = count_macs_params(teacher, X)
    s_macs, _ = count_macs_params(student, X)
    # Torch-Pruning's count also includes BN/ReLU/add; the conv part dominates the saving
    saving = t_macs - s_macs
    assert block_convs // 2 <= saving <= block_convs // 2 * 1.05
    assert 0.49 < s_macs / t_macs < 0.53


def _block_convs(model):
    return [n for n in dict(model.named_modules()) if n.startswith("layer") and n.endswith(("conv1", "conv2"))]


def _conv_macs_of(model, name):
    out = []
    h = model.get_submodule(name).register_forward_hook(lambda m, i, o: out.append(m.weight[0].numel() * o.numel()))
    with torch.no_grad():
        model.eval()(X)
    h.remove()
    return out[0]


def test_surviving_filters_are_the_teachers_largest():
    teacher = small_model("resnet20")
    student, _ = prune(teacher, "channels:0.5", X)
    t_w = teacher.layer2[1].conv1.weight
    s_w = student.layer2[1].conv1.weight
    l1 = t_w.abs().flatten(1).sum(1)
    kept = torch.sort(torch.argsort(l1, descending=True)[: s_w.shape[0]]).values
    assert torch.equal(s_w, t_w[kept][:, :])


def test_blocks_are_dropped():
    teacher = small_model("resnet20")
    student, arch = prune(teacher, "blocks:layer1.1,layer2.2", X)
    assert isinstance(student.layer1[1], nn.Identity) and isinstance(student.layer2[2], nn.Identity)
    assert arch["dropped_blocks"] == ["layer1.1", "layer2.2"]
    assert count_macs_params(student, X)[0] < count_macs_params(teacher, X)[0]


@pytest.mark.parametrize("blocks,match", [("layer9.0", "unknown or non-droppable block 'layer9.0'"),
                                          ("layer2.0", "non-droppable block 'layer2.0'")])
def test_bad_block_names(blocks, match):
    with pytest.raises(MimirError, match=match):
        prune(small_model("resnet20"), f"blocks:{blocks}", X)


@pytest.mark.parametrize("text", ["channels:0", "channels:1", "channels:-0.2", "channels:1.5", "channels:abc",
                                  "blocks:", "filters:0.5"])
def test_bad_schemes(text):
    with pytest.raises(MimirError):
        parse_scheme(text)


@pytest.mark.parametrize("scheme", ["channels:0.5", "blocks:layer1.1,layer3.2"])
def test_architecture_round_trips_through_a_weights_only_file(tmp_path, scheme):
    teacher = small_model("resnet20")
    student, arch = prune(teacher, scheme, X)
    path = save_model(tmp_path / "s.pt", student, FASHION_MNIST, arch["dropped_blocks"])
    payload = torch.load(path, weights_only=True)
    assert payload["architecture"] == {k: v for k, v in arch.items() if k != "kept_channels"}
    loaded, config, _ = load_model(path)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), student.eval()(x))
    assert config == FASHION_MNIST


def test_users_model_prunes_only_channels_off_the_feature_map():
    wrapped = wrap_model(UsersNet(), 3, 32)
    student, arch = prune(wrapped, "channels:0.5", torch.zeros(1, 3, 32, 32))
    assert student.model.stem[0].out_channels == 4      # free to prune
    assert student.model.trunk[0].out_channels == 16    # writes the pre-pool map: protected


@pytest.mark.parametrize("ratio,round_to", [(0.75, 8), (0.5, 16), (0.3, 8), (0.9, 4)])
def test_round_to_keeps_a_multiple_of_k_channels(ratio, round_to):
    teacher = small_model("resnet20").eval()
    student, _ = prune(teacher, f"channels:{ratio}", X, round_to=round_to)
    for conv in _inner_roots(teacher):
        c = teacher.get_submodule(conv).out_channels
        kept = student.get_submodule(conv).out_channels
        step = round_to if kept_channels(c, ratio) >= round_to else min(round_to, 8)  # below K: multiples of 8
        assert kept % step == 0 or kept == c
        assert step <= kept <= c
        assert abs(kept - kept_channels(c, ratio)) <= step / 2 or kept == step  # nearest multiple, >= the step
    with torch.no_grad():
        assert student.forward_features(X).shape == teacher.forward_features(X).shape


def test_channels_all_also_shrinks_the_residual_widths_but_not_the_pre_pool_map():
    teacher = small_model("resnet20").eval()
    inner, _ = prune(teacher, "channels:0.5", X)
    every, _ = prune(teacher, "channels-all:0.5", X)
    assert inner.conv1.out_channels == teacher.conv1.out_channels == 16   # the stem feeds stage 1's additions
    assert every.conv1.out_channels == 8 and every.layer1[0].conv2.out_channels == 8
    assert every.layer2[0].downsample[0].out_channels == 16
    assert every.layer3[0].conv2.out_channels == 64                        # the last stage reaches the head
    with torch.no_grad():
        assert every.forward_features(X).shape == teacher.forward_features(X).shape
    assert count_macs_params(every, X)[0] < 0.7 * count_macs_params(inner, X)[0]


def test_round_to_is_refused_for_block_dropping():
    from mimir.recipe import Recipe

    with pytest.raises(MimirError, match="--round-to applies to channel pruning"):
        Recipe(prune="blocks:layer1.1", round_to=8)
    with pytest.raises(MimirError, match="--round-to must be a positive integer"):
        Recipe(round_to=0)


def test_mac_budget_prunes_to_just_under_the_budget():
    teacher = small_model("resnet20").eval()
    student, _ = prune(teacher, "macs:0.6", X)
    fraction = count_macs_params(student, X)[0] / count_macs_params(teacher, X)[0]
    assert 0.55 < fraction <= 0.6
    with pytest.raises(MimirError, match="cannot be met"):
        prune(teacher, "macs:0.05", X)       # inner channels alone cannot get ResNet-20 that low


def test_per_layer_ratios_prune_only_the_named_modules():
    teacher = small_model("resnet20").eval()
    student, _ = prune(teacher, "channels:layer1=0.5,layer3.2=0.75", X)
    assert [student.layer1[i].conv1.out_channels for i in range(3)] == [8, 8, 8]
    assert student.layer2[1].conv1.out_channels == 32 and student.layer3[2].conv1.out_channels == 16
    with pytest.raises(MimirError, match="no layer named 'layer9'"):
        prune(teacher, "channels:layer9=0.5", X)


@pytest.mark.parametrize("importance", ["l2", "fpgm", "lamp", "taylor"])
def test_every_criterion_prunes_the_same_widths_and_keeps_the_head(importance):
    teacher = small_model("resnet20").eval()
    images = torch.randn(8, 1, 28, 28)
    student, _ = prune(teacher, "channels:0.5", X, importance=importance, images=images)
    l1, _ = prune(teacher, "channels:0.5", X)
    widths = lambda m: [c.out_channels for n, c in m.named_modules() if isinstance(c, nn.Conv2d)]   # noqa: E731
    assert widths(student) == widths(l1)
    assert torch.equal(student.fc.weight, teacher.fc.weight)
    assert all(p.grad is None for p in student.parameters())       # taylor's curvature is not left behind


def test_global_ranking_prunes_layers_unequally_at_the_same_overall_ratio():
    teacher = small_model("resnet20").eval()
    student, _ = prune(teacher, "channels:0.5", X, global_pruning=True)
    kept = [student.get_submodule(n).out_channels / teacher.get_submodule(n).out_channels for n in _inner_roots(teacher)]
    assert len(set(kept)) > 1
    total = sum(teacher.get_submodule(n).out_channels for n in _inner_roots(teacher))
    assert sum(student.get_submodule(n).out_channels for n in _inner_roots(teacher)) == pytest.approx(total / 2, abs=2)


def test_pruning_options_are_refused_for_block_schemes_and_unknown_criteria():
    from mimir.recipe import Recipe

    with pytest.raises(MimirError, match="--importance applies to channel pruning"):
        Recipe(prune="blocks:layer1.1", importance="taylor")
    with pytest.raises(MimirError, match="--importance must be one of"):
        Recipe(importance="magic")
    with pytest.raises(MimirError):
        parse_scheme("channels:layer1=abc")
