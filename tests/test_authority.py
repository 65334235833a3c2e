"""The authority rule, pure: a token minted while a request runs never outlives what the request presented."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from authx_epoch import authority
from authx_epoch.authority import MAX_AUTHORITIES, Authority, RequestScope, judge_mint
from authx_epoch.claims import StampState, TokenClaims
from authx_epoch.records import CheckState, EpochRecord, Stamps


def presented(
    sub: str = "alice", user: int = 10, glob: int = 1, session: str | None = None, generation: int | None = None
) -> Authority:
    claims = TokenClaims(
        sub=sub,
        jti="j",
        session_id=session,
        stamp=StampState.STAMPED,
        user_epoch=user,
        global_epoch=glob,
        session_generation=generation,
    )
    return Authority(claims, user, glob)


def test_a_mint_without_any_authority_takes_the_current_stamps() -> None:
    verdict = judge_mint((), "alice", Stamps(11, 2, 7), "s")
    assert verdict == authority.MintVerdict(None, Stamps(11, 2, 7))


def test_the_same_epochs_as_the_presented_token_are_fine() -> None:
    assert judge_mint([presented()], "alice", Stamps(10, 1), None).refused is None


@pytest.mark.parametrize(("stamps", "what"), [(Stamps(11, 1), "user"), (Stamps(10, 2), "global")])
def test_an_epoch_that_moved_since_the_check_refuses_the_mint(stamps: Stamps, what: str) -> None:
    verdict = judge_mint([presented()], "alice", stamps, None)
    assert verdict.refused is not None
    assert what in verdict.refused


def test_the_requests_own_move_is_allowed() -> None:
    # A password change: the request bumps the user, then mints the new pair with the new epoch.
    assert judge_mint([presented()], "alice", Stamps(11, 1), None, moved_users={"alice": 11}).refused is None
    assert judge_mint([presented()], "alice", Stamps(10, 2), None, moved_global=2).refused is None
    # ...but not an epoch someone else moved past the request's own move.
    assert judge_mint([presented()], "alice", Stamps(12, 1), None, moved_users={"alice": 11}).refused is not None


def test_another_users_authority_binds_only_the_global_epoch() -> None:
    admin = presented(sub="admin", user=99)
    assert judge_mint([admin], "bob", Stamps(5, 1), None).refused is None
    assert judge_mint([admin], "bob", Stamps(5, 2), None).refused is not None


def test_every_presented_token_binds() -> None:
    both = [presented(user=10), presented(user=11)]
    assert judge_mint(both, "alice", Stamps(11, 1), None).refused is not None


def test_a_session_generation_is_capped_at_the_presented_tokens() -> None:
    # A plain refresh route minting for the session with a replaced refresh token must not hand
    # out the current generation (it would launder the old token into a current one).
    old = presented(session="s", generation=5)
    assert judge_mint([old], "alice", Stamps(10, 1, 8), "s").stamps == Stamps(10, 1, 5)
    # Another session, or no generation on the presented token: nothing to cap.
    assert judge_mint([old], "alice", Stamps(10, 1, 8), "t").stamps == Stamps(10, 1, 8)
    assert judge_mint([presented(session="s")], "alice", Stamps(10, 1, 8), "s").stamps == Stamps(10, 1, 8)


def test_an_unstamped_token_without_a_user_record_is_handed_back_for_a_recheck() -> None:
    claims = TokenClaims(sub="alice", jti="j", stamp=StampState.UNSTAMPED)
    state = CheckState(None, EpochRecord(1, 0.0))
    verdict = judge_mint([Authority.of(claims, state)], "alice", Stamps(10, 1), None)
    assert verdict.refused is None
    assert verdict.recheck == (claims,)


def test_a_scope_keeps_a_bounded_number_of_authorities() -> None:
    scope = RequestScope()
    for user in range(MAX_AUTHORITIES + 5):
        scope.grant(presented(user=user))
    assert len(scope.authorities) == MAX_AUTHORITIES
    assert scope.authorities[-1].user_epoch == MAX_AUTHORITIES + 4
    scope.grant(scope.authorities[-1])
    assert len(scope.authorities) == MAX_AUTHORITIES


def test_scopes_belong_to_one_context() -> None:
    def in_a_request() -> RequestScope | None:
        token = authority.open_scope()
        authority.grant(presented())
        authority.note_user_move("alice", 11)
        scope = authority.current_scope()
        authority.close_scope(token)
        assert authority.current_scope() is None
        return scope

    scope = contextvars.Context().run(in_a_request)
    assert scope is not None
    assert (len(scope.authorities), scope.moved_users) == (1, {"alice": 11})


def test_outside_a_request_nothing_is_granted_nor_noted() -> None:
    def run() -> RequestScope | None:
        authority.grant(presented())
        authority.note_global_move(3)
        return authority.current_scope()

    assert contextvars.Context().run(run) is None


def test_entering_a_request_opens_its_scope_once() -> None:
    first, second = {"type": "http"}, {"type": "http"}

    def run() -> None:
        authority.enter_request(first)
        scope = authority.current_scope()
        assert scope is not None
        authority.grant(presented())
        authority.enter_request(first)  # a second dependency of the same request
        assert authority.current_scope() is scope
        authority.enter_request(second)  # the next request served in this context
        assert authority.current_scope() is not scope
        assert authority.current_scope().authorities == []  # type: ignore[union-attr]

    contextvars.Context().run(run)


@pytest.mark.anyio
async def test_tasks_started_by_a_request_share_its_scope() -> None:
    async def grant_in_a_task() -> None:
        authority.grant(presented())

    token = authority.open_scope()
    try:
        await asyncio.create_task(grant_in_a_task())
        scope = authority.current_scope()
        assert scope is not None
        assert len(scope.authorities) == 1
    finally:
        authority.close_scope(token)
