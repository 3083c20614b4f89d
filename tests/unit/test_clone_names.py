"""Clone names are valid RDS identifiers for every task identifier, and two tasks never share one."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from dbexport.aws.clones import MAX_RDS_IDENTIFIER, clone_identifier, clone_instance_identifier
from dbexport.validation import validate_identifier

# RDS: a letter first, then letters, digits and hyphens, never two hyphens together, never a hyphen last.
RDS_IDENTIFIER = re.compile(r"[A-Za-z](?:[A-Za-z0-9]|-(?!-))*(?<!-)")
task_identifiers = st.from_regex(r"[A-Za-z](?:[A-Za-z0-9]|-(?!-)){0,59}", fullmatch=True).filter(
    lambda i: not i.endswith("-")
)


def _valid_task_identifier(identifier: str) -> str:
    validate_identifier(identifier)  # what the request's validation lets through
    return identifier


@given(task_identifiers)
def test_every_task_gets_valid_clone_names(identifier: str) -> None:
    _valid_task_identifier(identifier)
    for name in (clone_identifier(identifier), clone_instance_identifier(identifier)):
        assert len(name) <= MAX_RDS_IDENTIFIER and RDS_IDENTIFIER.fullmatch(name), name
        assert name.startswith("dbexport-")


@given(task_identifiers, st.text("abc123", min_size=1, max_size=6))
def test_task_identifiers_that_share_a_long_start_get_different_clones(identifier: str, tail: str) -> None:
    start = (identifier + "x" * 60)[:54]
    first, second = _valid_task_identifier(start + tail), _valid_task_identifier(start + "z" + tail[:5])
    assert clone_identifier(first) != clone_identifier(second)


def test_the_names_the_issue_found_broken() -> None:
    # 53 characters: the instance name ended in a hyphen; 55 and more sharing 54: one clone for two tasks.
    for identifier in ("a" * 52 + "b", "a" * 51 + "-b", "a" * 54 + "1", "a" * 54 + "2"):
        assert RDS_IDENTIFIER.fullmatch(clone_instance_identifier(identifier))
    assert clone_identifier("a" * 54 + "1") != clone_identifier("a" * 54 + "2")
    assert clone_identifier("short-task") == "dbexport-short-task"
