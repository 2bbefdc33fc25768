"""Exactly once (chargepin.core.applied_ops): the bounded record of applied ops and the decision
"seen: answer, don't apply"."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargepin.core.applied_ops import MAX_APPLIED_OPS, AppliedOps, Decision, decide
from chargepin.core.errors import InvalidConfig
from chargepin.core.tickets import OP_SIZE, new_op

ops = st.binary(min_size=OP_SIZE, max_size=OP_SIZE).map(bytes.hex)


def test_a_new_op_is_32_hex_digits_and_never_the_same() -> None:
    made = {new_op() for _ in range(1000)}
    assert len(made) == 1000
    assert all(len(op) == 32 and op == op.lower() and int(op, 16) >= 0 for op in made)


def test_an_op_applied_is_answered_and_one_not_applied_is_applied() -> None:
    first, second = new_op(), new_op()
    record = AppliedOps().after(first)
    assert decide(record, first) is Decision.ANSWER
    assert decide(record, second) is Decision.APPLY
    assert decide(record, None) is Decision.APPLY  # a phone's ticket: no op
    assert record.after(None) == record and record.after(first) == record


@given(st.lists(ops, max_size=3 * MAX_APPLIED_OPS))
def test_the_record_keeps_the_last_ops_in_order(applied: list[str]) -> None:
    record = AppliedOps()
    for op in applied:
        record = record.after(op)
    distinct = list(dict.fromkeys(applied))  # a repeat is not applied: not appended again
    assert record.ops == tuple(distinct[-MAX_APPLIED_OPS:])
    assert len(record.ops) <= MAX_APPLIED_OPS
    for op in distinct[-MAX_APPLIED_OPS:]:
        assert decide(record, op) is Decision.ANSWER
    assert AppliedOps.from_text(record.to_text()) == record


def test_the_oldest_op_is_forgotten_past_the_bound() -> None:
    made = [new_op() for _ in range(MAX_APPLIED_OPS + 1)]
    record = AppliedOps()
    for op in made:
        record = record.after(op)
    assert decide(record, made[0]) is Decision.APPLY
    assert decide(record, made[1]) is Decision.ANSWER
    assert len(record.to_text()) == MAX_APPLIED_OPS * (2 * OP_SIZE + 3) + 1  # about 2.2 KiB


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a JSON list"),
        ("{", "not a JSON list"),
        ("{}", "not a JSON list"),
        ("[1]", "not a JSON list of ops"),
        ('["abc"]', "32 lower-case hex digits"),
        (f'["{"A" * 32}"]', "32 lower-case hex digits"),
        (f'["{"0" * 32}", "{"0" * 32}"]', "more than once"),
        ("[" + ",".join(f'"{i:032x}"' for i in range(MAX_APPLIED_OPS + 1)) + "]", "at most 64"),
        ("[" * 100_000, "not a JSON list"),
    ],
)
def test_a_damaged_record_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(InvalidConfig, match=message):
        AppliedOps.from_text(text)
