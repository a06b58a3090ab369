"""Prometheus metrics; in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) summed over workers."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter("memoserve_requests", "HTTP requests served.", ["route", "method", "status"])
REQUEST_DURATION = Histogram(
    "memoserve_request_duration_seconds",
    "Time to answer a request.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
CACHE_RESULTS = Counter(
    "memoserve_cache_results", "Rows looked up, by outcome and layer.", ["result", "layer"]
)
REDIS_COMMANDS = Counter(
    "memoserve_redis_commands",
    "Redis round trips attempted (ok, error) or refused by the open breaker (rejected).",
    ["outcome"],
)
BREAKER_STATE = Gauge(
    "memoserve_breaker_state",
    "Redis circuit breaker: 0 closed, 1 half-open, 2 open.",
    multiprocess_mode="livemax",
)
PREDICT_DURATION = Histogram(
    "memoserve_predict_duration_seconds",
    "Time of one model call.",
    ["model", "version"],
    buckets=_LATENCY_BUCKETS,
)
PREDICT_BATCH_ROWS = Histogram(
    "memoserve_predict_batch_rows",
    "Rows per model call.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
PREDICT_TIMEOUTS = Counter(
    "memoserve_predict_timeouts",
    "Model calls still running past MEMOSERVE_PREDICT_TIMEOUT_SECONDS.",
)
PREDICT_CALLS = Counter("memoserve_predict_calls", "Model calls.", ["model", "version"])
COALESCED_WAITS = Counter(
    "memoserve_coalesced_waits", "Rows that waited on another request's computation.", ["scope"]
)
MODEL_INFO = Gauge(
    "memoserve_model_info",
    "1 for the model version a worker serves.",
    ["name", "version"],
    multiprocess_mode="livemax",
)
ARM_INFO = Gauge(
    "memoserve_arm_info",
    "1 for the model version an arm (champion, canary, shadow) of a worker serves.",
    ["arm", "name", "version"],
    multiprocess_mode="livemax",
)
ARM_REQUESTS = Counter(
    "memoserve_arm_requests",
    "Predictions answered, by the arm and version that answered and the X-Cache outcome.",
    ["arm", "version", "cache"],
)
ARM_ROWS = Counter(
    "memoserve_arm_rows",
    "Rows of predictions by arm, version and whether the cache had them (hit, miss, bypass).",
    ["arm", "version", "result"],
)
ARM_DURATION = Histogram(
    "memoserve_arm_predict_duration_seconds",
    "Time from the parsed request to its answer's body, by the arm and version that answered.",
    ["arm", "version"],
    buckets=_LATENCY_BUCKETS,
)
SHADOW_ROWS = Counter(
    "memoserve_shadow_rows",
    "Missed rows the shadow version computed too, by whether its output equals the serving "
    "version's (agree, disagree) or could not be compared (error, incompatible).",
    ["serving_version", "shadow_version", "result"],
)
SHADOW_DROPPED = Counter(
    "memoserve_shadow_dropped_rows",
    "Missed rows not copied to the shadow: MEMOSERVE_SHADOW_MAX_PENDING rows already waited.",
)
MODEL_RELOADS = Counter(
    "memoserve_model_reloads", "Model versions loaded, by outcome.", ["outcome"]
)
MODEL_POLLS = Counter(
    "memoserve_model_polls",
    "Alias polls of the registry, by outcome (error: the refresh failed).",
    ["outcome"],
)
MODEL_DOWNLOADS = Counter(
    "memoserve_model_downloads", "Model versions downloaded from the registry (one per pod)."
)
EVENTS_REJECTED = Counter(
    "memoserve_events_rejected",
    "Pub/sub events ignored: malformed, unsigned, bad_signature or stale.",
    ["reason"],
)
MODEL_REFRESHES = Counter(
    "memoserve_model_refreshes",
    "Alias reads of the registry, by what asked for them.",
    ["trigger"],
)
REFRESHES_COALESCED = Counter(
    "memoserve_refreshes_coalesced",
    "Refresh requests (events, webhooks) that joined one already waiting.",
)
WEBHOOK_DUPLICATES = Counter(
    "memoserve_webhook_duplicates", "Verified webhook deliveries seen before (by delivery id)."
)
PURGED_KEYS = Counter("memoserve_cache_purged_keys", "Keys of old versions unlinked.")
CACHE_CORRUPT = Counter(
    "memoserve_cache_corrupt_entries",
    "Shared-cache values that were not an intact frame: treated as misses and rewritten.",
)
CACHE_WRITE_ERRORS = Counter(
    "memoserve_cache_write_errors", "Background cache writes that failed (entry not stored)."
)


def render() -> tuple[bytes, str]:
    """The exposition text; across all workers when multiprocess mode is on."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
