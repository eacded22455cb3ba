"""Measuring a model: accuracy, parameters, MACs, latency."""

from mimir.evaluate.accuracy import accuracy, feature_mse
from mimir.evaluate.cost import count_macs_params
from mimir.evaluate.latency import compare_latency, latency_ms
from mimir.evaluate.measure import ACCURACY_MEMO, measure_latency, measure_model, warn_if_not_faster

__all__ = ["ACCURACY_MEMO", "accuracy", "compare_latency", "count_macs_params", "feature_mse", "latency_ms",
           "measure_latency", "measure_model", "warn_if_not_faster"]
