"""The decision table of DESIGN.md, row by row, and the migration window rules. Pure: no I/O."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import pytest

from authx_epoch.claims import StampState, TokenClaims
from authx_epoch.decision import Decision, Policy, Reason, decide
from authx_epoch.records import CheckState, EpochRecord

NOW = 10_000.0
SETUP = 5_000.0
GLOBAL = EpochRecord(epoch=500, created_at=SETUP)
USER = EpochRecord(epoch=900, created_at=6_000.0, expires_at=NOW + 3600)
NO_WINDOW = Policy()
WINDOW = Policy(accept_unstamped_until=NOW + 100)


def token(
    stamp: StampState = StampState.STAMPED,
    *,
    user_epoch: int = 900,
    global_epoch: int = 500,
    iat: Optional[float] = NOW - 10,
    exp: Optional[float] = NOW + 600,
    jti: Optional[str] = "j",
    session_id: Optional[str] = None,
) -> TokenClaims:
    if stamp is not StampState.STAMPED:
        user_epoch = global_epoch = 0
    return TokenClaims(
        sub="alice",
        jti=jti,
        session_id=session_id,
        iat=iat,
        exp=exp,
        stamp=stamp,
        user_epoch=user_epoch,
        global_epoch=global_epoch,
    )


def state(
    user: Optional[EpochRecord] = USER,
    global_: Optional[EpochRecord] = GLOBAL,
    *,
    jti: bool = False,
    session: bool = False,
) -> CheckState:
    return CheckState(user=user, global_=global_, jti_revoked=jti, session_revoked=session)


def rejected(reason: Reason) -> Decision:
    return Decision(False, reason)


def test_matching_stamps_are_accepted() -> None:
    assert decide(token(), state(), NOW, NO_WINDOW) == Decision(True, Reason.ACCEPTED)


def test_revoked_jti_is_rejected_even_with_matching_stamps() -> None:
    assert decide(token(), state(jti=True), NOW, NO_WINDOW) == rejected(Reason.TOKEN_REVOKED)


def test_revoked_session_is_rejected_even_with_matching_stamps() -> None:
    assert decide(token(session_id="s"), state(session=True), NOW, NO_WINDOW) == rejected(Reason.SESSION_REVOKED)


def test_revocation_wins_over_every_other_reason() -> None:
    # a revoked token of a lost user, with a malformed stamp: the revocation is what is reported
    assert decide(token(StampState.MALFORMED), state(None, None, jti=True), NOW, WINDOW).reason is Reason.TOKEN_REVOKED


@pytest.mark.parametrize("global_epoch", [499, 501, 0])
def test_global_epoch_that_differs_is_rejected(global_epoch: int) -> None:
    assert decide(token(global_epoch=global_epoch), state(), NOW, NO_WINDOW) == rejected(Reason.GLOBAL_EPOCH)


@pytest.mark.parametrize("user_epoch", [899, 901, 0])
def test_user_epoch_that_differs_is_rejected_higher_included(user_epoch: int) -> None:
    # a stamp higher than the store's is lost or foreign state, never a reason to accept
    assert decide(token(user_epoch=user_epoch), state(), NOW, NO_WINDOW) == rejected(Reason.USER_EPOCH)


def test_stamped_token_with_missing_user_record_is_lost_state() -> None:
    assert decide(token(), state(user=None), NOW, NO_WINDOW) == rejected(Reason.LOST_STATE)


def test_stamped_token_with_missing_global_record_is_lost_state() -> None:
    assert decide(token(), state(global_=None), NOW, NO_WINDOW) == rejected(Reason.LOST_STATE)


def test_wiped_store_rejects_stamped_tokens() -> None:
    assert not decide(token(), state(None, None), NOW, WINDOW).accepted


@pytest.mark.parametrize("policy", [NO_WINDOW, WINDOW], ids=["no-window", "window"])
def test_malformed_stamp_is_rejected_with_or_without_window(policy: Policy) -> None:
    assert decide(token(StampState.MALFORMED, iat=SETUP - 100), state(), NOW, policy) == rejected(
        Reason.MALFORMED_STAMP
    )


def test_unstamped_is_rejected_without_a_window() -> None:
    assert decide(token(StampState.UNSTAMPED, iat=SETUP - 100), state(), NOW, NO_WINDOW) == rejected(Reason.UNSTAMPED)


# -- the migration window ------------------------------------------------------------------


def old_unstamped() -> TokenClaims:
    return token(StampState.UNSTAMPED, iat=SETUP - 100)


def test_window_accepts_an_unstamped_token_from_before_setup() -> None:
    assert decide(old_unstamped(), state(), NOW, WINDOW) == Decision(True, Reason.ACCEPTED)
    # a user who never logged in since install has no record: still accepted
    assert decide(old_unstamped(), state(user=None), NOW, WINDOW).accepted


@pytest.mark.parametrize("delta", [0.0, 0.5, 100.0])
def test_window_rejects_an_unstamped_token_minted_at_or_after_setup(delta: float) -> None:
    claims = token(StampState.UNSTAMPED, iat=SETUP + delta)
    assert decide(claims, state(), NOW, WINDOW) == rejected(Reason.UNSTAMPED)


def test_window_rejects_an_unstamped_token_without_iat() -> None:
    assert decide(token(StampState.UNSTAMPED, iat=None), state(), NOW, WINDOW) == rejected(Reason.UNSTAMPED)


def test_window_closes_for_a_user_whose_epoch_moved() -> None:
    bumped = replace(USER, bumped_at=NOW - 1, reason="password_change")
    assert decide(old_unstamped(), state(user=bumped), NOW, WINDOW) == rejected(Reason.UNSTAMPED)


def test_window_closes_for_everyone_when_the_global_epoch_moved() -> None:
    bumped = replace(GLOBAL, epoch=GLOBAL.epoch + 1, bumped_at=NOW - 1)
    assert decide(old_unstamped(), state(global_=bumped), NOW, WINDOW) == rejected(Reason.UNSTAMPED)


@pytest.mark.parametrize("now", [NOW + 100, NOW + 101, NOW + 10**6])
def test_window_closes_at_its_deadline(now: float) -> None:
    assert decide(old_unstamped(), state(), now, WINDOW) == rejected(Reason.UNSTAMPED)


def test_window_is_open_until_just_before_its_deadline() -> None:
    assert decide(old_unstamped(), state(), NOW + 99.999, WINDOW).accepted


def test_window_with_lost_global_record_rejects() -> None:
    assert decide(old_unstamped(), state(global_=None), NOW, WINDOW) == rejected(Reason.LOST_STATE)


def test_window_does_not_let_a_revoked_unstamped_token_through() -> None:
    assert decide(old_unstamped(), state(jti=True), NOW, WINDOW) == rejected(Reason.TOKEN_REVOKED)


# -- tokens without exp --------------------------------------------------------------------


def test_token_without_exp_is_accepted_within_max_lifetime() -> None:
    policy = Policy(max_token_lifetime=3600)
    assert decide(token(exp=None, iat=NOW - 3599), state(), NOW, policy).accepted


def test_token_without_exp_is_rejected_after_max_lifetime() -> None:
    policy = Policy(max_token_lifetime=3600)
    assert decide(token(exp=None, iat=NOW - 3601), state(), NOW, policy) == rejected(Reason.LIFETIME_EXCEEDED)


def test_token_without_exp_nor_iat_is_rejected() -> None:
    assert decide(token(exp=None, iat=None), state(), NOW, NO_WINDOW) == rejected(Reason.LIFETIME_EXCEEDED)


def test_decide_is_pure() -> None:
    claims, st = token(), state()
    first = decide(claims, st, NOW, NO_WINDOW)
    assert all(decide(claims, st, NOW, NO_WINDOW) == first for _ in range(3))
    assert st == state()
