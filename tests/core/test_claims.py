"""The claim rule (core/claims.py): who pays for a wrong claim code, and what a right one gets."""

from __future__ import annotations

from chargepin.core.claims import ACCOUNT_LOCKOUT, SOURCE_LOCKOUT, Verdict, decide
from chargepin.core.lockout import LockoutConfig, LockoutState, record_failure

NOW = 1_800_000_000.0
CLEAN = LockoutState()


def failed(config: LockoutConfig, times: int, at: float = NOW) -> LockoutState:
    state = CLEAN
    for n in range(times):
        state = record_failure(config, state, at - times + n)
    return state


def test_a_right_code_is_served_whatever_other_accounts_did_from_the_same_network() -> None:
    locked_network = failed(SOURCE_LOCKOUT, 10)
    decision = decide(code_ok=True, claimed=False, account=CLEAN, source=locked_network, now=NOW)
    assert decision.verdict is Verdict.CLAIM
    assert decision.account == CLEAN and decision.source == locked_network


def test_a_locked_account_is_refused_even_with_the_right_code() -> None:
    decision = decide(
        code_ok=True, claimed=False, account=failed(ACCOUNT_LOCKOUT, 5), source=CLEAN, now=NOW
    )
    assert (decision.verdict, decision.locked_by, decision.retry_after) == (
        Verdict.LOCKED,
        "account",
        300.0 - 1.0,
    )


def test_a_locked_network_refuses_an_account_that_failed_and_charges_it() -> None:
    mine = failed(ACCOUNT_LOCKOUT, 1)
    decision = decide(
        code_ok=True, claimed=False, account=mine, source=failed(SOURCE_LOCKOUT, 10), now=NOW
    )
    assert (decision.verdict, decision.locked_by) == (Verdict.LOCKED, "source")
    assert len(decision.account.failures) == 2


def test_wrong_codes_count_for_account_and_network_and_say_which_lock_they_started() -> None:
    decision = decide(
        code_ok=False, claimed=True, account=failed(ACCOUNT_LOCKOUT, 4), source=CLEAN, now=NOW
    )
    assert (decision.verdict, decision.locked_by) == (Verdict.WRONG_CODE, "account")
    assert decision.retry_after == 300.0 and len(decision.source.failures) == 1


def test_the_stickers_own_code_on_a_claimed_charger_is_not_a_failure() -> None:
    decision = decide(code_ok=True, claimed=True, account=CLEAN, source=CLEAN, now=NOW)
    assert decision.verdict is Verdict.ALREADY_OWNED and decision.account == CLEAN
