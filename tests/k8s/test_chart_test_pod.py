"""The `helm test` pod: its payload from values, and its wait for a cache HIT, run here."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml
from k8s_manifests import HelmTemplate, Manifest, Render, get, load_all, of_kind
from k8s_tools import CHART

pytestmark = pytest.mark.k8s

POD = "memoserve-test-cache-hit"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def pod_script(manifests: list[Manifest]) -> tuple[str, dict[str, str]]:
    """The pod's script and its plain environment."""
    (item,) = get(manifests, "Pod", POD)["spec"]["containers"]
    return item["args"][0], {e["name"]: e["value"] for e in item["env"] if "value" in e}


def test_the_pod_is_a_helm_test_hook(default: list[Manifest], render: Render) -> None:
    pod = get(default, "Pod", POD)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script, env = pod_script(default)
    assert env["URL"] == "http://memoserve:8080/invocations"
    compile(script, POD, "exec")  # the embedded script is valid Python
    assert of_kind(render(None, skip_tests=True), "Pod") == []


def test_the_payload_comes_from_values(default: list[Manifest]) -> None:
    script, env = pod_script(default)
    assert json.loads(env["PAYLOAD"]) == json.loads(VALUES["tests"]["payload"])
    assert "dataframe_split" in env["PAYLOAD"]  # the demo iris model's input, by default
    assert "sepal" not in script and "dataframe_split" not in script


def test_a_payload_may_be_a_string_or_a_map(render: Render, helm_template: HelmTemplate) -> None:
    _, env = pod_script(render("production"))
    assert json.loads(env["PAYLOAD"]) == {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    result = helm_template({"tests": {"payload": {"inputs": {"x": [1, 2]}}}})
    assert result.returncode == 0, result.stderr
    _, env = pod_script(load_all(result.stdout))
    assert json.loads(env["PAYLOAD"]) == {"inputs": {"x": [1, 2]}}


def test_no_payload_no_test_pod(render: Render) -> None:
    assert of_kind(render("external-redis"), "Pod") == []
    assert of_kind(render(None, "tests.payload="), "Pod") == []


@pytest.mark.parametrize("payload", ["[[5.1, 3.5]]", "{not json", "null"])
def test_a_payload_that_is_no_json_object_is_refused(
    helm_template: HelmTemplate, payload: str
) -> None:
    result = helm_template({"tests": {"payload": payload}})
    assert result.returncode != 0
    assert "tests.payload must be a JSON object" in result.stderr


class FakeMemoserve(ThreadingHTTPServer):
    """Answers each POST with the next `X-Cache` of a script, the last one over and over."""

    def __init__(self, answers: list[str]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers = answers
        self.bodies: list[bytes] = []


class _Handler(BaseHTTPRequestHandler):
    server: FakeMemoserve

    def do_POST(self) -> None:
        self.server.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        answers = self.server.answers
        cache = answers[min(len(self.server.bodies), len(answers)) - 1]
        self.send_response(200)
        self.send_header("X-Cache", cache)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def memoserve(request: pytest.FixtureRequest) -> Iterator[FakeMemoserve]:
    server = FakeMemoserve(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def run_pod_script(
    default: list[Manifest], server: FakeMemoserve, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The script's exit (its SystemExit code), run in-process against `server`, sleeps skipped."""
    script, env = pod_script(default)
    monkeypatch.setenv("URL", f"http://127.0.0.1:{server.server_address[1]}/invocations")
    monkeypatch.setenv("PAYLOAD", env["PAYLOAD"])
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    with pytest.raises(SystemExit) as exited:
        exec(compile(script, POD, "exec"), {"__name__": "__main__"})
    return exited.value.code


@pytest.mark.parametrize("memoserve", [["MISS", "MISS", "MISS", "HIT"]], indirect=True)
def test_the_pod_retries_until_a_repeat_hits(
    default: list[Manifest], memoserve: FakeMemoserve, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_pod_script(default, memoserve, monkeypatch) == 0
    assert len(memoserve.bodies) == 4  # the cache write landed after the second repeat
    payload = json.loads(VALUES["tests"]["payload"])
    assert all(json.loads(body) == payload for body in memoserve.bodies)


@pytest.mark.parametrize("memoserve", [["MISS"]], indirect=True)
def test_the_pod_gives_up_when_no_repeat_hits(
    default: list[Manifest], memoserve: FakeMemoserve, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_pod_script(default, memoserve, monkeypatch) == (
        "no repeat of the request was a cache HIT"
    )
    assert 2 < len(memoserve.bodies) <= 21  # bounded: the first call and at most 20 repeats
