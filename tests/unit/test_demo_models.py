"""Demo models: the promotion demo's versions differ on every row; the slow one is slow."""

from __future__ import annotations

import time

from memoserve_models import demo


def test_label_shift_changes_every_answer() -> None:
    x, _ = demo.iris_frame()
    v1 = demo.train_iris(n_estimators=5).predict(x)
    v2 = demo.train_iris(n_estimators=5, label_shift=1).predict(x)
    assert ((v1 + 1) % 3 == v2).all()


def test_slow_model_sleeps_then_predicts() -> None:
    x, _ = demo.iris_frame()
    slow = demo.SlowModel(demo.train_iris(n_estimators=5), delay_seconds=0.05)
    start = time.perf_counter()
    assert len(slow.predict(x.head(2))) == 2
    assert time.perf_counter() - start >= 0.05


def test_diabetes_regressor_predicts_floats() -> None:
    from sklearn.datasets import load_diabetes

    x = load_diabetes(as_frame=True).data.head(3)
    assert demo.train_diabetes(n_estimators=5).predict(x).dtype.kind == "f"
