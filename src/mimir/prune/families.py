"""What mimir prunes and drops in each tested timm family, computed from the models themselves
(``mimir models --timm``)."""

from __future__ import annotations

import torch

from mimir._readme import replace_block
from mimir.models import create_model
from mimir.models.anatomy import attention_modules, residual_blocks, transformer_blocks
from mimir.models.timm_models import TEST_SIZES, TESTED_FAMILIES
from mimir.prune.structure import channel_groups, dependency_graph


def family_rows() -> list[dict]:
    """One row per tested family: its small variant and the counts of what each scheme touches."""
    rows = []
    for family, name in TESTED_FAMILIES.items():
        model = create_model(f"timm:{name}", num_classes=10, **TEST_SIZES.get(name, {})).eval()
        size = model.default_data_config().input_size if name in TEST_SIZES else 64
        groups = channel_groups(model, dependency_graph(model, torch.zeros(1, 3, size, size)))
        blocks = residual_blocks(model)
        attention = transformer_blocks(model, blocks)
        rows.append({"family": family, "model": f"timm:{name}",
                     "channels": sum(not (g.coupled or g.reaches_head) for g in groups),
                     "heads": sum(g.attention for g in groups),
                     "channels_all": sum(not g.reaches_head for g in groups),
                     "blocks": len(blocks), "attention": len(attention) if attention_modules(model) else 0})
    return rows


def format_rows(rows: list[dict]) -> str:
    head = (f"{'family':<28}{'model (tested variant)':<34}{'channels:R':>11}{'of them heads':>14}"
            f"{'channels-all:R':>15}{'blocks:':>8}{'attention:':>11}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['family']:<28}{r['model']:<34}{r['channels']:>11}{r['heads']:>14}{r['channels_all']:>15}"
                     f"{r['blocks']:>8}{r['attention']:>11}")
    lines.append("(numbers: channel groups each scheme prunes; residual blocks blocks: can drop; transformer "
                 "blocks whose attention attention: can drop)")
    return "\n".join(lines)


README_MARKERS = ("<!-- mimir models --timm:", "<!-- /mimir models --timm -->")


def readme_text(rows: list[dict]) -> str:
    """The README's generated block: the table in a code fence."""
    return "```\n" + format_rows(rows) + "\n```"


def update_readme(path: str, rows: list[dict]) -> bool:
    """Rewrite the README's ``mimir models --timm`` block (False when it has none)."""
    return replace_block(path, *README_MARKERS, readme_text(rows))
