"""MLflow's basic auth as the chart runs it: a real `mlflow server --app-name basic-auth` with
the chart's own `files/mlflow-basic-auth.ini`, and memoserve's client paths against it."""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from devtools.localstack.processes import LOOPBACK, free_port, spawn, wait_until
from memoserve_models import registry
from service.models.mlflow import MlflowModelSource, RegistryRef

pytestmark = pytest.mark.integration
T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
AUTH_INI = ROOT / "charts" / "memoserve" / "files" / "mlflow-basic-auth.ini"
ADMIN = "admin"
PASSWORD = secrets.token_urlsafe(24)
SEARCH = "/api/2.0/mlflow/registered-models/search"


def quiet(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """MLflow's client warns about its own deprecations; not what this checks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def auth_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real MLflow with basic auth, started as the chart's Deployment starts it: the ini
    from MLFLOW_AUTH_CONFIG_PATH, the admin account and CSRF key from the environment, and the
    working directory holding the user store."""
    from cryptography.fernet import Fernet

    workdir = tmp_path_factory.mktemp("mlflow-auth")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_AUTH_CONFIG_PATH": str(AUTH_INI),
        "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN,
        "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(32),
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    }
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    argv = [mlflow_bin, "server", "--app-name", "basic-auth", "--host", LOOPBACK]
    argv += ["--port", str(port), "--workers", "1", "--serve-artifacts"]
    argv += ["--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}"]
    argv += ["--artifacts-destination", str(workdir / "artifacts")]
    proc = spawn("mlflow", argv, workdir, port, env)
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_until(lambda: _health(url), 90, "mlflow server (basic-auth)", proc=proc)
        # the ini's relative sqlite URI lands in the working directory (the chart's volume)
        assert (workdir / "basic_auth.db").is_file()
        yield url
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n--- mlflow log ---\n{proc.tail()}") from exc
    finally:
        proc.stop()


def _health(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture()
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the chart gives memoserve and the registry-setup job, from the auth Secret."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)


def test_the_registry_api_refuses_anonymous_and_wrong_credentials(auth_mlflow: str) -> None:
    assert httpx.get(f"{auth_mlflow}{SEARCH}", timeout=10).status_code == 401
    wrong = httpx.get(f"{auth_mlflow}{SEARCH}", auth=(ADMIN, "not-it"), timeout=10)
    assert wrong.status_code == 401
    right = httpx.get(f"{auth_mlflow}{SEARCH}", auth=(ADMIN, PASSWORD), timeout=10)
    assert right.status_code == 200, right.text
    # the probes' path stays open
    assert httpx.get(f"{auth_mlflow}/health", timeout=10).status_code == 200


def test_webhook_registration_needs_the_credentials(
    auth_mlflow: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    with pytest.raises(Exception, match="401|Unauthorized|credentials"):
        quiet(registry.register_webhook, "http://127.0.0.1:9/x", "s", tracking_uri=auth_mlflow)


def test_memoserve_loads_and_is_notified_through_the_credentials(
    auth_mlflow: str, credentials: None, tmp_path: Path
) -> None:
    """The setup job's two steps (register, webhook) and memoserve's MlflowModelSource, all
    through MLFLOW_TRACKING_USERNAME / _PASSWORD; MLflow's delivery to the receiver is
    outbound and unaffected by the auth app."""
    deliveries: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            deliveries.append({"headers": dict(self.headers), "body": json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        hook_url = f"http://{LOOPBACK}:{server.server_address[1]}/v1/webhooks/mlflow"
        quiet(registry.register_webhook, hook_url, "hook-secret", tracking_uri=auth_mlflow)
        version = quiet(
            registry.register,
            "iris",
            "iris-auth",
            tracking_uri=auth_mlflow,
            alias="champion",
            n_estimators=5,
            delay_seconds=0,
        )
        source = MlflowModelSource(
            RegistryRef.parse("models:/iris-auth@champion"),
            tracking_uri=auth_mlflow,
            cache_dir=tmp_path,
        )
        assert quiet(source.resolve) == version
        model = quiet(source.load, version)
        assert model.version == version and model.outputs
        wait_until(lambda: bool(deliveries), 30, "the alias webhook delivery")
        (delivery,) = deliveries
        assert delivery["body"]["data"]["alias"] == "champion"
        assert "X-MLflow-Signature" in delivery["headers"]
    finally:
        server.shutdown()
        server.server_close()


def test_memoserve_without_credentials_cannot_resolve(
    auth_mlflow: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    source = MlflowModelSource(
        RegistryRef.parse("models:/iris-auth@champion"),
        tracking_uri=auth_mlflow,
        cache_dir=tmp_path,
    )
    with pytest.raises(Exception, match="401|Unauthorized|credentials"):
        quiet(source.resolve)
