"""This process's Prometheus samples (in-process apps and parts; replicas: see ``metric``)."""

from __future__ import annotations

from prometheus_client import REGISTRY


def sample(name: str, **labels: str) -> float:
    """The value of one sample of this process's default registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def cache_rows(result: str, layer: str) -> float:
    """``memoserve_cache_results_total`` for one outcome and layer."""
    return sample("memoserve_cache_results_total", result=result, layer=layer)
