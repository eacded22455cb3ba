"""The one function that writes a generated block into a Markdown file, and its callers."""

import importlib.util
import json
from pathlib import Path

from mimir._readme import read_block, replace_block
from tests.helpers import LINES

ROOT = Path(__file__).resolve().parents[2]
PAGE = "# Page\n\nbefore\n<!-- tool: generated -->\nold line 1\nold line 2\n<!-- /tool -->\nafter\n"


def test_only_the_text_between_the_markers_is_replaced(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    assert replace_block(page, "<!-- tool:", "<!-- /tool -->", "new\n\nlines")
    assert page.read_text() == "# Page\n\nbefore\n<!-- tool: generated -->\nnew\n\nlines\n<!-- /tool -->\nafter\n"
    assert read_block(page, "<!-- tool:", "<!-- /tool -->") == "new\n\nlines"


def test_the_start_line_can_be_generated_too(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    assert replace_block(page, "<!-- tool:", "<!-- /tool -->", "x", start_line="<!-- tool: made by tool -->")
    assert page.read_text() == "# Page\n\nbefore\n<!-- tool: made by tool -->\nx\n<!-- /tool -->\nafter\n"
    assert replace_block(page, "<!-- tool:", "<!-- /tool -->", "")   # an empty body: the markers meet
    assert "<!-- tool: made by tool -->\n<!-- /tool -->\nafter" in page.read_text()


def test_a_missing_marker_leaves_the_file_untouched(tmp_path):
    page = tmp_path / "page.md"
    for text in (PAGE.replace("<!-- /tool -->", ""), PAGE.replace("<!-- tool: generated -->", ""), "nothing\n"):
        page.write_text(text)
        assert not replace_block(page, "<!-- tool:", "<!-- /tool -->", "new")
        assert page.read_text() == text
    page.write_text("<!-- /tool -->\n<!-- tool: -->\n")   # an end marker only before the start: no block
    assert not replace_block(page, "<!-- tool:", "<!-- /tool -->", "new")


def _lines():
    return LINES


def test_report_summary_block_is_written_by_the_one_writer(tmp_path):
    from mimir.bench.report import readme_block, update_readme

    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- mimir report r: -->\nstale\n<!-- /mimir report r -->\nend\n")
    for records in (_lines(), _lines(), []):   # a stale block, a fresh one, one without finished cells
        assert update_readme(page, records, "r")
        assert page.read_text() == "intro\n" + readme_block(records, "r") + "\nend\n"
    before = page.read_text()
    assert not update_readme(page, _lines(), "other") and page.read_text() == before


def test_deploy_speed_table_block_is_written_by_the_one_writer(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("deploy_speed", ROOT / "benchmarks" / "deploy_speed.py")
    deploy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(deploy)
    saved = json.loads((ROOT / "benchmarks" / "results" / "deploy-speed.json").read_text())
    page = tmp_path / "page.md"
    page.write_text(f"intro\n{deploy.BLOCK[0]}\nstale\n{deploy.BLOCK[1]}\nend\n")
    monkeypatch.setattr(deploy, "README", page)
    deploy.update_readme(saved)
    assert page.read_text() == f"intro\n{deploy.BLOCK[0]}\n{deploy.tables(saved).strip()}\n{deploy.BLOCK[1]}\nend\n"


def test_timm_families_block_is_written_by_the_one_writer(tmp_path):
    from mimir.prune.families import README_MARKERS, readme_text, update_readme

    rows = [{"family": "resnet", "model": "timm:resnet10t", "channels": 8, "heads": 0, "channels_all": 9,
             "blocks": 4, "attention": 0}]
    page = tmp_path / "page.md"
    page.write_text(f"a\n{README_MARKERS[0]} generated -->\nold\n{README_MARKERS[1]}\nb\n")
    assert update_readme(str(page), rows)
    assert read_block(page, *README_MARKERS) == readme_text(rows)
    assert page.read_text().startswith(f"a\n{README_MARKERS[0]} generated -->\n```\n")
