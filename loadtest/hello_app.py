"""The baseline: FastAPI's hello-world endpoint, served by the same gunicorn set-up."""

from __future__ import annotations

from fastapi import FastAPI


def create_app() -> FastAPI:
    """``GET /`` → ``{"Hello": "World"}``; async, the stronger of the two baselines."""
    app = FastAPI()

    @app.get("/")
    async def read_root() -> dict[str, str]:
        return {"Hello": "World"}

    return app
