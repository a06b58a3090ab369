"""The model side of memoserve: demo models, registration, promotion and webhooks in MLflow."""
