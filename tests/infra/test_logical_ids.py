"""An upgrade replaces nothing: every resource keeps the logical ID and type it had when the snapshot was taken.

CloudFormation treats a changed logical ID as a new resource plus a removed one. For the task table and the work
bucket (RETAIN) that means a new, empty table while the old one, with the export history, is orphaned.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.infra.conftest import Synthesized

# {variant: {logical ID: resource type}}, one variant per synthesized fixture (<variant>_stack).
SNAPSHOT = Path(__file__).with_name("logical_ids.json")
EXPECTED: dict[str, dict[str, str]] = json.loads(SNAPSHOT.read_text())


@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_every_resource_keeps_its_logical_id_and_type(variant: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesized = request.getfixturevalue(f"{variant}_stack")
    actual = {logical_id: resource["Type"] for logical_id, resource in synth.json["Resources"].items()}
    assert actual == EXPECTED[variant], (
        f"`cdk deploy` would replace resources of the {variant} stack. If a resource is added or removed on "
        f"purpose, update {SNAPSHOT.name} and say so in the change's note; never rename one that holds data."
    )
