"""Settings read from ``MEMOSERVE_*`` environment variables."""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.models.trust import DEFAULT_SKOPS_TRUSTED_TYPES, ModelTrust

DEV_WEBHOOK_SECRET = "memoserve-dev-webhook-secret"
MIN_WEBHOOK_SECRET_BYTES = 32


class Environment(StrEnum):
    """Where the service runs; production refuses unsafe defaults."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"


class CoalesceMode(StrEnum):
    """How concurrent misses for one key are coalesced."""

    OFF = "off"
    LOCAL = "local"
    DISTRIBUTED = "distributed"


class Settings(BaseSettings):
    """Every knob of a memoserve replica."""

    model_config = SettingsConfigDict(env_prefix="MEMOSERVE_", extra="ignore", frozen=True)

    environment: Environment = Environment.DEVELOPMENT
    """`production` refuses the development webhook secret and an in-process-only cache."""

    namespace: str = "memoserve"
    """First segment of every Redis key and of the pub/sub channel."""

    # --- model -------------------------------------------------------------------------
    model_uri: str = ""
    """`models:/name@alias`, `models:/name/3`, an MLflow model directory or a joblib file."""

    model_name: str = ""
    """Name served under `/v1/models/{name}`; defaults to the registry name or file stem."""

    model_version: str = ""
    """Version of a local model; defaults to a digest of its file so a new file gets new keys."""

    model_output: str = "predict"
    """Default output kind when a request names none (`predict` or `predict_proba`)."""

    model_cache_dir: str = "/tmp/memoserve/models"
    """Local copy of the last loaded artifact, so a restart can serve while MLflow is down."""

    model_poll_seconds: float = Field(default=15.0, ge=0)
    """Interval of the alias poll, the safety net behind webhook and pub/sub; 0 disables."""

    model_load_retry_max_seconds: float = Field(default=30.0, gt=0)
    """Cap of the exponential backoff while the first load fails."""

    model_load_wait_seconds: float = Field(default=30.0, ge=0)
    """How long a worker waits for a load it needs: its first, before it accepts connections,
    and a version another worker already serves."""

    model_trust: ModelTrust = ModelTrust.SKOPS
    """`skops`: only skops-saved scikit-learn models load; `pickle` also loads pickle,
    cloudpickle, pyfunc code and joblib files (a registry writer can then run code here)."""

    model_skops_trusted_types: str = ",".join(DEFAULT_SKOPS_TRUSTED_TYPES)
    """Comma-separated types a `.skops` file may need beyond those skops trusts itself."""

    model_require_digest: bool = True
    """Refuse a registry version without a `memoserve.artifact_sha256` tag to check it by."""

    model_canary_alias: str = ""
    """A second alias of the registry model (e.g. `challenger`) each worker loads too, and
    sends `MODEL_CANARY_PERCENT` of the routing keys to; empty: no canary."""

    model_canary_percent: float = Field(default=0.0, ge=0, le=100)
    """Share (0–100) of routing keys (`X-Memoserve-Route-Key`, else the first row) answered
    by the canary; a key always gets the same arm. 0 serves the canary only when pinned."""

    model_shadow_alias: str = ""
    """An alias whose version computes a copy of every miss off the request path and counts
    its agreement with the version that answered (`memoserve_shadow_rows_total`); empty: none."""

    shadow_max_pending: int = Field(default=256, gt=0)
    """Rows waiting for or in a shadow model call; past it copies are dropped and counted."""

    mlflow_tracking_uri: str = ""
    """MLflow tracking server; empty falls back to `MLFLOW_TRACKING_URI`."""

    # --- promotion -----------------------------------------------------------------------
    webhook_secret: SecretStr = SecretStr(DEV_WEBHOOK_SECRET)
    """HMAC key shared with the MLflow webhook (`X-MLflow-Signature`); pub/sub events are signed
    with a key derived from it. `production` needs at least 32 bytes."""

    webhook_tolerance_seconds: int = Field(default=300, gt=0)
    """Deliveries whose timestamp is further than this from now are refused."""

    events_enabled: bool = True
    """Listen on and publish to the Redis pub/sub channel `{namespace}:events`."""

    purge_enabled: bool = True
    """After a swap, one replica unlinks the old version's keys."""

    purge_batch_size: int = Field(default=500, gt=0)
    """Keys per SCAN/UNLINK round of the purge."""

    warmup_top_k: int = Field(default=100, ge=0)
    """Hottest inputs of the old version computed on the new one before the swap; 0 disables."""

    hot_sample_rate: float = Field(default=0.05, ge=0, le=1)
    """Share of looked-up rows recorded in the hot-input sorted set."""

    hot_max_entries: int = Field(default=1000, gt=0)
    """Bound of the hot-input sorted set per version."""

    # --- cache ---------------------------------------------------------------------------
    redis_url: str = ""
    """`redis://` or `rediss://` URL of a single Redis. Set one of the URL, the Sentinels or
    the cluster nodes."""

    redis_sentinels: str = ""
    """Comma-separated `host:port` list of Sentinels."""

    redis_cluster_nodes: str = ""
    """Comma-separated `host:port` list of Redis Cluster nodes to discover the cluster from
    (a few suffice); the user, password and TLS settings apply to every node."""

    redis_master_name: str = "mymaster"
    """Name of the master the Sentinels watch."""

    redis_username: str = ""
    """ACL user of the Redis master and replicas (or cluster nodes); empty is `default`."""

    redis_password: SecretStr | None = None
    """AUTH password of the Redis master and replicas (or cluster nodes)."""

    redis_sentinel_username: str = ""
    """ACL user of the Sentinels; empty is their `default` user."""

    redis_sentinel_password: SecretStr | None = None
    """AUTH password of the Sentinels themselves, if they require one."""

    redis_tls: bool = False
    """TLS to the Redis master or cluster nodes (a `rediss://` URL turns it on in URL mode)."""

    redis_sentinel_tls: bool = False
    """TLS to the Sentinels."""

    redis_tls_ca_file: str = ""
    """CA bundle that verifies Redis and Sentinel certificates; empty uses the system's."""

    redis_tls_cert_file: str = ""
    """Client certificate for Redis and Sentinels that ask for one (with the key file)."""

    redis_tls_key_file: str = ""
    """Private key of the client certificate."""

    redis_socket_timeout_ms: int = Field(default=50, gt=0)
    """Read/write timeout of one Redis command."""

    redis_connect_timeout_ms: int = Field(default=50, gt=0)
    """Connect timeout to Redis and the Sentinels."""

    redis_retries: int = Field(default=1, ge=0)
    """Quick retries of a failed Redis command before it counts as a failure."""

    redis_pipelined_lookups: bool = True
    """Concurrent requests' lookups share one connection and one write (not on a cluster)."""

    breaker_failure_threshold: int = Field(default=5, gt=0)
    """Consecutive Redis failures that open the circuit breaker."""

    breaker_reset_seconds: float = Field(default=1.0, gt=0)
    """Cool-down after which one half-open probe is let through."""

    cache_ttl_seconds: int = Field(default=3600, gt=0)
    """Expiry of every cache entry."""

    memory_cache_max_entries: int = Field(default=100_000, gt=0)
    """Bound of the in-process cache used when no Redis is configured."""

    l1_enabled: bool = True
    """Keep a small in-process near-cache in front of Redis."""

    l1_max_entries: int = Field(default=10_000, gt=0)
    """Bound of the near-cache."""

    l1_ttl_seconds: float = Field(default=2.0, gt=0)
    """Lifetime of a near-cache entry; bounds how stale another replica's refresh can look."""

    # --- miss path -------------------------------------------------------------------------
    coalesce: CoalesceMode = CoalesceMode.LOCAL
    """`local` single-flight per process, `distributed` adds a Redis lock per key, `off`."""

    coalesce_lock_ms: int = Field(default=5000, gt=0)
    """Lifetime of a distributed compute lock."""

    coalesce_wait_ms: int = Field(default=2000, ge=0)
    """How long a replica waits on another's lock before computing itself."""

    batch_max_rows: int = Field(default=32, gt=0)
    """Rows of concurrent misses merged into one model call."""

    batch_max_wait_ms: float = Field(default=1.0, ge=0)
    """Extra wait for more rows before a batch runs."""

    predict_threads: int = Field(default=1, gt=0)
    """Threads running model calls in each worker."""

    predict_timeout_seconds: float = Field(default=30.0, gt=0)
    """A model call still running after this fails its requests (504) and marks the worker
    unready until it returns; meanwhile misses get 503 with `Retry-After`."""

    max_queued_rows: int = Field(default=4096, gt=0)
    """Rows of misses waiting for the model; past it a request gets 503 with `Retry-After`."""

    # --- HTTP ----------------------------------------------------------------------------
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    """Larger request bodies get 413."""

    max_rows: int = Field(default=1000, gt=0)
    """Requests with more rows get 413."""

    header_timeout_seconds: float = Field(default=10.0, gt=0)
    """A connection whose request headers have not arrived by then gets 408 and is closed."""

    limit_concurrency: int = Field(default=1000, gt=0)
    """Connections or requests in progress per worker beyond which it answers 503 at once."""

    bind: str = "0.0.0.0:8080"
    """Address gunicorn listens on."""

    metrics_bind: str = Field(default="", pattern=r"^$|^.+:\d+$")
    """A second address that serves only ``/metrics`` (e.g. ``0.0.0.0:9090``); empty: none.
    ``/metrics`` stays on ``bind`` too."""

    workers: int = Field(default=2, gt=0)
    """gunicorn worker processes."""

    graceful_timeout: int = Field(default=30, gt=0)
    """Seconds a worker gets to finish in-flight requests on shutdown."""

    preload_libraries: bool = True
    """The gunicorn master imports numpy, pandas, scikit-learn, skops and MLflow once, before
    it forks: workers share those pages and a replaced worker starts in under a second."""

    # --- observability -----------------------------------------------------------------------
    log_level: str = "INFO"
    """Root log level."""

    access_log: bool = True
    """Write one JSON access line per request."""

    tracing_enabled: bool = True
    """Set up OpenTelemetry; exporter and sampler follow the standard `OTEL_*` variables."""

    @field_validator("redis_password", "redis_sentinel_password", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # An empty key in a mounted Secret means "no password", not AUTH with "".
        return None if value in ("", None) else value

    @field_validator("model_output")
    @classmethod
    def _known_output(cls, value: str) -> str:
        if value not in ("predict", "predict_proba"):
            raise ValueError("model_output must be 'predict' or 'predict_proba'")
        return value

    @model_validator(mode="after")
    def _one_redis(self) -> Self:
        # Two of them would leave it to the code's order which one serves: refuse instead.
        given = [
            f"MEMOSERVE_{name.upper()}"
            for name in ("redis_url", "redis_sentinels", "redis_cluster_nodes")
            if getattr(self, name)
        ]
        if len(given) > 1:
            raise ValueError(f"set only one of {' and '.join(given)}: they pick the Redis mode")
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        if bool(self.redis_tls_cert_file) != bool(self.redis_tls_key_file):
            raise ValueError("set MEMOSERVE_REDIS_TLS_CERT_FILE and _KEY_FILE together")
        if self.redis_tls and self.redis_url.startswith("redis://"):
            raise ValueError("MEMOSERVE_REDIS_TLS needs a rediss:// MEMOSERVE_REDIS_URL")
        return self

    @model_validator(mode="after")
    def _arms_are_aliases(self) -> Self:
        extra = {"MEMOSERVE_MODEL_CANARY_ALIAS": self.model_canary_alias}
        extra["MEMOSERVE_MODEL_SHADOW_ALIAS"] = self.model_shadow_alias
        named = {k: v for k, v in extra.items() if v}
        if not named:
            return self
        uri = self.model_uri
        if not uri.startswith("models:/") or "@" not in uri:
            raise ValueError(
                f"{' and '.join(named)} need MEMOSERVE_MODEL_URI=models:/name@alias: "
                "a canary or shadow is another alias of the same registry model"
            )
        champion = uri.rsplit("@", 1)[1]
        aliases = [champion, *named.values()]
        if len(set(aliases)) != len(aliases):
            raise ValueError(f"the champion, canary and shadow aliases must differ: {aliases}")
        return self

    @model_validator(mode="after")
    def _production_is_safe(self) -> Self:
        if self.environment is Environment.PRODUCTION:
            if self.webhook_secret.get_secret_value() == DEV_WEBHOOK_SECRET:
                raise ValueError("set MEMOSERVE_WEBHOOK_SECRET: the default is for development")
            if len(self.webhook_secret.get_secret_value().encode()) < MIN_WEBHOOK_SECRET_BYTES:
                raise ValueError(
                    f"MEMOSERVE_WEBHOOK_SECRET must be at least {MIN_WEBHOOK_SECRET_BYTES} bytes "
                    "in production (it signs webhooks and pub/sub events): use e.g. "
                    "`openssl rand -hex 32`"
                )
            if not (self.redis_url or self.redis_sentinels or self.redis_cluster_nodes):
                raise ValueError(
                    "production needs MEMOSERVE_REDIS_SENTINELS, MEMOSERVE_REDIS_CLUSTER_NODES "
                    "or MEMOSERVE_REDIS_URL"
                )
        return self

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """Parsed `redis_sentinels`."""
        return _addresses(self.redis_sentinels)

    @property
    def cluster_addresses(self) -> list[tuple[str, int]]:
        """Parsed `redis_cluster_nodes`."""
        return _addresses(self.redis_cluster_nodes)


def _addresses(value: str) -> list[tuple[str, int]]:
    """``host:port,...`` as (host, port) pairs; ``[::1]:p`` for IPv6."""
    addresses = []
    for item in value.split(","):
        item = item.strip()
        if item:
            host, _, port = item.rpartition(":")
            addresses.append((host.strip("[]") or "localhost", int(port)))
    return addresses
