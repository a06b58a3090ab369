"""The memoserve image: a container engine, a base image and the build.

Shared by the Makefile (`make image`) and the image suite (tests/image), so that the engine
handling, the base and the build command exist once.

- **Engine.** One that already answers `docker info` is used as it is and never stopped here.
  Otherwise Debian's `dockerd` is started, on a socket of its own (`/run/memoserve-docker`) with
  its image store in `/var/lib/memoserve-docker` (outside the work tree: the base and the layer
  cache outlive a clone), without iptables or a bridge: builds and containers use the host's
  network. Every user of it holds a shared lock; the last one to leave stops it.
- **Base.** The Dockerfile's `BASE_IMAGE` (pinned by digest) when the engine has it or can pull
  it, or `BASE_IMAGE` from the environment. Where no registry can be reached, a stand-in of the
  same Debian release is made: `debootstrap` of bookworm with Debian's python3.11, slimmed as
  Debian's slim images are, `docker import`ed. Its tarball is cached in the git-ignored
  `.cache/image`, keyed by its recipe; the image is pinned by its ID.
- **Build.** `docker build --network host --build-arg BASE_IMAGE=<base> -t memoserve:dev .`
  (the legacy builder where there is no buildx: it needs no frontend image).

    python -m tests.image.image_tools build    # `make image`
    python -m tests.image.image_tools size     # where the image's bytes go
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from devtools.localstack.processes import Proc, spawn

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
CACHE = ROOT / ".cache" / "image"
TAG = "memoserve:dev"

RUN_DIR = Path("/run/memoserve-docker")
DATA_ROOT = Path("/var/lib/memoserve-docker")
SOCKET = f"unix://{RUN_DIR}/docker.sock"

# The stand-in base: the Debian release of the Dockerfile's FROM image, Debian's Python of the
# same minor version, and the host's CA bundle (so that pip in the build trusts what this
# machine's route to PyPI presents). Bump BASE_RECIPE when the recipe below changes.
BASE_RECIPE = 1
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
BASE_PACKAGES = ("python3.11", "python3.11-venv", "python3-distutils", "ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# What Debian's slim images leave out, also for packages installed later in the build.
SLIM_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
)
SLIM_KEEP = "/usr/share/doc/*/copyright"


class Unavailable(RuntimeError):
    """No engine, or no base image, can be had here; the message says why."""


def default_base() -> str:
    """The Dockerfile's default ``BASE_IMAGE`` (the pinned official image)."""
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError("the Dockerfile has no `ARG BASE_IMAGE=` default")
    return match.group(1)


