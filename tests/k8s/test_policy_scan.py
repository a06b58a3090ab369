"""checkov over what we ship: the chart rendered for every CI scenario, the k8s/ base and its
overlays as kustomize builds them, and the Dockerfile. One checkov run per session (~25 s on two
busy cores); every finding fails unless SKIPS lists its check, with the reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_manifests import Manifest, Render
from k8s_tools import BASE_MANIFEST, OVERLAYS, ROOT, SCENARIOS, TOOLS_DIR

pytestmark = pytest.mark.k8s

CHECKOV = TOOLS_DIR / "checkov" / "bin" / "checkov"

# check id -> (the resources it is skipped for, as `Kind/name`, or None for all; the reason).
# checkov without a Prisma Cloud key reports no severities; none of these is a HIGH/CRITICAL
# class (privileges, host access, capabilities, root, writable root filesystem: all fixed).
SKIPS: dict[str, tuple[frozenset[str] | None, str]] = {
    "CKV_K8S_21": (None, "the chart renders no namespace: `helm install -n` or kustomize sets it"),
    "CKV_K8S_11": (
        None,
        "no CPU limits on purpose: CFS throttling adds latency to a serving path whose HPA "
        "scales on the CPU requests; memory limits are set everywhere",
    ),
    "CKV_K8S_15": (
        None,
        "pullPolicy IfNotPresent with versioned tags; `*.image.pullPolicy` sets Always",
    ),
    "CKV_K8S_43": (
        None,
        "images by version tag; a digest is the deployer's pin (`tag: 0.1.0@sha256:...`)",
    ),
    "CKV_K8S_35": (
        None,
        "memoserve's Settings, MLflow's admin bootstrap and redis-server read their secrets "
        "from environment variables only (secretKeyRef, never in the pod spec's plain text)",
    ),
    "CKV_K8S_40": (
        frozenset(
            {
                "StatefulSet/memoserve-redis",
                "StatefulSet/memoserve-redis-cluster",
                "Job/memoserve-redis-cluster-bootstrap",
            }
        ),
        "uid 999 is the official Redis image's `redis` user, which owns its directories",
    ),
    "CKV_K8S_8": (
        frozenset({"Pod/memoserve-test-cache-hit"}),
        "the `helm test` pod runs one check and exits: nothing to probe",
    ),
    "CKV_K8S_9": (
        frozenset({"Pod/memoserve-test-cache-hit"}),
        "the `helm test` pod runs one check and exits: nothing to probe",
    ),
    "CKV_DOCKER_2": (
        None,
        "Kubernetes ignores a Dockerfile HEALTHCHECK; the chart's probes check the service",
    ),
    "CKV_DOCKER_7": (
        None,
        "false positive: `FROM ${BASE_IMAGE}`, whose ARG default is a tag pinned by digest",
    ),
}


def _resource(finding: dict[str, Any]) -> str:
    """`Kind/name` of a finding's resource (checkov says `Kind.namespace.name[.labels]`)."""
    kind, _, rest = finding["resource"].partition(".")
    name = rest.partition(".")[2].partition(".")[0]
    return f"{kind}/{name}"


def _skipped(finding: dict[str, Any]) -> bool:
    resources, _ = SKIPS.get(finding["check_id"], (frozenset(), ""))
    return resources is None or _resource(finding) in resources


@pytest.fixture(scope="session")
def scan(
    render: Render, kustomize: Callable[[str], list[Manifest]], tmp_path_factory: Any
) -> list[dict[str, Any]]:
    """checkov's failed checks over everything we ship, from one run."""
    if not os.access(CHECKOV, os.X_OK):
        pytest.fail("`make test` installs checkov (`make tools`); .tools/checkov has none")
    root: Path = tmp_path_factory.mktemp("policy-scan")
    for scenario in SCENARIOS:
        (root / f"chart-{scenario}.yaml").write_text(yaml.safe_dump_all(render(scenario)))
    shutil.copy(BASE_MANIFEST, root / "k8s-base.yaml")
    for overlay in OVERLAYS:
        (root / f"k8s-{overlay}.yaml").write_text(yaml.safe_dump_all(kustomize(overlay)))
    shutil.copy(ROOT / "Dockerfile", root / "Dockerfile")
    command = [str(CHECKOV), "-d", str(root), "--framework", "kubernetes", "dockerfile"]
    command += ["--skip-download", "--quiet", "--compact", "-o", "json"]
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    print(f"checkov: {time.monotonic() - start:.1f} s")
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    failed: list[dict[str, Any]] = []
    for report in reports:
        for finding in report["results"]["failed_checks"]:
            finding["file"] = Path(finding["file_path"]).name
            failed.append(finding)
    return failed


def test_no_finding_outside_the_skip_list(scan: list[dict[str, Any]]) -> None:
    unexpected = {
        f"{f['check_id']} {_resource(f)} ({f['file']}): {f['check_name']}"
        for f in scan
        if not _skipped(f)
    }
    assert sorted(unexpected) == []


def test_every_skip_is_still_needed(scan: list[dict[str, Any]]) -> None:
    """A check that no longer fails anywhere leaves the list (so it guards again)."""
    assert sorted(set(SKIPS) - {f["check_id"] for f in scan}) == []


def test_every_skip_says_why() -> None:
    assert all(len(reason) > 20 for _, reason in SKIPS.values())
