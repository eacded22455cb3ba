"""Turning a results file into what people read: a Markdown table (mean +- std over seeds), PNG plots
(accuracy vs number of samples, one line per recipe; accuracy vs MACs; accuracy vs training time),
which method won where, and the summary block a hand-written page holds.

``aggregate`` makes rows of result lines, ``markdown`` the text, ``plots`` the figures and
``synthetic`` the grids of synthesised images."""

from mimir.bench.report.aggregate import Row, aggregate, busy_seconds, mixed_devices, recipe_of, winners
from mimir.bench.report.markdown import (
                                         ablation,
                                         markdown_table,
                                         readme_block,
                                         render_markdown,
                                         time_table,
                                         update_readme,
                                         write_report,
)
from mimir.bench.report.plots import plot, plot_names
from mimir.bench.report.synthetic import plot_synthetic, synthetic_sets

__all__ = ["Row", "ablation", "aggregate", "busy_seconds", "markdown_table", "mixed_devices", "plot", "plot_names", "plot_synthetic",
           "readme_block", "recipe_of", "render_markdown", "synthetic_sets", "time_table", "update_readme", "winners",
           "write_report"]
