"""What a request was authorised under, so that no token minted while it runs outlives that authority.

A request that presents a token which the check accepts (through AuthX's dependencies, its
``verify_token``, a WebSocket) gains an **authority**: the epochs the check saw for that token.
A token minted while the request runs (a refresh route, a rotation, a password change) is stamped
with the store's epochs as they are *where the mint happens*. If they are no longer the ones the
request was authorised under, something revoked the presented token in between (a "log out
everywhere" racing a refresh), and the mint is refused, unless this same request moved them
itself: a password change bumps the user's epoch and then mints the new pair with it.

The request's authorities and its own moves live in a ``RequestScope``, one per request, held in
a context variable. ``install(app=...)`` opens one for every HTTP request and WebSocket and closes
it when the request ends. Without the app, AuthX's HTTP dependencies open one for their request
(every ASGI server runs each request in a context of its own, so it ends with the request). Outside
any request nothing is granted: a script that calls ``is_token_revoked`` mints as it always did.
Everything here is pure except that context variable.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field, replace
from typing import Optional

from authx_epoch.claims import StampState, TokenClaims
from authx_epoch.records import CheckState, Stamps

#: The most authorities one scope keeps: a request presents one or two tokens, and a scope opened
#: without the app in a context that serves request after request must not grow without bound.
MAX_AUTHORITIES = 8


@dataclass(frozen=True)
class Authority:
    """A presented token the check accepted, and the epochs it was accepted under.

    Attributes:
        claims: The presented token's claims (subject, jti, session, stamps).
        user_epoch: The user's epoch the check saw, or ``None`` when the user had no record
            (only an unstamped token inside a migration window is accepted that way).
        global_epoch: The global epoch the check saw.
    """

    claims: TokenClaims
    user_epoch: Optional[int]
    global_epoch: Optional[int]

    @classmethod
    def of(cls, claims: TokenClaims, state: CheckState) -> Authority:
        """The authority a token accepted with ``state`` gives."""
        return cls(
            claims,
            state.user.epoch if state.user is not None else None,
            state.global_.epoch if state.global_ is not None else None,
        )


@dataclass
class RequestScope:
    """One request's authorities and the epochs it moved itself.

    Attributes:
        authorities: The accepted presented tokens, oldest first (at most ``MAX_AUTHORITIES``).
        moved_users: The epoch each user's bump in this request moved to.
        moved_global: The epoch a global bump in this request moved to.
    """

    authorities: list[Authority] = field(default_factory=list)
    moved_users: dict[str, int] = field(default_factory=dict)
    moved_global: Optional[int] = None
    #: The ASGI scope of the request this scope belongs to, when it is known.
    request: Optional[object] = field(default=None, repr=False, compare=False)

    def grant(self, authority: Authority) -> None:
        """Remember an accepted presented token."""
        kept = self.authorities
        if authority in kept:
            return
        kept.append(authority)
        if len(kept) > MAX_AUTHORITIES:
            del kept[0]


_SCOPE: ContextVar[Optional[RequestScope]] = ContextVar("authx_epoch_request_scope", default=None)


def open_scope(request: Optional[object] = None) -> Token[Optional[RequestScope]]:
    """Start a fresh scope for a request; hand the token to ``close_scope`` when the request ends.

    ``request`` is the request's ASGI scope, so that ``enter_request`` knows the scope is its own.
    """
    return _SCOPE.set(RequestScope(request=request))


def close_scope(token: Token[Optional[RequestScope]]) -> None:
    """End the scope ``open_scope`` started."""
    _SCOPE.reset(token)


def current_scope() -> Optional[RequestScope]:
    """The running request's scope, or ``None`` outside any."""
    return _SCOPE.get()


def enter_request(request: object) -> None:
    """Make sure the running context has a scope for the request whose ASGI scope is ``request``.

    For apps installed without ``app=``: the scope is not closed when the request ends, which is
    right wherever each request runs in a context of its own (every ASGI server); an in-process
    client that serves several requests in one context gets a new scope at the next request that
    reaches an AuthX dependency.
    """
    scope = _SCOPE.get()
    if scope is None or scope.request is not request:
        _SCOPE.set(RequestScope(request=request))


def grant(authority: Authority) -> None:
    """Record an accepted presented token in the running request's scope (none outside a request)."""
    scope = _SCOPE.get()
    if scope is not None:
        scope.grant(authority)


def note_user_move(uid: str, epoch: int) -> None:
    """This request bumped ``uid`` to ``epoch``: tokens it mints for ``uid`` may carry that epoch."""
    scope = _SCOPE.get()
    if scope is not None:
        scope.moved_users[uid] = epoch


def note_global_move(epoch: int) -> None:
    """This request bumped the global epoch to ``epoch``."""
    scope = _SCOPE.get()
    if scope is not None:
        scope.moved_global = epoch


@dataclass(frozen=True)
class MintVerdict:
    """Whether a mint may go ahead, and with which stamps.

    Attributes:
        refused: Why the mint is refused, or ``None``.
        stamps: The stamps to write (the session generation is never newer than a presented
            token's of the same session).
        recheck: Unstamped presented tokens of the same user whose user had no record when they
            were checked: the caller must decide them again with the store's state read after the
            mint's own store call, and refuse the mint if they are rejected now.
    """

    refused: Optional[str]
    stamps: Stamps
    recheck: tuple[TokenClaims, ...] = ()


def judge_mint(
    authorities: Iterable[Authority],
    uid: str,
    stamps: Stamps,
    session_id: Optional[str],
    *,
    moved_users: Optional[dict[str, int]] = None,
    moved_global: Optional[int] = None,
) -> MintVerdict:
    """Decide a mint of ``uid`` whose store call answered ``stamps``, under the request's authorities.

    The rule (invariant 8 of the design): a token minted while a request runs never carries an
    epoch newer than the presented tokens', unless the request moved it itself. The global epoch
    binds every mint; a user's epoch binds the mints for that user; a session's generation is
    capped at the presented token's of the same session (older generations stay valid, a newer
    one would launder a replaced refresh token into a current one).
    """
    users = moved_users or {}
    generation = stamps.session_generation
    recheck: list[TokenClaims] = []
    for authority in authorities:
        if authority.global_epoch is not None and stamps.global_epoch not in (authority.global_epoch, moved_global):
            return MintVerdict("the global epoch moved since the presented token was checked", stamps)
        claims = authority.claims
        if claims.sub != uid:
            continue
        if authority.user_epoch is None:
            recheck.append(claims)
        elif stamps.user_epoch not in (authority.user_epoch, users.get(uid)):
            return MintVerdict("the user's epoch moved since the presented token was checked", stamps)
        presented = claims.session_generation
        if (
            generation is not None
            and session_id is not None
            and claims.session_id == session_id
            and claims.stamp is StampState.STAMPED
            and presented is not None
            and presented < generation
        ):
            generation = presented
    if generation != stamps.session_generation:
        stamps = replace(stamps, session_generation=generation)
    return MintVerdict(None, stamps, tuple(recheck))