@dataclass
class Engine:
    """A docker CLI pointed at an engine that answers."""

    host: str | None
    """``DOCKER_HOST``, or None for the CLI's own default."""
    started: bool
    """Whether this engine is memoserve's own dockerd (stopped by its last user)."""

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.host is not None:
            env["DOCKER_HOST"] = self.host
        return env

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``docker *args``, captured; CalledProcessError with its output when ``check``."""
        result = subprocess.run(
            ["docker", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, result.args, result.stdout, result.stderr
            )
        return result

    def has(self, image: str) -> bool:
        return self.docker("image", "inspect", image, check=False).returncode == 0

    def image_id(self, image: str) -> str:
        return self.docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()

    def describe(self) -> str:
        version = self.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
        return f"docker engine {version}" + (" (memoserve's own dockerd)" if self.started else "")


def _answers(host: str | None) -> bool:
    if shutil.which("docker") is None:
        return False
    env = dict(os.environ)
    if host is not None:
        env["DOCKER_HOST"] = host
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            env=env,
            capture_output=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


@contextlib.contextmanager
def engine(log: IO[str] | None = None) -> Iterator[Engine]:
    """An engine for the duration of the block: the one that answers (``DOCKER_HOST`` or the
    CLI's default), else memoserve's own dockerd, started if need be and stopped when its
    last user leaves. Unavailable says why none can be had."""
    say = log or sys.stderr
    if shutil.which("docker") is None:
        raise Unavailable("no docker CLI (Debian's docker.io has one; `make test` installs it)")
    host = os.environ.get("DOCKER_HOST")
    if _answers(host):
        yield Engine(host=host, started=False)
        return
    if host:
        raise Unavailable(f"DOCKER_HOST={host} does not answer")
    if os.geteuid() != 0:
        raise Unavailable("no container engine answers, and starting dockerd needs root")
    if shutil.which("dockerd") is None:
        raise Unavailable(
            "no container engine answers and dockerd is not installed "
            "(`apt-get install docker.io`, which `make test` does as root)"
        )
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    # `starting` is held only to start or stop; `users` is held shared while in use, so the
    # user who leaves last can take it exclusively and knows to stop the engine.
    with (
        (RUN_DIR / "starting.lock").open("a") as starting,
        (RUN_DIR / "users.lock").open("a") as users,
    ):
        fcntl.flock(starting, fcntl.LOCK_EX)
        try:
            if not _answers(SOCKET):
                _start_dockerd(say)
            fcntl.flock(users, fcntl.LOCK_SH)
        finally:
            fcntl.flock(starting, fcntl.LOCK_UN)
        try:
            yield Engine(host=SOCKET, started=True)
        finally:
            fcntl.flock(starting, fcntl.LOCK_EX)
            fcntl.flock(users, fcntl.LOCK_UN)
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(">> dockerd left running: another run still uses it", file=say)
            else:
                _stop_dockerd(say)
                fcntl.flock(users, fcntl.LOCK_UN)
            fcntl.flock(starting, fcntl.LOCK_UN)


# The dockerd this process started, if any: kept to be waited for (no zombie, no warning).
_dockerd: Proc | None = None


def _start_dockerd(say: IO[str]) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / "dockerd.log"
    argv = [
        "dockerd",
        f"--host={SOCKET}",
        f"--pidfile={RUN_DIR / 'dockerd.pid'}",
        f"--exec-root={RUN_DIR / 'exec'}",
        f"--data-root={DATA_ROOT}",
        "--iptables=false",
        "--ip-masq=false",
        "--bridge=none",
    ]
    print(f">> starting dockerd (socket {SOCKET}, images in {DATA_ROOT})", file=say)
    global _dockerd
    _dockerd = spawn("dockerd", argv, CACHE, port=0)
    deadline = time.monotonic() + 60
    while not _answers(SOCKET):
        if time.monotonic() > deadline:
            _stop_dockerd(say)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise Unavailable(f"dockerd did not answer within 60 s:\n{tail}")
        time.sleep(0.25)


def _stop_dockerd(say: IO[str]) -> None:
    """SIGTERM (it stops its containers and containerd), SIGKILL after a minute."""
    global _dockerd
    if _dockerd is not None:  # started by this process: its child
        print(f">> stopping dockerd (pid {_dockerd.popen.pid})", file=say)
        _dockerd.stop(timeout=60)
        _dockerd = None
        return
    try:
        pid = int((RUN_DIR / "dockerd.pid").read_text().strip())
    except (OSError, ValueError):
        return
    print(f">> stopping dockerd (pid {pid})", file=say)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, whose parent has not waited yet, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# --- the base image ------------------------------------------------------------------------


def base_image(eng: Engine, say: IO[str] | None = None) -> str:
    """The image to build on: ``BASE_IMAGE`` from the environment (pulled if need be), else
    the Dockerfile's pinned default if present or pullable, else the local stand-in."""
    say = say or sys.stderr
    wanted = os.environ.get("BASE_IMAGE") or default_base()
    if eng.has(wanted):
        return wanted
    pulled = eng.docker("pull", wanted, check=False, timeout=600)
    if pulled.returncode == 0:
        return wanted
    if os.environ.get("BASE_IMAGE"):
        raise Unavailable(f"cannot pull BASE_IMAGE={wanted}: {pulled.stderr.strip()}")
    reason = pulled.stderr.strip().splitlines()[-1:] or ["?"]
    print(f">> {wanted} cannot be pulled ({reason[0]}): using a local {SUITE} base", file=say)
    return local_base(eng, say)


def base_key() -> str:
    recipe = {
        "recipe": BASE_RECIPE,
        "suite": SUITE,
        "packages": BASE_PACKAGES,
        "excludes": SLIM_EXCLUDES,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def local_base(eng: Engine, say: IO[str]) -> str:
    """The stand-in base's image ID (imported from the cached tarball, made if absent)."""
    key = base_key()
    tag = f"memoserve-base:{SUITE}-python3.11-{key}"
    if not eng.has(tag):
        tarball = CACHE / f"base-{SUITE}-{key}.tar"
        if not tarball.exists():
            make_base_tarball(tarball, say)
        print(f">> docker import {tarball.relative_to(ROOT)} as {tag}", file=say)
        eng.docker(
            "import",
            "--change",
            "ENV LANG=C.UTF-8",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            'CMD ["python3"]',
            "--message",
            f"debootstrap {SUITE} minbase + {' '.join(BASE_PACKAGES)}",
            str(tarball),
            tag,
            timeout=600,
        )
    return eng.image_id(tag)


def make_base_tarball(tarball: Path, say: IO[str]) -> None:
    """debootstrap, updates, slimming, then a tarball of the root filesystem."""
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        raise Unavailable(
            "no base image: the pinned one cannot be pulled, and a local one needs "
            "debootstrap as root (`apt-get install debootstrap`, which `make test` does)"
        )
    tarball.parent.mkdir(parents=True, exist_ok=True)
    rootfs = tarball.with_suffix(".rootfs")
    shutil.rmtree(rootfs, ignore_errors=True)
    started = time.monotonic()
    print(f">> debootstrap {SUITE} with {', '.join(BASE_PACKAGES)} (a few minutes)", file=say)
    try:
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                SUITE,
                str(rootfs),
                MIRROR,
            ],
            rootfs.with_suffix(".log"),
        )
        _slim_and_update(rootfs)
        partial = tarball.with_suffix(".partial")
        _run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], None)
        partial.rename(tarball)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    print(f">> base tarball made in {time.monotonic() - started:.0f} s: {tarball}", file=say)


