"""Model anatomy: the family a model belongs to, and its body cut into layers for learning-rate decay."""

import pytest

from mimir.models import create_model
from mimir.models.anatomy import body_parameters, layer_groups, model_family


def test_family_is_transformer_for_attention_and_convolutional_otherwise():
    assert model_family(create_model("vit_p7")) == "transformer"
    assert model_family(create_model("resnet20")) == "convolutional"


@pytest.mark.parametrize("name,units", [("vit_p7", 8), ("resnet20", 10)])
def test_layer_groups_cover_the_body_once_and_decay_towards_the_input(name, units):
    """vit_p7: patch embedding (with class token and positions), 6 blocks, final norm; resnet20:
    stem and 9 blocks (the two downsampling blocks, whose shortcut is a convolution, are units of
    their own)."""
    model = create_model(name)
    groups = layer_groups(model, 0.5)
    assert len(groups) == units
    assert [g["lr_scale"] for g in groups] == [0.5 ** (units - 1 - i) for i in range(units)]
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in body_parameters(model))   # every body parameter, once, no head
    assert layer_groups(model, 1.0)[0]["lr_scale"] == 1.0
