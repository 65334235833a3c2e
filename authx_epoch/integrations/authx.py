"""``install()``: plug epoch revocation into an AuthX instance through its public API only.

What it does to ``auth``:

* wraps ``create_access_token`` and ``create_refresh_token`` (and so ``create_token_pair``) so
  every token carries the user's and the global epoch, and a token minted for a session (a
  ``session_id`` in its data) the generation of that session's record; a token minted while a
  request runs never carries epochs newer than the token the request presented (``authority``);
* registers the blocklist callback with ``auth.set_token_blocklist`` and proves AuthX calls it;
* wraps ``verify_token``, so every AuthX path that says "this token is valid" asks the store too
  (AuthX's optional-auth pattern, its own implicit refresh), at no extra lookup on the paths whose
  callback already asked;
* replaces ``implicit_refresh_middleware`` by one that renews a cookie only if it is still
  accepted where the renewal is minted, keeps its jti, session, stamps and claims, and keeps the
  records it needs alive (AuthX 1.7.1's would launder a revoked cookie and drop its claims);
* makes ``auth.revoke_session`` and ``auth.revoke_all_sessions`` revoke the tokens too;
* with ``app=``, answers store trouble with a 503 in AuthX's error shape and gives every request
  a scope of its own for its authorities.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import logging
import time
import weakref
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from authx import AuthX
from authx.exceptions import AuthXException, RevokedTokenError
from authx.schema import RequestToken, TokenPayload
from fastapi import FastAPI, Request, Response

from authx_epoch.checking import Clock, DecisionHook, wall_clock
from authx_epoch.claims import ClaimNames, session_id_of, stamp_claims
from authx_epoch.errors import (
    STORE_UNAVAILABLE_MESSAGE,
    ConfigurationError,
    InvalidArgumentError,
)
from authx_epoch.integrations.app import MIDDLEWARE_ORDER, attach, registered_dispatchers, watch_requests
from authx_epoch.integrations.namespaces import claim_namespace
from authx_epoch.integrations.verification import JustChecked, authx_verifier
from authx_epoch.minting import AuthxHooks
from authx_epoch.revocation import EpochRevocation, authx_hooks
from authx_epoch.sessions import DEFAULT_REFRESH_REUSE_GRACE, expiry_timestamp
from authx_epoch.stores import StoreSpec, open_store
from authx_epoch.stores.namespaces import ROOT_NAMESPACE

logger = logging.getLogger("authx_epoch")

#: The embedded default store: a SQLite file in the working directory.
DEFAULT_STORE = "sqlite:///authx-epoch.db"


@dataclass
class _Installation:
    """What ``install()`` keeps for one AuthX instance (in this module, never on the instance)."""

    revocation: EpochRevocation
    #: What the service gives install() besides its public methods.
    hooks: AuthxHooks
    #: AuthX's own implicit-refresh middleware, as the app may have registered it before install().
    original_middleware: Any
    checked: JustChecked
    #: Apps whose middleware was looked at, and whether AuthX's own implicit refresh was found there.
    apps: weakref.WeakKeyDictionary[Any, bool] = field(default_factory=weakref.WeakKeyDictionary)


#: Each installed AuthX instance's installation, held weakly on both sides: the installation lives in
#: the closures install() puts on the instance, so it dies with the instance and never keeps it alive.
_INSTALLS: weakref.WeakKeyDictionary[AuthX[Any], weakref.ref[_Installation]] = weakref.WeakKeyDictionary()


class _Probe(str):
    """A string no request can produce.

    install() sends it through AuthX to prove that AuthX really calls and awaits the callback.
    """


_PROBE = _Probe("authx-epoch:probe")


def _lifetime(value: Optional[dt.timedelta], fallback: dt.timedelta) -> dt.timedelta:
    return value if isinstance(value, dt.timedelta) else fallback


def _session_of(data: Optional[Mapping[str, Any]], claim: str) -> Optional[str]:
    """The session id a token is being minted with, read by the check's rule, or ``None``."""
    value = data.get(claim) if data else None
    if value is None:
        return None
    session_id = session_id_of(value)
    if session_id is None:
        raise InvalidArgumentError(
            f"data[{claim!r}] must be a non-empty string session id (from create_token_pair), got {value!r:.40}"
        )
    return session_id


def _prove_callback(auth: AuthX[Any]) -> None:
    coroutine = auth.is_token_in_blocklist(_PROBE)
    try:
        coroutine.send(None)
    except StopIteration as done:
        if done.value is True:
            return
    else:
        coroutine.close()
    raise ConfigurationError("AuthX did not call the authx-epoch blocklist callback; revocation would be disabled")


