"""The README's Performance figures are the saved benchmark results, rendered by the script."""

from __future__ import annotations

from loadtest import report
from loadtest.common import REPO


def test_readme_performance_block_is_the_rendered_results() -> None:
    results = report.load()
    assert {"bench_hit", "bench_miss", "bench_scale", "bench_cluster"} <= results.keys()
    readme = (REPO / "README.md").read_text()
    assert report.readme_block(readme) == report.render(results), (
        "README.md is stale: run `python -m loadtest.report --readme` after `make bench`"
    )


def test_published_results_are_medians_of_several_rounds() -> None:
    for name, data in report.load().items():
        assert data["args"]["rounds"] >= 3, f"{name}.json is from a short run"
        for case, metrics in data["cases"].items():
            assert all(len(v) >= 3 for v in metrics["rounds"].values() if v), (name, case)


def test_render_puts_the_peers_table_first() -> None:
    cases = {
        n: {"median_rps": r, "median_p50": 1.0, "median_p99": 2.0, "median_lat": 0.5}
        for n, r in (("hello", 1000.0), ("redis-hit", 1100.0))
    }
    hit = {
        "when": "2026-12-03T00:00",
        "args": {"rounds": 3, "workers": 1, "connections": 16},
        "cases": cases,
    }
    other = {
        "when": "2026-12-03T00:00",
        "args": {"rounds": 3},
        "cases": {"a": {"median_x": 5.0}},
        "ratios": {"a/b": 0.5},
    }
    text = report.render({"bench_hit": hit, "bench_other": other})
    assert text.index("Against the peers") < text.index("bench_other")
    assert "| 1.10 |" in text and "a/b **0.50**" in text
