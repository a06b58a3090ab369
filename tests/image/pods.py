"""The chart's pods as containers: `helm template`, then each pod spec as `docker run`.

What a kubelet would do with the rendered spec is done here with docker's own options, so that
the containers run as the chart runs them and follow the chart when it changes:

- `securityContext`: `runAsUser`/`runAsGroup` (the container's over the pod's) → `--user`,
  `fsGroup` → `--group-add`, `readOnlyRootFilesystem` → `--read-only`, `capabilities` →
  `--cap-drop`/`--cap-add`, `allowPrivilegeEscalation: false` → `no-new-privileges`,
  `seccompProfile: RuntimeDefault` → the engine's default profile (checked to be on);
- every `emptyDir` mount → a tmpfs of the volume's `sizeLimit`, owned by the pod's user and
  `fsGroup` (an emptyDir is writable by them; a bare tmpfs would be root's);
- `resources.limits.memory` → `--memory`; `command`/`args` → entrypoint and arguments;
- `envFrom` ConfigMaps and `env` (values, and `secretKeyRef` from the secrets given; an
  optional key that is absent is left unset, as a kubelet does);
- `terminationGracePeriodSeconds` → the `docker stop` timeout (SIGTERM, then SIGKILL).

Not done, for lack of a cluster: Services and probes (the tests address a container by its
loopback port and wait on `/readyz` themselves), the `preStop` sleep (it only waits for the
endpoints controller, which the tests stand in for by no longer sending to a stopping replica).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.image.image_tools import Engine

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "k8s"))
from k8s_tools import CHART, RELEASE, find  # noqa: E402

Manifest = dict[str, Any]
SESSION = uuid.uuid4().hex[:8]
LABEL = "memoserve.image-test"


@dataclass(frozen=True)
class Chart:
    """The chart rendered with its default values."""

    manifests: list[Manifest]

    @classmethod
    def render(cls) -> Chart:
        helm, problem = find("helm", quiet=True)
        if helm is None:
            raise RuntimeError(f"`make image-test` provides helm (`make tools`): {problem}")
        out = subprocess.run(
            [helm, "template", RELEASE, str(CHART)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        return cls([m for m in yaml.safe_load_all(out) if m])

    def get(self, kind: str, name: str) -> Manifest:
        for m in self.manifests:
            if m["kind"] == kind and m["metadata"]["name"] == name:
                return m
        raise KeyError(f"{kind}/{name} is not in the rendered chart")

    def pod(self, kind: str, name: str) -> Pod:
        """The pod that ``kind/name`` (a Deployment, Job or Pod) runs."""
        m = self.get(kind, name)
        spec = m["spec"] if kind == "Pod" else m["spec"]["template"]["spec"]
        config = {
            ref["configMapRef"]["name"]: self.get("ConfigMap", ref["configMapRef"]["name"])
            for c in spec["containers"]
            for ref in c.get("envFrom", [])
            if "configMapRef" in ref
        }
        return Pod(f"{kind}/{name}", spec, {k: v.get("data", {}) for k, v in config.items()})


@dataclass(frozen=True)
class Pod:
    """One rendered pod spec (its first container) and the ConfigMaps it reads."""

    name: str
    spec: Manifest
    config_maps: dict[str, dict[str, str]]

    @property
    def container(self) -> Manifest:
        first: Manifest = self.spec["containers"][0]
        return first

    @property
    def grace_seconds(self) -> int:
        return int(self.spec.get("terminationGracePeriodSeconds", 30))

    def security(self, key: str) -> Any:
        """A security setting, the container's over the pod's."""
        own = self.container.get("securityContext", {})
        return own.get(key, self.spec.get("securityContext", {}).get(key))

    def env(self, secrets: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
        """The container's environment as a kubelet builds it, then ``overrides``."""
        env: dict[str, str] = {}
        for ref in self.container.get("envFrom", []):
            env.update(self.config_maps[ref["configMapRef"]["name"]])
        for var in self.container.get("env", []):
            if "value" in var:
                env[var["name"]] = str(var["value"])
            elif "secretKeyRef" in var.get("valueFrom", {}):
                ref = var["valueFrom"]["secretKeyRef"]
                if ref["key"] in secrets:
                    env[var["name"]] = secrets[ref["key"]]
                elif not ref.get("optional"):
                    raise KeyError(f"{self.name} needs secret key {ref['key']!r}")
            else:
                raise NotImplementedError(f"{self.name}: env {var['name']} from {var}")
        env.update(overrides)
        return env

    def run_options(self) -> list[str]:
        """``docker run`` options for this pod's security context, volumes and limits."""
        uid, gid = self.security("runAsUser"), self.security("runAsGroup")
        if self.security("runAsNonRoot") and not uid:
            raise ValueError(f"{self.name}: runAsNonRoot without a numeric runAsUser")
        fs_group = self.spec.get("securityContext", {}).get("fsGroup", gid)
        options = ["--network", "host", "--user", f"{uid}:{gid}"]
        if fs_group is not None:
            options += ["--group-add", str(fs_group)]
        if self.security("readOnlyRootFilesystem"):
            options.append("--read-only")
        if self.security("allowPrivilegeEscalation") is False:
            options += ["--security-opt", "no-new-privileges"]
        capabilities = self.security("capabilities") or {}
        options += [f"--cap-drop={c}" for c in capabilities.get("drop", [])]
        options += [f"--cap-add={c}" for c in capabilities.get("add", [])]
        seccomp = (self.security("seccompProfile") or {}).get("type", "RuntimeDefault")
        if seccomp == "Unconfined":
            options += ["--security-opt", "seccomp=unconfined"]
        elif seccomp != "RuntimeDefault":
            raise NotImplementedError(f"{self.name}: seccomp {seccomp}")
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        for mount in self.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "emptyDir" not in volume:
                raise NotImplementedError(f"{self.name}: volume {volume} is not an emptyDir")
            size = volume["emptyDir"].get("sizeLimit")
            opts = ["rw", "exec", "nosuid", "nodev", f"uid={uid}", f"gid={fs_group}", "mode=0777"]
            if size:
                opts.append(f"size={quantity(size)}")
            options += ["--tmpfs", f"{mount['mountPath']}:{','.join(opts)}"]
        memory = self.container.get("resources", {}).get("limits", {}).get("memory")
        if memory:
            options += ["--memory", str(quantity(memory))]
        return options

    def argv(self) -> tuple[list[str], list[str]]:
        """(``--entrypoint`` options, arguments): k8s command/args over ENTRYPOINT/CMD."""
        command, args = self.container.get("command"), self.container.get("args", [])
        if command:
            return ["--entrypoint", command[0]], [*command[1:], *args]
        return [], list(args)


