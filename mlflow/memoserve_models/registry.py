"""Register, list and promote model versions and register the webhook, in an MLflow registry."""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature

from memoserve_models import demo
from service.models.digest import DIGEST_TAG, artifact_digest

log = logging.getLogger(__name__)

EXPERIMENT = "memoserve-demo"
KINDS = ("iris", "diabetes", "slow")
# MLflow 3 saves scikit-learn models with skops, which refuses types it was not told to trust.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
# What loading each flavour needs. Named here rather than left to MLflow, which infers them by
# loading the model in a subprocess: ~15 s a registration, and it lists whatever that imports
# (pytest, rich). MLflow adds its own pin; `memoserve` is where the pyfunc's classes live.
SKLEARN_PACKAGES = ("numpy", "pandas", "scikit-learn", "scipy", "skops")
PYFUNC_PACKAGES = ("cloudpickle", "memoserve", "numpy", "pandas", "scikit-learn", "scipy")


def pip_requirements(packages: tuple[str, ...]) -> list[str]:
    """``packages`` pinned to the versions installed here (one not installed is left out)."""
    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            log.warning("%s is not installed: left out of the model's requirements", package)
    return pins


def client(tracking_uri: str) -> MlflowClient:
    """A client for ``tracking_uri``; also the default for ``mlflow.*`` calls."""
    mlflow.set_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri)


def register(
    kind: str,
    name: str,
    *,
    tracking_uri: str,
    alias: str | None = None,
    label_shift: int = 0,
    delay_seconds: float = 1.0,
    seed: int = 0,
    n_estimators: int = 100,
    serialization_format: str = "skops",
) -> str:
    """Train a demo model of ``kind``, log it with signature and input example, register it
    under ``name`` and record its digest; set ``alias`` on the new version if given. Returns
    the version. Only ``serialization_format="skops"`` loads under memoserve's default trust;
    ``slow`` is a pyfunc (code), which needs ``MEMOSERVE_MODEL_TRUST=pickle``."""
    c = client(tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"{name}-{kind}"):
        mlflow.log_params({"kind": kind, "seed": seed, "n_estimators": n_estimators})
        if kind == "diabetes":
            from sklearn.datasets import load_diabetes

            x: pd.DataFrame = load_diabetes(as_frame=True).data
            model: Any = demo.train_diabetes(n_estimators=n_estimators, seed=seed)
        else:
            x, _ = demo.iris_frame()
            model = demo.train_iris(n_estimators=n_estimators, seed=seed, label_shift=label_shift)
            mlflow.log_param("label_shift", label_shift)
        signature = infer_signature(x, model.predict(x))
        example = x.head(3)
        if kind == "slow":
            from memoserve_models.slow import SlowPyfunc

            mlflow.log_param("delay_seconds", delay_seconds)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=SlowPyfunc(model, delay_seconds),
                signature=signature,
                input_example=example,
                registered_model_name=name,
                pip_requirements=pip_requirements(PYFUNC_PACKAGES),
            )
        else:
            skops = serialization_format == "skops"
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                input_example=example,
                registered_model_name=name,
                serialization_format=serialization_format,
                skops_trusted_types=SKOPS_TRUSTED_TYPES if skops else None,
                pip_requirements=pip_requirements(SKLEARN_PACKAGES),
            )
    version = str(info.registered_model_version)
    record_digest(name, version, tracking_uri=tracking_uri)
    if alias:
        c.set_registered_model_alias(name, alias, version)
    log.info("registered %s version %s%s", name, version, f" as @{alias}" if alias else "")
    return version


def record_digest(name: str, version: str, *, tracking_uri: str) -> str:
    """Tag ``version`` with the sha256 of its files as the registry serves them (the tag a
    memoserve replica checks its copy against). Also for versions other tools registered:
    ``python -m memoserve_models.registry digest NAME VERSION``."""
    from mlflow.artifacts import download_artifacts

    c = client(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="memoserve-digest-") as tmp:
        download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=tmp, tracking_uri=tracking_uri
        )
        digest = artifact_digest(Path(tmp))
    c.set_model_version_tag(name, version, DIGEST_TAG, digest)
    log.info("recorded %s=%s on %s version %s", DIGEST_TAG, digest, name, version)
    return digest


def promote(name: str, version: str, *, alias: str, tracking_uri: str) -> None:
    """Point ``alias`` at ``version``: every replica serving ``models:/name@alias`` switches."""
    client(tracking_uri).set_registered_model_alias(name, alias, version)


def versions(name: str, *, tracking_uri: str) -> list[dict[str, Any]]:
    """Every version of ``name`` with its aliases, newest first."""
    c = client(tracking_uri)
    # search_model_versions leaves aliases out; get_model_version fills them in.
    found = [
        c.get_model_version(name, v.version) for v in c.search_model_versions(f"name='{name}'")
    ]
    rows = [
        {
            "version": v.version,
            "aliases": list(v.aliases),
            "run_id": v.run_id,
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.creation_timestamp / 1000)),
        }
        for v in found
    ]
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)


def ensure_demo(*, tracking_uri: str, name: str = "iris", alias: str = "champion") -> str | None:
    """Register the iris demo as ``name@alias`` when the registry has no such model."""
    c = client(tracking_uri)
    try:
        c.get_model_version_by_alias(name, alias)
        return None
    except mlflow.exceptions.MlflowException:
        pass  # no such model or alias yet
    return register("iris", name, tracking_uri=tracking_uri, alias=alias)


def register_webhook(url: str, secret: str, *, tracking_uri: str, name: str = "memoserve") -> str:
    """Create (or replace) the webhook that tells memoserve an alias moved."""
    c = client(tracking_uri)
    for hook in c.list_webhooks():
        if hook.name == name:
            c.delete_webhook(hook.webhook_id)
    hook = c.create_webhook(
        name=name, url=url, events=["model_version_alias.created"], secret=secret
    )
    return str(hook.webhook_id)


if __name__ == "__main__":
    from memoserve_models.cli import main

    sys.exit(main(sys.argv[1:]))