def install(
    auth: AuthX[Any],
    store: StoreSpec = DEFAULT_STORE,
    *,
    app: Optional[FastAPI] = None,
    claims: Optional[ClaimNames] = None,
    fail_open: bool = False,
    accept_unstamped_until: Optional[dt.datetime] = None,
    revocation_leeway: dt.timedelta = dt.timedelta(seconds=60),
    max_token_lifetime: Optional[dt.timedelta] = None,
    session_lifetime: Optional[dt.timedelta] = None,
    clock: Clock = wall_clock,
    on_decision: Optional[DecisionHook] = None,
    refresh_reuse_grace: dt.timedelta = DEFAULT_REFRESH_REUSE_GRACE,
    namespace: Optional[str] = None,
) -> EpochRevocation:
    """Install epoch revocation on an AuthX instance and return the service.

    Call it once, right after creating ``auth`` and before registering
    ``auth.implicit_refresh_middleware``.

    Args:
        auth: The AuthX instance to protect.
        store: A store URL (``memory://``, ``sqlite:///path.db``) or a store object.
        app: The FastAPI app. With it, store trouble is answered with a 503 in AuthX's error
            shape on every path, and every request gets a scope of its own for what it was
            authorised under (see ``authx_epoch.authority``). Pass it.
        claims: The claim names to stamp (defaults: ``uep``, ``gep``, ``session_id``).
        fail_open: When the store is unreachable, let tokens through unchecked and log it,
            instead of refusing them with a 503. Off by default: it accepts revoked tokens
            for as long as the store is down.
        accept_unstamped_until: Opens a migration window: until this aware datetime, a token
            without a stamp is accepted if it was minted before the store was set up and
            neither its user's nor the global epoch has moved since.
        revocation_leeway: How long past a token's ``exp`` its revocation is kept.
        max_token_lifetime: Lifetime assumed for tokens without ``exp`` (they are refused
            after it). Defaults to the longer of AuthX's access and refresh lifetimes.
        session_lifetime: How long ``revoke_session`` keeps a session revoked when no expiry
            is given. Defaults to the longer of AuthX's access and refresh lifetimes.
        clock: Returns the current Unix time; inject one in tests.
        on_decision: Called with a ``DecisionEvent`` after every check.
        refresh_reuse_grace: For ``rotate_refresh_token``: how long after a rotation the replaced
            refresh token is still answered with the session's current pair (two tabs refreshing
            at once, a response lost on the way) instead of counting as a replay that revokes the
            session. A few seconds, like Auth0's reuse interval; ``timedelta(0)`` for none.
        namespace: Where this AuthX instance's records live in the store, so that several instances
            (users and admins, two login types) can share one store without sharing records. By
            default AuthX's ``login_type`` when it has one, else the root namespace (``""``). Two
            installs on the same store and namespace in one process are refused unless both pass
            the same ``namespace=`` (sharing on purpose). Not derived from the signing key: key
            rotation keeps every record.

    Returns:
        The ``EpochRevocation`` service; ``revocation.sync`` is its blocking twin.

    Raises:
        ConfigurationError: ``auth`` already has authx-epoch installed, the middleware was
            registered before ``install()``, or the store URL or path is unusable.
    """
    if not isinstance(auth, AuthX):
        raise ConfigurationError(f"install() takes an AuthX instance, got {type(auth).__name__}")
    if auth in _INSTALLS:
        raise ConfigurationError("authx-epoch is already installed on this AuthX instance; install() it once")
    original_middleware = auth.implicit_refresh_middleware
    if app is not None and original_middleware in registered_dispatchers(app):
        raise ConfigurationError(MIDDLEWARE_ORDER)
    config = auth.config
    longest = max(
        (value for value in (config.JWT_ACCESS_TOKEN_EXPIRES, config.JWT_REFRESH_TOKEN_EXPIRES) if value),
        default=dt.timedelta(days=30),
    )
    explicit = namespace is not None
    backend = open_store(store, namespace=namespace if namespace is not None else (auth.login_type or ROOT_NAMESPACE))
    claim_namespace(auth, backend, explicit)
    # Built before anything is wrapped: its minter keeps AuthX's own methods (see AuthxMinter).
    revocation = EpochRevocation(
        backend,
        claims=claims,
        clock=clock,
        fail_open=fail_open,
        accept_unstamped_until=accept_unstamped_until,
        revocation_leeway=revocation_leeway,
        max_token_lifetime=_lifetime(max_token_lifetime, longest),
        session_lifetime=_lifetime(session_lifetime, longest),
        verifier=authx_verifier(auth),
        on_decision=on_decision,
        auth=auth,
        refresh_reuse_grace=refresh_reuse_grace,
    )
    # The store is set up now if it answers. If it does not (Redis down at boot, a file being
    # restored) the app starts anyway: what needs the store answers 503 until it is back, and the
    # set-up happens at its first use. Configuration mistakes were refused above, at once.
    if not revocation.sync.ready():
        logger.error(
            "authx-epoch: the revocation store at %s does not answer at start-up; requests that need it answer "
            "503 until it does (await revocation.ready() says when)",
            backend.location,
        )

    installation = _Installation(revocation, authx_hooks(revocation), original_middleware, JustChecked())
    if app is not None:
        attach(app)
    _wrap_minting(auth, installation)
    _wrap_verify(auth, installation)
    _wrap_sessions(auth, revocation)
    _replace_implicit_refresh(auth, installation)
    watch_requests(auth, installation.apps, installation.original_middleware)
    _register_callback(auth, installation)
    if app is not None:
        app.state.authx_epoch = revocation
    _INSTALLS[auth] = weakref.ref(installation)
    return revocation


