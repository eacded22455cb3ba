"""Reproducible benchmarks: a YAML grid -> one JSON line per cell (resumable) -> tables and plots."""

from mimir.bench.config import BenchConfig, load_config, parse_config
from mimir.bench.report import aggregate, markdown_table, winners, write_report
from mimir.bench.runner import dry_run_config, run_bench, run_cell
from mimir.bench.store import read_results

__all__ = ["BenchConfig", "aggregate", "dry_run_config", "load_config", "markdown_table", "parse_config",
           "read_results", "run_bench", "run_cell", "winners", "write_report"]
