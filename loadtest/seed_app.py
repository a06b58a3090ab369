"""The tutorial's app memoserve grew from, as a baseline: FastAPI, a pydantic body, a sync Redis
client, a key hashed from the input's JSON, the model on a miss (``def`` routes: a thread each).

``SEED_MODEL`` is a skops file of the iris forest, ``SEED_REDIS_PORT`` a Redis master on loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pandas as pd
import redis
import skops.io
from fastapi import FastAPI
from pydantic import BaseModel

from memoserve_models import demo


class Iris(BaseModel):
    """One flower, as the tutorial's request body."""

    sepal_length: float
    sepal_width: float
    petal_length: float
    petal_width: float


def create_app() -> FastAPI:
    """``POST /predict`` with an :class:`Iris` body → ``{"prediction": ...}``."""
    path = os.environ["SEED_MODEL"]
    model: Any = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    cache = redis.Redis(host="127.0.0.1", port=int(os.environ["SEED_REDIS_PORT"]))
    app = FastAPI()

    @app.get("/")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(iris: Iris) -> dict[str, Any]:
        key = "prediction:" + hashlib.sha256(iris.model_dump_json().encode()).hexdigest()
        cached = cache.get(key)
        if cached is not None:
            return json.loads(cached)  # type: ignore[no-any-return]
        frame = pd.DataFrame([list(iris.model_dump().values())], columns=demo.IRIS_FEATURES)
        result = {"prediction": int(model.predict(frame)[0])}
        cache.set(key, json.dumps(result), ex=3600)
        return result

    return app
