#!/usr/bin/env bash
# Run an MLflow tracking server + model registry for memoserve.
#
#   BACKEND_STORE_URI      sqlite:///mlflow.db (default) or postgresql://user:pass@host/db
#                          (Postgres needs `pip install psycopg2-binary`)
#   ARTIFACTS_DESTINATION  ./mlartifacts (default) or s3://bucket/prefix (needs `pip install
#                          boto3`; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and, for MinIO and
#                          other S3-style stores, MLFLOW_S3_ENDPOINT_URL)
#   HOST / PORT            127.0.0.1 / 5000
#   WEBHOOK_KEY_FILE       Fernet key that encrypts webhook secrets (created if absent). Keep it
#                          fixed: with a random key per start, deliveries fail after a restart.
#
# Webhooks to memoserve on private addresses over http are allowed here, as memoserve runs next
# to MLflow inside a cluster; put TLS in front for anything public.
set -euo pipefail

BACKEND_STORE_URI=${BACKEND_STORE_URI:-sqlite:///mlflow.db}
ARTIFACTS_DESTINATION=${ARTIFACTS_DESTINATION:-./mlartifacts}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-5000}
WEBHOOK_KEY_FILE=${WEBHOOK_KEY_FILE:-.mlflow-webhook.key}

if [ ! -s "$WEBHOOK_KEY_FILE" ]; then
  python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' \
    > "$WEBHOOK_KEY_FILE"
  chmod 600 "$WEBHOOK_KEY_FILE"
fi

export MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY
MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=$(cat "$WEBHOOK_KEY_FILE")
export MLFLOW_WEBHOOK_ALLOWED_SCHEMES=${MLFLOW_WEBHOOK_ALLOWED_SCHEMES:-http,https}
export MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=${MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS:-true}
# One worker and no job runner: ~6 s and ~0.5 GB to start instead of ~16 s and ~2.6 GB.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}

exec mlflow server \
  --host "$HOST" --port "$PORT" --workers "${WORKERS:-1}" \
  --backend-store-uri "$BACKEND_STORE_URI" \
  --artifacts-destination "$ARTIFACTS_DESTINATION" --serve-artifacts
