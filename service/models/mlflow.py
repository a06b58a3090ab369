"""Models from the MLflow Model Registry, by alias (``models:/iris@champion``) or pinned version.

Each loaded version is kept under ``MEMOSERVE_MODEL_CACHE_DIR/<name>/<version>`` (a version's
artifacts never change), and the last version served is remembered there, so a replica that
restarts while MLflow is down still serves. Each copy is checked, at every load, against the
sha256 digest recorded at registration (the ``memoserve.artifact_sha256`` version tag), and the
digest is remembered next to the copy (``<version>.sha256``) for loads while MLflow is down.
Only what an alias serves and the version it replaced are kept, and one worker of a pod
downloads a version while the others wait for it (a file lock), so promotions never fill the
pod's emptyDir.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.models.artifact import load_artifact
from service.models.digest import DIGEST_TAG, artifact_digest
from service.models.loaded import LoadedModel
from service.models.source import ModelSource
from service.models.trust import ModelRefused, TrustPolicy
from service.observability import metrics
from service.settings import Settings

log = logging.getLogger(__name__)

# MLflow's REST client retries for minutes by default; a poll and a start-up should fail fast.
_FAST_FAIL_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


@dataclass(frozen=True, slots=True)
class RegistryRef:
    """A parsed ``models:/`` URI: a name and either an alias or a version."""

    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, uri: str) -> RegistryRef:
        """``models:/name@alias`` or ``models:/name/3``."""
        if not uri.startswith("models:/"):
            raise ValueError(f"not a registry URI: {uri!r}")
        rest = uri.removeprefix("models:/").strip("/")
        if "@" in rest:
            name, alias = rest.split("@", 1)
            if name and alias:
                return cls(name, alias=alias)
        elif "/" in rest:
            name, version = rest.split("/", 1)
            if name and version.isdigit():
                return cls(name, version=version)
        raise ValueError(f"expected models:/name@alias or models:/name/<version>, got {uri!r}")


class MlflowModelSource(ModelSource):
    """Resolves the alias with ``get_model_version_by_alias`` and loads that version."""

    def __init__(
        self,
        ref: RegistryRef,
        *,
        tracking_uri: str,
        cache_dir: Path,
        name: str = "",
        policy: TrustPolicy | None = None,
    ) -> None:
        for key, value in _FAST_FAIL_ENV.items():
            os.environ.setdefault(key, value)
        self.ref = ref
        self.name = name or ref.name
        self.registry_name = ref.name
        self.alias = ref.alias
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
        if self.tracking_uri:
            # Resolving ``models:/`` URIs goes through MLflow's global registry URI; without this
            # it falls back to a local sqlite file that concurrent workers race to create.
            os.environ["MLFLOW_TRACKING_URI"] = self.tracking_uri
        self.cache_dir = cache_dir / ref.name
        self._client: Any = None
        self._loaded: str | None = None  # the version this process loaded last
        self.policy = policy or TrustPolicy()
        self._tags: dict[str, str | None] = {}  # version -> digest tag, as the alias read it
        self._offline = False  # the last alias read failed: load from what the disk remembers

    @classmethod
    def from_settings(
        cls, settings: Settings, policy: TrustPolicy | None = None
    ) -> MlflowModelSource:
        """The source ``MEMOSERVE_MODEL_URI`` names."""
        return cls(
            RegistryRef.parse(settings.model_uri),
            tracking_uri=settings.mlflow_tracking_uri,
            cache_dir=Path(settings.model_cache_dir),
            name=settings.model_name,
            policy=policy or TrustPolicy.from_settings(settings),
        )

    def for_alias(self, alias: str) -> MlflowModelSource:
        """The same registered model under ``alias``: its own resolve, marker and poll, the
        same local copies (one download of a version the arms share)."""
        return MlflowModelSource(
            RegistryRef(self.ref.name, alias=alias),
            tracking_uri=self.tracking_uri,
            cache_dir=self.cache_dir.parent,
            name=self.name,
            policy=self.policy,
        )

    @property
    def client(self) -> Any:
        """An MlflowClient, created on first use (importing mlflow is slow)."""
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri or None)
        return self._client

    def resolve(self) -> str:
        if self.ref.version is not None:
            return self.ref.version
        try:
            mv = self.client.get_model_version_by_alias(self.ref.name, self.ref.alias)
        except Exception as exc:
            # A running worker keeps what it serves. Only a worker with nothing loaded takes the
            # version the replica served last (the marker another worker may have rewritten
            # since names a load, not what this worker should swap to).
            fallback = self._loaded or self._remembered()
            if fallback is None:
                raise
            self._offline = True
            log.warning(
                "MLflow unreachable (%s: %s); serving the local copy of version %s",
                type(exc).__name__,
                str(exc)[:200],
                fallback,
            )
            return fallback
        self._offline = False
        version = str(mv.version)
        self._tags = {version: (mv.tags or {}).get(DIGEST_TAG)}  # one MLflow call for both
        return version

    def load(self, version: str) -> LoadedModel:
        path = self.cache_dir / version
        tag = self._digest_tag(version)
        with self._exclusive():
            if not (path / "MLmodel").is_file():
                self._download(version, path)
            self._verify(version, path, tag)
            self._remember(version)
            self._prune()
        predictor, schema = load_artifact(path, self.policy)
        self._loaded = version
        uri = f"models:/{self.ref.name}/{version}"
        return LoadedModel(self.name, version, schema, predictor, uri=uri, alias=self.ref.alias)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One worker of the pod at a time downloads, remembers and prunes (a file lock)."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with (self.cache_dir / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _download(self, version: str, path: Path) -> None:
        from mlflow.artifacts import download_artifacts

        metrics.MODEL_DOWNLOADS.inc()
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self.cache_dir))
        try:
            download_artifacts(
                artifact_uri=f"models:/{self.ref.name}/{version}",
                dst_path=str(staging),
                tracking_uri=self.tracking_uri or None,
            )
            if not (path / "MLmodel").is_file():  # another worker may have finished first
                with contextlib.suppress(OSError):
                    staging.rename(path)  # atomic: a half-downloaded copy is never loaded
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _digest_tag(self, version: str) -> tuple[bool, str | None]:
        """(MLflow answered, the version's digest tag): from the alias read if it named this
        version, else one ``get_model_version``; (False, None) while MLflow is unreachable."""
        if version in self._tags:
            return True, self._tags[version]
        if self._offline:
            return False, None
        try:
            mv = self.client.get_model_version(self.ref.name, version)
        except Exception as exc:  # noqa: BLE001 - the digest remembered on disk decides
            log.warning("reading the tags of version %s failed: %s", version, str(exc)[:200])
            return False, None
        return True, (mv.tags or {}).get(DIGEST_TAG)

    def _verify(self, version: str, path: Path, tag: tuple[bool, str | None]) -> None:
        """Refuse a copy whose files differ from the digest recorded at registration (or, while
        MLflow is down, the one remembered when the copy was first verified)."""
        answered, recorded = tag
        sidecar = self.cache_dir / f"{version}.sha256"
        remembered = sidecar.read_text().strip() if sidecar.is_file() else None
        what = f"{self.ref.name} version {version}"
        if answered and recorded is None and self.policy.require_digest:
            raise ModelRefused(
                f"refusing {what}: it has no {DIGEST_TAG} tag to check its files by. Record it "
                f"with `python -m memoserve_models.registry digest {self.ref.name} {version}` "
                "or set MEMOSERVE_MODEL_REQUIRE_DIGEST=false"
            )
        if answered and recorded and remembered and recorded != remembered:
            raise ModelRefused(
                f"refusing {what}: its {DIGEST_TAG} tag changed since this pod first loaded it"
            )
        expected = recorded if answered else remembered
        if expected is None:
            if self.policy.require_digest:
                raise ModelRefused(
                    f"refusing the local copy of {what}: MLflow is unreachable and no digest "
                    "was remembered for it (MEMOSERVE_MODEL_REQUIRE_DIGEST is on)"
                )
            return
        actual = artifact_digest(path)
        if actual != expected:
            shutil.rmtree(path, ignore_errors=True)  # the next attempt downloads it afresh
            raise ModelRefused(
                f"refusing {what}: its files' sha256 {actual[:16]}... is not the "
                f"{DIGEST_TAG} {expected[:16]}... recorded at registration (a version's "
                "files must never change: cached answers are keyed by version)"
            )
        if remembered != expected:
            tmp = sidecar.with_suffix(".tmp")
            tmp.write_text(expected)
            tmp.replace(sidecar)

    def _marker(self) -> Path:
        return self.cache_dir / f"current-{self.ref.alias or self.ref.version}.json"

    def _remember(self, version: str) -> None:
        """Record ``version`` as served, and the one it replaced as the rollback target."""
        marker = self._marker()
        last = _read_marker(marker)
        previous = last.get("previous")
        if last.get("version") not in (None, version):
            previous = last["version"]
        tmp = marker.with_suffix(".tmp")
        record = {"name": self.ref.name, "version": version, "previous": previous}
        tmp.write_text(json.dumps(record))
        tmp.replace(marker)

    def _remembered(self) -> str | None:
        version = str(_read_marker(self._marker()).get("version", ""))
        return version if version and (self.cache_dir / version / "MLmodel").is_file() else None

    def _prune(self) -> None:
        """Keep what any alias serves and its previous version; drop older versions and
        staging copies left by a download that died (the emptyDir has a size limit)."""
        keep: set[str] = set()
        for marker in self.cache_dir.glob("current-*.json"):
            data = _read_marker(marker)
            keep.update(str(data[k]) for k in ("version", "previous") if data.get(k))
        for entry in self.cache_dir.iterdir():
            if entry.is_dir() and entry.name not in keep:
                log.info("dropping the local copy of %s", entry.name)
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.suffix == ".sha256" and entry.stem not in keep:
                entry.unlink(missing_ok=True)


def _read_marker(marker: Path) -> dict[str, Any]:
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
