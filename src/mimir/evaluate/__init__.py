"""Measuring a model: accuracy, parameters, MACs, latency."""

from mimir.evaluate.accuracy import accuracy, feature_mse
from mimir.evaluate.cost import count_macs_params, latency_ms
from mimir.evaluate.latency import compare_latency

__all__ = ["accuracy", "compare_latency", "count_macs_params", "feature_mse", "latency_ms"]
