# syntax=docker/dockerfile:1
# memoserve: `docker build -t memoserve:dev .`
#
# Builder: the dependencies are installed from pyproject.toml alone, before any source is
# copied, so that editing the code reuses that (slow) layer. The project itself is then
# installed without dependencies, for its `memoserve` console script and metadata.
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

COPY service ./service
COPY mlflow/memoserve_models ./mlflow/memoserve_models
# Non-editable install for the entry point; the code itself runs from /app (see below), so
# the copies in site-packages are dropped to keep one copy of each module in the image.
RUN pip install --no-deps . \
 && rm -rf /opt/venv/lib/python3.11/site-packages/service \
           /opt/venv/lib/python3.11/site-packages/memoserve_models \
 && python -m compileall -q /opt/venv/lib/python3.11/site-packages service mlflow/memoserve_models

# Runtime: the virtualenv and the two packages, nothing else; no compiler, no pip cache.
FROM python:3.11-slim AS runtime

# PYTHONPATH=/app puts /app/service and /app/memoserve_models first on the import path: the
# skaffold dev profile syncs edited files there and reloads the workers, without a rebuild.
# HOME=/tmp and the paths below are the only places written to: with a read-only root
# filesystem the chart mounts emptyDirs at /tmp, /var/cache/memoserve and /var/run/memoserve.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MEMOSERVE_MODEL_CACHE_DIR=/var/cache/memoserve/models \
    PROMETHEUS_MULTIPROC_DIR=/var/run/memoserve/prometheus

COPY --from=builder /opt/venv /opt/venv
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