def _slim_and_update(rootfs: Path) -> None:
    dpkg_cfg = rootfs / "etc/dpkg/dpkg.cfg.d/memoserve-slim"
    dpkg_cfg.write_text(
        "".join(f"path-exclude {p}\n" for p in SLIM_EXCLUDES) + f"path-include {SLIM_KEEP}\n"
    )
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
        f"Types: deb\nURIs: {MIRROR}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {SECURITY_MIRROR}\nSuites: {SUITE}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    shutil.copyfile("/etc/resolv.conf", rootfs / "etc/resolv.conf")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    log = rootfs.with_suffix(".log")
    _run(["chroot", str(rootfs), "apt-get", "update", "-q"], log, env)
    _run(["chroot", str(rootfs), "apt-get", "upgrade", "-y", "-q"], log, env)
    _run(["chroot", str(rootfs), "apt-get", "clean"], log, env)
    for pattern in (*SLIM_EXCLUDES, "/var/lib/apt/lists/*", "/var/log/*", "/tmp/*", "/var/tmp/*"):
        for path in rootfs.glob(pattern.lstrip("/")):
            _remove(path, keep=SLIM_KEEP.rsplit("/", 1)[1])
    for name in ("python", "python3"):
        link = rootfs / "usr/local/bin" / name
        link.unlink(missing_ok=True)
        link.symlink_to("/usr/bin/python3.11")
    if HOST_CA_BUNDLE.is_file():
        target = rootfs / HOST_CA_BUNDLE.relative_to("/")
        target.unlink(missing_ok=True)
        shutil.copyfile(HOST_CA_BUNDLE, target)
    (rootfs / "etc/resolv.conf").write_text("")


