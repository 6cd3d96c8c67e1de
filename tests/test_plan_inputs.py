"""Every input the engine receives uses the provider's own (camelCase) property names.

The mock engine accepts anything, so a plain dict passed where the SDK expects a union of `*Args`
classes (or a typo inside a nested dict) reaches the provider untranslated, with snake_case keys
such as `all_of` or `odata_type`, and only a real deploy would fail. This scans every plan of every
bundled stack on every cloud for such keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.planner import plan
from pipeline.spec.load import available_stacks, load_spec

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "stacks").glob("*/pipeline.yaml"))
CLOUDS = ("aws", "gcp", "azure")
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")
# Maps whose keys are user data (tags, labels, environment variables, ARM template parameters), not property names.
USER_KEYED = {"tags", "labels", "defaultTags", "defaultLabels", "environmentVariables", "variables", "metadata", "userLabels",
              "appSettings", "parameters", "attributes", "annotations", "filterLabels"}


def _snake_keys(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, child in value.items():
            if SNAKE.match(str(key)):
                yield f"{path}.{key}" if path else str(key)
            if str(key) not in USER_KEYED:
                yield from _snake_keys(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _snake_keys(child, f"{path}[{index}]")


def _cases() -> list[tuple[Path, str | None, str]]:
    return [(spec, stack, cloud) for spec in SPECS for stack in [None, *available_stacks(spec)] for cloud in CLOUDS]


@pytest.mark.parametrize(("spec", "stack", "cloud"), _cases(), ids=lambda v: v.parent.name if isinstance(v, Path) else str(v))
def test_no_untranslated_snake_case_input_keys(spec: Path, stack: str | None, cloud: str) -> None:
    result = plan(load_spec(spec, stack), cloud)
    found = [f"{r.type} {r.name}: {key}" for r in result.cloud_resources for key in _snake_keys(r.inputs)]
    assert not found, "inputs the SDK did not translate (use the typed *Args classes):\n" + "\n".join(found)


def test_the_scan_finds_a_dict_in_a_union_typed_input() -> None:
    inputs = {"criteria": {"all_of": [{"metric_name": "x", "odata_type": "y"}]}, "tags": {"cost_center": "1"}}
    assert sorted(_snake_keys(inputs)) == ["criteria.all_of", "criteria.all_of[0].metric_name", "criteria.all_of[0].odata_type"]
