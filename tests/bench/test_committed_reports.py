"""The committed reports and the README's numbers are what `mimir report` makes of the committed results."""

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
}


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_report_regenerates_unchanged(name):
    folder, command = REPORTS[name]
    results = f"benchmarks/results/{name}.jsonl"
    records = read_results(ROOT / results)
    assert records, f"{results} is empty"
    assert (ROOT / folder / "RESULTS.md").read_text() == render_markdown(records, results, command)


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_readme_summary_is_generated_from_the_results(name):
    records = read_results(ROOT / f"benchmarks/results/{name}.jsonl")
    assert readme_block(records, name) in (ROOT / "README.md").read_text()


def test_readme_table_rows_come_from_the_reports():
    reports = "".join((ROOT / folder / "RESULTS.md").read_text() for folder, _ in REPORTS.values())
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(("| resnet", "| vit_p7"))]
    assert rows and all(row in reports for row in rows)


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


def test_deployment_page_and_readme_table_render_from_their_measurements():
    import json

    deploy = _benchmark_script("deploy_speed")
    saved = json.loads((ROOT / "benchmarks" / "results" / "deploy-speed.json").read_text())
    assert (ROOT / "docs" / "DEPLOY.md").read_text() == deploy.render(saved)
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(deploy.BLOCK[0]), readme.index(deploy.BLOCK[1])
    assert readme[start + len(deploy.BLOCK[0]):end].strip() == deploy.tables(saved).strip()
