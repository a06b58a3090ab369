# memoserve: `make image` (or `docker build -t memoserve:dev .`); see the README, "The image".
#
# The base is pinned by digest. To build on another base (a mirror, a newer digest, or the
# local Debian base `make image` makes where no registry can be reached), override it:
#   docker build --build-arg BASE_IMAGE=<image>[@sha256:<digest>] -t memoserve:dev .
# No `# syntax=` line: BuildKit would pull that frontend image, and the legacy builder that
# offline machines use ignores it; nothing here needs more than the built-in frontend.
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

# deps: the third-party packages from the hash-checked lock files alone, before any source is
# copied, so that editing the code reuses this (slow) stage. Wheels only: no compiler is needed.
FROM ${BASE_IMAGE} AS deps

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# binutils (strip, readelf) for slim_venv.py, unpinned: only this stage has it, not the image.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv /opt/venv

WORKDIR /src
COPY requirements/build.txt requirements/runtime.txt requirements/
COPY docker/slim_venv.py docker/
# What the service never reads goes in the same layer, and what it reads at every start is
# compiled once; docker/slim_venv.py says what and why (and prints how many MB each step).
RUN pip install --no-compile --only-binary=:all: --require-hashes \
        -r requirements/build.txt -r requirements/runtime.txt \
 && python docker/slim_venv.py /opt/venv

# builder: memoserve's metadata and `memoserve` console script, kept apart in /opt/memoserve
# so that the virtualenv stays byte-for-byte the deps stage's (its layer is reused as long as
# the lock files are). The code itself runs from /app (see below): the copies are dropped.
FROM deps AS builder
COPY pyproject.toml README.md ./
COPY service ./service
COPY mlflow/memoserve_models ./mlflow/memoserve_models
RUN pip install --no-deps --no-build-isolation --no-compile --target /opt/memoserve . \
 && rm -rf /opt/memoserve/service /opt/memoserve/memoserve_models \
 && python -m compileall -q service mlflow/memoserve_models

# venv: the virtualenv without the installer and the build backend.
FROM deps AS venv
RUN pip uninstall -q -y setuptools wheel pip

# runtime: the virtualenv, the project's metadata and script, and the two packages; no compiler,
# no pip, no tests.
FROM ${BASE_IMAGE} AS runtime
ARG BASE_IMAGE
LABEL org.opencontainers.image.title="memoserve" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# PYTHONPATH=/app puts /app/service and /app/memoserve_models first on the import path: the
# skaffold dev profile syncs edited files there and reloads the workers, without a rebuild.
# /opt/memoserve holds only the project's metadata and its console script.
# HOME=/tmp and the paths below are the only places written to: with a read-only root
# filesystem the chart mounts emptyDirs at /tmp, /var/cache/memoserve and /var/run/memoserve.
ENV PATH=/opt/memoserve/bin:/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/opt/memoserve \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MEMOSERVE_MODEL_CACHE_DIR=/var/cache/memoserve/models \
    PROMETHEUS_MULTIPROC_DIR=/var/run/memoserve/prometheus

COPY --from=venv /opt/venv /opt/venv
COPY --from=builder /opt/memoserve /opt/memoserve
COPY --from=builder /src/service /app/service
COPY --from=builder /src/mlflow/memoserve_models /app/memoserve_models

# The writable directories exist for a plain `docker run` too; numeric ids, no passwd entry.
# A tmpfs mounted over them (`docker run --read-only`) is root's unless mounted with
# uid=10001,gid=10001; the chart's emptyDirs get the group from fsGroup.
RUN mkdir -p /var/cache/memoserve/models /var/run/memoserve/prometheus \
 && chown -R 10001:10001 /var/cache/memoserve /var/run/memoserve

WORKDIR /app
USER 10001:10001
EXPOSE 8080

ENTRYPOINT ["memoserve"]
CMD ["serve"]
