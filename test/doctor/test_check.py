"""The shared helpers of the checks: one-line error text and the import-a-module row."""

from __future__ import annotations

from evseg_ros.doctor.check import MISSING, OK, first_line, module_check


def test_first_line_of_an_error():
    assert first_line(RuntimeError("boom\nsecond line")) == "boom"
    assert first_line(RuntimeError("")) == "RuntimeError"


def test_module_check_on_a_present_and_an_absent_module():
    asked: list[str] = []

    def hint() -> str:
        asked.append("hint")
        return "install it"

    present = module_check("json_row", "json", lambda module: module.__name__, hint)
    assert present.name == "json_row"
    assert present.status == OK
    assert present.detail == "json"
    assert asked == [], "the fix is built only for a missing module"
    absent = module_check("absent_row", "evseg_no_such_module", lambda module: "", hint)
    assert absent.status == MISSING
    assert absent.detail == "not importable (No module named 'evseg_no_such_module')"
    assert absent.fix == "install it"
    assert module_check("row", "evseg_no_such_module", str, "plain fix").fix == "plain fix"
