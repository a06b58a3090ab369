"""Prometheus samples: of this process (in-process apps and parts) and from a /metrics page."""

from __future__ import annotations

import re

import httpx
from prometheus_client import REGISTRY


def sample(name: str, **labels: str) -> float:
    """The value of one sample of this process's default registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def cache_rows(result: str, layer: str) -> float:
    """``memoserve_cache_results_total`` for one outcome and layer."""
    return sample("memoserve_cache_results_total", result=result, layer=layer)


def request_count(route: str, method: str, status: int) -> float:
    """``memoserve_requests_total`` for one route template, method and status."""
    return sample("memoserve_requests_total", route=route, method=method, status=str(status))


def scraped(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` in exposition ``text`` whose labels include ``labels``
    (0 when none: a metric's HELP and TYPE lines are not samples)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """``scraped`` from the /metrics of the replica ``client`` talks to (summed over its
    workers)."""
    return scraped(client.get("/metrics").text, name, **labels)
