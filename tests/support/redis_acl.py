"""memoserve's Redis and Sentinel ACL users as the chart renders them (``helm template``)."""

from __future__ import annotations

import re

import pytest

from tests.k8s.k8s_tools import CHART, RELEASE, find, run


def chart_acl_rules(namespace: str, *sets: str) -> tuple[str, str]:
    """memoserve's ACL users (Redis, Sentinels) as the chart renders them for
    ``config.namespace=namespace`` and the ``--set`` pairs ``sets``."""
    helm, problem = find("helm", quiet=True)
    if helm is None:
        pytest.fail(f"`make tools` provides helm; here it could not: {problem}", pytrace=False)
    command = [helm, "template", RELEASE, str(CHART), "--set", f"config.namespace={namespace}"]
    for pair in sets:
        command += ["--set", pair]
    rendered = run(*command, "--show-only", "templates/redis/configmap.yaml")
    rules = []
    for key in ("memoserve", "memoserve-sentinel"):
        match = re.search(rf'^  {key}\.acl: "(.*)"$', rendered, re.MULTILINE)
        assert match, f"the chart renders no {key}.acl"
        rules.append(match.group(1))
    return rules[0], rules[1]
