"""The demo models' pip requirements are named, pinned to what is installed, not inferred."""

from __future__ import annotations

from importlib import metadata

from memoserve_models import registry


def test_requirements_are_pinned_to_the_installed_versions() -> None:
    pins = registry.pip_requirements(registry.SKLEARN_PACKAGES)
    assert pins == [f"{p}=={metadata.version(p)}" for p in registry.SKLEARN_PACKAGES]
    assert "skops" in registry.SKLEARN_PACKAGES  # how MLflow 3 saves scikit-learn models
    assert "cloudpickle" in registry.PYFUNC_PACKAGES  # how it saves a python_model


def test_a_package_that_is_not_installed_is_left_out() -> None:
    assert registry.pip_requirements(("numpy", "no-such-package-here")) == [
        f"numpy=={metadata.version('numpy')}"
    ]