def installed(auth: AuthX[Any]) -> Optional[EpochRevocation]:
    """Return the service installed on ``auth``, or ``None``."""
    found = _INSTALLS.get(auth)
    installation = found() if found is not None else None
    return installation.revocation if installation is not None else None


def _register_callback(auth: AuthX[Any], installation: _Installation) -> None:
    revocation = installation.revocation
    checked = installation.checked
    if installation.hooks.reads_inline:
        # A local store answers without waiting, so the callback is a plain function: AuthX then
        # calls it without building and awaiting a coroutine, which is most of what a check with
        # the memory store costs. The sync twin's check is exactly the async one's.
        check = revocation.sync.is_token_revoked

        def is_token_revoked(token: str, **kwargs: Any) -> bool:
            if type(token) is _Probe:
                return True
            if check(token):
                return True
            checked.note(token)
            return False

        auth.set_token_blocklist(is_token_revoked)
    else:
        check_async = revocation.is_token_revoked

        async def is_token_revoked_async(token: str, **kwargs: Any) -> bool:
            if type(token) is _Probe:
                return True
            if await check_async(token):
                return True
            checked.note(token)
            return False

        # A plain coroutine function: AuthX picks sync or async with iscoroutinefunction.
        auth.set_token_blocklist(is_token_revoked_async)
    _prove_callback(auth)
    _keep_callback(auth, auth.callback_is_token_in_blocklist)


def _keep_callback(auth: AuthX[Any], ours: Any) -> None:
    """A blocklist callback the app registers after ``install()`` joins ours instead of replacing it.

    AuthX keeps one callback; an app that follows AuthX's guide after installing the library would
    otherwise switch the check off in silence. Both decide: a token is revoked if either says so.
    """
    register = auth.set_callback_token_blocklist

    def set_callback_token_blocklist(callback: Any) -> None:
        if callback is None or callback is ours:
            register(ours)
            return
        logger.info("a blocklist callback registered after install() runs after authx-epoch's own check")
        if not inspect.iscoroutinefunction(ours) and not inspect.iscoroutinefunction(callback):

            def both(token: str, **kwargs: Any) -> bool:
                return bool(ours(token, **kwargs)) or bool(callback(token, **kwargs))

            register(both)
            return

        async def both_async(token: str, **kwargs: Any) -> bool:
            revoked = ours(token, **kwargs)
            if inspect.isawaitable(revoked):
                revoked = await revoked
            if revoked:
                return True
            theirs = callback(token, **kwargs)
            if inspect.isawaitable(theirs):
                theirs = await theirs
            return bool(theirs)

        register(both_async)

    set_callback_token_blocklist.__doc__ = register.__doc__
    auth.set_callback_token_blocklist = set_callback_token_blocklist  # type: ignore[method-assign]