def quantity(text: str) -> int:
    """Bytes of a Kubernetes quantity such as ``256Mi`` or ``1G``."""
    match = re.fullmatch(r"(\d+)([KMGT]i?)?", str(text))
    if match is None:
        raise ValueError(f"unsupported quantity {text!r}")
    number, unit = int(match.group(1)), match.group(2) or ""
    power = "KMGT".index(unit[0]) + 1 if unit else 0
    return number * (1024 if unit.endswith("i") else 1000) ** power


@dataclass
class Container:
    """A container started from a pod spec; always removed by whoever started it."""

    engine: Engine
    name: str
    id: str
    port: int | None
    grace_seconds: int
    started_at: float
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inspect(self, template: str) -> str:
        return self.engine.docker("inspect", "--format", template, self.id).stdout.strip()

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def logs(self) -> str:
        result = self.engine.docker("logs", self.id, check=False)
        return result.stdout + result.stderr

    def wait(self, timeout: float) -> int:
        """The exit code once the container has stopped by itself."""
        code = self.engine.docker("wait", self.id, timeout=timeout).stdout.strip()
        return int(code)

    def stop(self) -> int:
        """What a kubelet does: SIGTERM, then SIGKILL after the grace period; the exit code."""
        self.engine.docker(
            "stop", "--time", str(self.grace_seconds), self.id, timeout=self.grace_seconds + 30
        )
        self.stopped = True
        return int(self.inspect("{{.State.ExitCode}}"))

    def remove(self) -> None:
        self.engine.docker("rm", "--force", self.id, check=False)

    def wait_ready(self, path: str = "/readyz", timeout: float = 120) -> float:
        """Seconds from ``docker run`` to the first 200 on ``path``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return time.monotonic() - self.started_at
            except OSError:
                pass
            if not self.running():
                raise RuntimeError(f"{self.name} exited before {path}:\n{self.logs()[-4000:]}")
            time.sleep(0.05)
        tail = self.logs()[-4000:]
        raise TimeoutError(f"{self.name}: no 200 on {path} in {timeout:.0f}s:\n{tail}")


def run(
    engine: Engine,
    image: str,
    pod: Pod,
    name: str,
    *,
    env: Mapping[str, str],
    port: int | None = None,
) -> Container:
    """``docker run`` of ``pod`` from ``image`` with the environment ``env``."""
    entrypoint, args = pod.argv()
    full_name = f"memoserve-it-{SESSION}-{name}"
    env_args = [f"--env={k}={v}" for k, v in env.items()]
    argv = [
        "run",
        "--detach",
        "--name",
        full_name,
        "--label",
        f"{LABEL}={SESSION}",
        *pod.run_options(),
        *entrypoint,
        *env_args,
        image,
        *args,
    ]
    started = time.monotonic()
    cid = engine.docker(*argv).stdout.strip()
    return Container(engine, full_name, cid, port, pod.grace_seconds, started)


def remove_all(engine: Engine) -> None:
    """Every container this session started that is still there (a safety net)."""
    listed = engine.docker("ps", "--all", "--quiet", "--filter", f"label={LABEL}={SESSION}")
    for cid in listed.stdout.split():
        engine.docker("rm", "--force", cid, check=False)
