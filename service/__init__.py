"""memoserve: ML predictions from a shared, version-keyed cache, served by stateless replicas.

The names below are imported on first use: the gunicorn master imports this package for its
configuration, and must not load the app (or prometheus-client before its multiprocess
directory is set) before it forks the workers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.app import create_app
    from service.cache.control import CacheControl
    from service.dataplane import DataPlane, Prediction
    from service.settings import Settings

__all__ = ["CacheControl", "DataPlane", "Prediction", "Settings", "create_app"]

_HOMES = {
    "create_app": "service.app",
    "CacheControl": "service.cache.control",
    "DataPlane": "service.dataplane",
    "Prediction": "service.dataplane",
    "Settings": "service.settings",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'service' has no attribute {name!r}")
