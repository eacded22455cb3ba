"""The committed reports, and the numbers the hand-written pages quote from them, are what `mimir report`
(and the benchmark scripts) make of the committed results."""

from pathlib import Path

import pytest

from mimir.bench import read_results
from mimir.bench.report import readme_block, render_markdown

ROOT = Path(__file__).resolve().parents[2]
REPORTS = {  # results name -> (report folder, the grid command the report quotes)
    "fashion-mnist": ("docs", "mimir bench benchmarks/fashion-mnist.yaml --workers 2"),
    "mir-pooling": ("docs/mir-pooling", "mimir bench benchmarks/mir-pooling.yaml"),
    "beyond-mir": ("docs/beyond-mir", "mimir bench benchmarks/beyond-mir.yaml --workers 2"),
    "beyond-mir-long": ("docs/beyond-mir-long", "mimir bench benchmarks/beyond-mir-long.yaml --workers 2"),
    "beyond-mir-cnn": ("docs/beyond-mir-cnn", "mimir bench benchmarks/beyond-mir-cnn.yaml --workers 2"),
    "beyond-mir-vit": ("docs/beyond-mir-vit", "mimir bench benchmarks/beyond-mir-vit.yaml --workers 2"),
}
SUMMARY_PAGES = {  # results name -> the hand-written page holding its `mimir report --readme` summary block
    "fashion-mnist": "docs/BENCHMARKS.md",
    "mir-pooling": "docs/BENCHMARKS.md",
    "beyond-mir": "docs/BEYOND-MIR.md",
    "beyond-mir-long": "docs/BEYOND-MIR.md",
    "beyond-mir-cnn": "docs/BEYOND-MIR.md",
    "beyond-mir-vit": "docs/BEYOND-MIR.md",
}
DEPLOY_PAGE = "docs/SHIPPING.md"  # holds the `<!-- deploy_speed -->` block
GENERATED = {"docs/RESULTS.md", "docs/DEPLOY.md", "docs/SPEED.md", "docs/INT8.md"}  # written by commands only
INT8_BLOCK = ("<!-- int8_speed -->", "<!-- /int8_speed -->")   # a benchmark script's block: its rows are its own
PAGES_WITH_COPIED_ROWS = ("docs/BENCHMARKS.md", "docs/BEYOND-MIR.md")


def _hand_written_pages() -> list[Path]:
    pages = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    return [p for p in pages if p.relative_to(ROOT).as_posix() not in GENERATED]


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_report_regenerates_unchanged(name):
    folder, command = REPORTS[name]
    results = f"benchmarks/results/{name}.jsonl"
    records = read_results(ROOT / results)
    assert records, f"{results} is empty"
    assert (ROOT / folder / "RESULTS.md").read_text() == render_markdown(records, results, command)


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_summary_block_is_generated_from_the_results(name):
    records = read_results(ROOT / f"benchmarks/results/{name}.jsonl")
    assert readme_block(records, name) in (ROOT / SUMMARY_PAGES[name]).read_text()


def test_every_summary_block_lives_in_its_page_only():
    start = "<!-- mimir report "
    for page in _hand_written_pages():
        text = page.read_text()
        names = [line[len(start):].split(":")[0] for line in text.splitlines() if line.startswith(start)]
        where = page.relative_to(ROOT).as_posix()
        assert all(SUMMARY_PAGES.get(name) == where for name in names), (where, names)
        assert len(names) == len(set(names)), (where, names)


def test_table_rows_in_hand_written_pages_come_from_the_reports():
    reports = "".join(path.read_text() for path in (ROOT / "docs").glob("**/RESULTS.md"))
    rows = {}
    for page in _hand_written_pages():
        text = page.read_text()
        if INT8_BLOCK[0] in text:
            text = text[:text.index(INT8_BLOCK[0])] + text[text.index(INT8_BLOCK[1]):]
        found = [line for line in text.splitlines() if line.startswith(("| resnet", "| vit_p7"))]
        rows[page.relative_to(ROOT).as_posix()] = found
        assert all(row in reports for row in found), [row for row in found if row not in reports]
    assert all(rows[page] for page in PAGES_WITH_COPIED_ROWS)


def _benchmark_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_page_renders_from_its_measurements():
    import json

    saved = json.loads((ROOT / "benchmarks" / "results" / "loop-speed.json").read_text())
    assert (ROOT / "docs" / "SPEED.md").read_text() == _benchmark_script("loop_speed").render(saved)


def test_deployment_page_and_shipping_table_render_from_their_measurements():
    import json

    deploy = _benchmark_script("deploy_speed")
    saved = json.loads((ROOT / "benchmarks" / "results" / "deploy-speed.json").read_text())
    assert (ROOT / "docs" / "DEPLOY.md").read_text() == deploy.render(saved)
    page = (ROOT / DEPLOY_PAGE).read_text()
    start, end = page.index(deploy.BLOCK[0]), page.index(deploy.BLOCK[1])
    assert page[start + len(deploy.BLOCK[0]):end].strip() == deploy.tables(saved).strip()
    assert all(deploy.BLOCK[0] not in p.read_text() for p in _hand_written_pages() if p != ROOT / DEPLOY_PAGE)


def test_int8_page_and_shipping_table_render_from_their_measurements():
    import json

    int8 = _benchmark_script("int8_speed")
    assert int8.BLOCK == INT8_BLOCK
    saved = json.loads((ROOT / "benchmarks" / "results" / "int8.json").read_text())
    assert (ROOT / "docs" / "INT8.md").read_text() == int8.render(saved)
    page = (ROOT / DEPLOY_PAGE).read_text()
    start, end = page.index(int8.BLOCK[0]), page.index(int8.BLOCK[1])
    assert page[start + len(int8.BLOCK[0]):end].strip() == int8.tables(saved).strip()
    assert int8.tables(saved) in (ROOT / "docs" / "DEPLOY.md").read_text()   # the deployment page shows them too
