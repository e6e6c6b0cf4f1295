"""runtime/lines.py: line names, and the bounded table that evicts the least recently used idle line."""

from __future__ import annotations

import grpc
import pytest
from mathforge.runtime.errors import RequestError
from mathforge.runtime.lines import LineTable, check_line, valid_line


@pytest.mark.parametrize("name", ["", "grpo_outcome-seed0", "A.1", "x" * 64])
def test_line_names_that_are_accepted(name):
    assert check_line(name) == name and valid_line(name)


@pytest.mark.parametrize("name", ["-x", ".x", "a/b", "a b", "x" * 65, "é"])
def test_line_names_that_are_refused_say_why(name):
    assert not valid_line(name)
    with pytest.raises(RequestError) as info:
        check_line(name)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "line" in info.value.message


def test_a_full_table_evicts_the_least_recently_used_idle_line_and_refuses_when_all_are_busy():
    table: LineTable[dict] = LineTable(2, "max-lines", "policy line")
    for name in ("a", "b"):
        assert table.make_room(name, busy=lambda entry: entry["busy"]) == []
        table.put(name, {"busy": False})
    table.get("a")  # "b" is now the least recently used
    assert table.make_room("a", busy=lambda entry: True) == []  # a held line needs no room
    evicted = table.make_room("c", busy=lambda entry: entry["busy"])
    assert [name for name, _ in evicted] == ["b"] and "b" not in table
    table.put("c", {"busy": True})
    table.get("a")["busy"] = True
    with pytest.raises(RequestError) as info:
        table.make_room("d", busy=lambda entry: entry["busy"])
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "the 2 limit (--max-lines)" in info.value.message and "'d'" in info.value.message
    assert [name for name, _ in table.items()] == ["a", "c"]  # a refusal changes nothing
    with pytest.raises(ValueError):
        table.put("", {"busy": False})
