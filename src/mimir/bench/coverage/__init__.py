"""Which networks mimir compresses: a sweep of every family a user holds through every stage."""

from mimir.bench.coverage.models import Candidate, timm_candidates, timm_prefix, torchvision_candidates
from mimir.bench.coverage.report import compare, render, summary
from mimir.bench.coverage.stages import STAGES, Row, check
from mimir.bench.coverage.sweep import read_rows, sweep

__all__ = ["STAGES", "Candidate", "Row", "check", "compare", "read_rows", "render", "summary", "sweep",
           "timm_candidates", "timm_prefix", "torchvision_candidates"]