def _remove(path: Path, keep: str) -> None:
    """``path`` and what is under it, but for files named ``keep`` (licences)."""
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            _remove(child, keep)
        if not any(path.iterdir()):
            path.rmdir()
    elif path.name != keep or path.parent.parent.name != "doc":
        path.unlink()


def _run(argv: list[str], log: Path | None, env: dict[str, str] | None = None) -> None:
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=1800)  # noqa: S603
    finally:
        if log is not None and not isinstance(out, int):
            out.close()
    if result.returncode != 0:
        tail = "" if log is None else "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{' '.join(argv[:3])}... failed ({result.returncode})\n{tail}")


# --- the build -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """An image built here and what it took."""

    image_id: str
    base: str
    seconds: float
    size_bytes: int
    cached_steps: int
    steps: int


def build(eng: Engine, base: str, *, tag: str = TAG, log: IO[str] | None = None) -> Built:
    """``docker build`` of the repository on ``base``; output to ``log`` (else CACHE/build.log)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    env = eng.env()
    if subprocess.run(["docker", "buildx", "version"], env=env, capture_output=True).returncode:
        env["DOCKER_BUILDKIT"] = "0"  # no buildx: the legacy builder, built into every engine
    argv = [
        "docker",
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "-t",
        tag,
        str(ROOT),
    ]
    started = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(  # noqa: S603 - argv built here
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        with (CACHE / "build.log").open("w") as file:
            for line in proc.stdout:
                lines.append(line)
                file.write(line)
                if log is not None:
                    log.write(line)
                    log.flush()
    if proc.returncode != 0:
        raise RuntimeError("docker build failed:\n" + "".join(lines[-40:]))
    seconds = time.monotonic() - started
    text = "".join(lines)
    inspect = json.loads(eng.docker("image", "inspect", tag).stdout)[0]
    return Built(
        image_id=inspect["Id"],
        base=base,
        seconds=seconds,
        size_bytes=int(inspect["Size"]),
        cached_steps=text.count("Using cache") + text.count("CACHED"),
        steps=len(re.findall(r"^(?:Step \d+/\d+ :|#\d+ \[)", text, re.MULTILINE)),
    )


# --- where the bytes go --------------------------------------------------------------------


def size_report(eng: Engine, image: str) -> str:
    """``docker history`` of the image's layers and ``du`` of its main directories."""
    history = eng.docker(
        "history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", image
    ).stdout
    layers = []
    for line in history.splitlines():
        size, _, created = line.partition("\t")
        if size not in ("0B", "0"):
            created = re.sub(r"^/bin/sh -c (#\(nop\) )?", "", created).strip() or "(the base)"
            layers.append(f"  {size:>9}  {created[:88]}")
    du = eng.docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "du -sxm /usr /opt/venv /opt/memoserve /app /var /etc 2>/dev/null; echo; "
        "du -sm /opt/venv/lib/python3.11/site-packages/* | sort -rn | head -12",
    ).stdout
    return "layers (docker history):\n" + "\n".join(layers) + "\nMB by directory (du):\n" + du


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="image_tools", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "base", "size"])
    args = parser.parse_args(argv)
    try:
        with engine() as eng:
            print(f">> {eng.describe()}")
            if args.command == "size":
                print(size_report(eng, TAG))
                return 0
            base = base_image(eng)
            print(f">> base {base}")
            if args.command == "base":
                return 0
            built = build(eng, base, log=sys.stdout)
            print(
                f">> {TAG} = {built.image_id[:19]}: {built.size_bytes / 1e6:.0f} MB, built in "
                f"{built.seconds:.0f} s ({built.cached_steps} of {built.steps} steps cached)"
            )
    except Unavailable as exc:
        print(f"!! {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
