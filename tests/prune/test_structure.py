"""One meaning of each scheme: read off the structure, so the same layers give the same student
whether they arrive as a registry model or as a user's own module."""

import pytest
import torch
import torchvision

from mimir.models import create_model, wrap_model
from mimir.models.anatomy import residual_blocks
from mimir.prune import prune
from mimir.prune.structure import channel_groups, dependency_graph


def _registry_and_own(name):
    """A registry model and the same architecture and weights as a user's plain module."""
    torch.manual_seed(0)
    if name == "resnet20":
        registry = create_model("resnet20", num_classes=10, in_chans=3)
        own = create_model("resnet20", num_classes=10, in_chans=3)   # its class, called as a plain module
    elif name == "resnet18":
        registry = create_model("resnet18", num_classes=10)
        own = torchvision.models.resnet18(num_classes=10)
    else:
        registry = create_model("mobilenet_v2", num_classes=10)
        own = torchvision.models.mobilenet_v2(num_classes=10)
    own.load_state_dict(registry.state_dict())
    return registry.eval(), wrap_model(own, 3, 64)


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("scheme", ["channels:0.5", "channels-all:0.5"])
def test_registry_model_and_own_module_give_the_same_student(name, scheme):
    registry, own = _registry_and_own(name)
    x = torch.zeros(1, 3, 64, 64)
    a, arch_a = prune(registry, scheme, x)
    b, arch_b = prune(own, scheme, x)
    strip = lambda d: {k.removeprefix("model."): v for k, v in d.items()}   # noqa: E731
    assert strip(arch_b["kept_channels"]["out"]) == arch_a["kept_channels"]["out"]
    state_a, state_b = a.state_dict(), strip(b.state_dict())
    assert set(state_a) == set(state_b)
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    with torch.no_grad():
        images = torch.randn(2, 3, 64, 64)
        assert torch.allclose(a(images), b(images), atol=1e-5)


def test_inner_channels_by_structure():
    """channels:R prunes a bottleneck's two inner widths and an inverted residual's expansion, never
    a width an addition ties together; a plain VGG prunes every conv but the last."""
    resnet50 = create_model("resnet50", num_classes=10, small_input=True).eval()
    x = torch.zeros(1, 3, 32, 32)
    groups = {g.root: g for g in channel_groups(resnet50, dependency_graph(resnet50, x))}
    assert not groups["layer1.0.conv1"].coupled and not groups["layer1.0.conv2"].coupled
    assert groups["layer1.0.conv3"].coupled and groups["layer4.0.conv3"].reaches_head
    vgg = create_model("vgg16_bn", num_classes=10).eval()
    vgg_groups = channel_groups(vgg, dependency_graph(vgg, x))
    free = [g.root for g in vgg_groups if not (g.coupled or g.reaches_head)]
    assert free == [g.root for g in vgg_groups][:-1] and len(free) == 12


def test_residual_blocks_by_structure():
    resnet20 = create_model("resnet20")
    assert residual_blocks(resnet20) == ["layer1.0", "layer1.1", "layer1.2", "layer2.1", "layer2.2", "layer3.1",
                                         "layer3.2"]   # the stage-changing blocks have a projection shortcut
    own = wrap_model(torchvision.models.resnet18(), 3, 64)
    assert residual_blocks(own) == ["model.layer1.0", "model.layer1.1", "model.layer2.1", "model.layer3.1",
                                    "model.layer4.1"]
