"""Runs beyond this machine: submitit jobs on Slurm (or as local processes, for testing) for
benchmark grids and for single long compress runs (torchrun on one or more nodes, requeued on
preemption and resumed from their checkpoint)."""

from mimir.cluster.compress_job import CompressJob, submit_compress
from mimir.cluster.resources import EXECUTORS, SIGNAL_DELAY_S, Resources, make_executor, require

__all__ = ["EXECUTORS", "SIGNAL_DELAY_S", "CompressJob", "Resources", "make_executor", "require", "submit_compress"]