def _wrap_minting(auth: AuthX[Any], installation: _Installation) -> None:
    revocation = installation.revocation
    names = revocation.claims
    session_claim = names.session_id
    stamp = revocation.sync.issue_stamps
    max_lifetime = installation.hooks.max_lifetime
    original_access = auth.create_access_token
    original_refresh = auth.create_refresh_token

    def create_access_token(
        uid: str,
        fresh: bool = False,
        headers: Optional[dict[str, Any]] = None,
        expiry: Any = None,
        data: Optional[dict[str, Any]] = None,
        audience: Any = None,
        scopes: Optional[list[str]] = None,
        *args: Any,
        **kwargs: Any,
    ) -> str:
        expires = expiry_timestamp(expiry, auth.config.JWT_ACCESS_TOKEN_EXPIRES, time.time(), max_lifetime)
        data = stamp_claims(data, stamp(uid, expires, _session_of(data, session_claim)), names)
        return original_access(uid, fresh, headers, expiry, data, audience, scopes, *args, **kwargs)

    def create_refresh_token(
        uid: str,
        headers: Optional[dict[str, Any]] = None,
        expiry: Any = None,
        data: Optional[dict[str, Any]] = None,
        audience: Any = None,
        scopes: Optional[list[str]] = None,
        *args: Any,
        **kwargs: Any,
    ) -> str:
        expires = expiry_timestamp(expiry, auth.config.JWT_REFRESH_TOKEN_EXPIRES, time.time(), max_lifetime)
        data = stamp_claims(data, stamp(uid, expires, _session_of(data, session_claim)), names)
        return original_refresh(uid, headers, expiry, data, audience, scopes, *args, **kwargs)

    create_access_token.__doc__ = original_access.__doc__
    create_refresh_token.__doc__ = original_refresh.__doc__
    auth.create_access_token = create_access_token  # type: ignore[method-assign]
    auth.create_refresh_token = create_refresh_token  # type: ignore[method-assign]


def _wrap_verify(auth: AuthX[Any], installation: _Installation) -> None:
    """Make ``verify_token`` refuse revoked tokens: every path that says "valid" asks the store."""
    original = auth.verify_token
    # This closure, kept on the instance, is what keeps the installation alive (see _INSTALLS).
    check = installation.revocation.sync.is_token_revoked

    def verify_token(
        token: RequestToken, verify_type: bool = True, verify_fresh: bool = False, verify_csrf: bool = True
    ) -> TokenPayload:
        payload = original(token, verify_type=verify_type, verify_fresh=verify_fresh, verify_csrf=verify_csrf)
        raw = token.token
        # The dependencies' callback asked the store an instant ago, with no await in between.
        if not installation.checked.take(raw) and check(raw):
            raise RevokedTokenError("Token has been revoked", login_type=auth.login_type)
        return payload

    verify_token.__doc__ = original.__doc__
    auth.verify_token = verify_token  # type: ignore[method-assign]


def _wrap_sessions(auth: AuthX[Any], revocation: EpochRevocation) -> None:
    original_revoke = auth.revoke_session
    original_revoke_all = auth.revoke_all_sessions

    async def revoke_session(session_id: str) -> None:
        await revocation.revoke_session(session_id)
        await original_revoke(session_id)

    async def revoke_all_sessions(uid: str) -> None:
        await revocation.bump_user_epoch(uid, reason="revoke_all_sessions")
        await original_revoke_all(uid)

    revoke_session.__doc__ = "Revoke a session: its record in AuthX's session store and every token minted for it."
    revoke_all_sessions.__doc__ = "Revoke every session of a user: the records and, by bumping the epoch, every token."
    auth.revoke_session = revoke_session  # type: ignore[method-assign]
    auth.revoke_all_sessions = revoke_all_sessions  # type: ignore[method-assign]


def _replace_implicit_refresh(auth: AuthX[Any], installation: _Installation) -> None:
    minter = installation.hooks.minter
    renew = installation.hooks.renew
    enabled = auth._implicit_refresh_enabled_for_request

    async def implicit_refresh_middleware(
        request: Request, call_next: Callable[[Request], Coroutine[Any, Any, Response]]
    ) -> Response:
        response = await call_next(request)
        if not (auth.config.has_location("cookies") and enabled(request)):
            return response
        # AuthX's errors and store trouble (StoreUnavailableError is an AuthXException) mean: no
        # renewal, never a token minted without a check.
        with contextlib.suppress(AuthXException):
            token = await auth.get_access_token_from_request(request, locations=["cookies"])
            payload = minter.verify(token, verify_fresh=False, verify_csrf=False)
            if payload.time_until_expiry < auth.config.JWT_IMPLICIT_REFRESH_DELTATIME:
                renewed = await renew(token.token, payload)
                if renewed is not None:
                    auth.set_access_cookies(renewed, response=response)
        return response

    implicit_refresh_middleware.__doc__ = auth.implicit_refresh_middleware.__doc__
    auth.implicit_refresh_middleware = implicit_refresh_middleware  # type: ignore[method-assign]


__all__ = ["DEFAULT_STORE", "STORE_UNAVAILABLE_MESSAGE", "install", "installed"]
