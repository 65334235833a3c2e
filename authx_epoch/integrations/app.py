"""The app side of ``install()``: a scope per request, the 503 answer, and AuthX's middleware found out.

Every request runs in a scope of its own for what it was authorised under (``authority``);
store trouble is answered with a 503 in AuthX's error shape (a WebSocket is closed with 1013);
and an app that registered AuthX's own implicit-refresh middleware before ``install()`` is refused.
"""

from __future__ import annotations

import weakref
from typing import Any, Optional, Union

from authx import AuthX
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from authx_epoch.authority import close_scope, enter_request, open_scope
from authx_epoch.errors import STORE_UNAVAILABLE_MESSAGE, ConfigurationError, StoreUnavailableError

#: Why an app whose AuthX implicit-refresh middleware came before ``install()`` is refused.
MIDDLEWARE_ORDER = (
    "auth.implicit_refresh_middleware was registered before authx_epoch.install(): AuthX's own middleware "
    "re-mints cookies without their jti and session, so a logout would not reach them. Call "
    "authx_epoch.install() first, then app.middleware('http')(auth.implicit_refresh_middleware)"
)


def registered_dispatchers(app: Any) -> list[Any]:
    """The dispatch functions of the ``BaseHTTPMiddleware`` layers registered on ``app``."""
    return [
        middleware.kwargs.get("dispatch")
        for middleware in getattr(app, "user_middleware", ())
        if getattr(middleware, "cls", None) is BaseHTTPMiddleware
    ]


async def store_unavailable(conn: Union[Request, WebSocket], exc: Exception) -> Optional[JSONResponse]:
    """Answer store trouble: a 503 in AuthX's error shape, or a WebSocket closed with 1013."""
    if conn.scope.get("type") == "websocket":
        # 1013 "try again later" is the WebSocket counterpart of a 503.
        assert isinstance(conn, WebSocket)
        await conn.close(code=1013, reason="revocation store unavailable")
        return None
    return JSONResponse(
        status_code=503,
        content={"message": STORE_UNAVAILABLE_MESSAGE, "error_type": "StoreUnavailableError"},
        headers={"Retry-After": "1"},
    )


class RequestScopes:
    """ASGI middleware: every HTTP request and WebSocket runs in a request scope of its own.

    A scope holds what the request was authorised under (``authx_epoch.authority``); opening one
    per request keeps an app that serves several requests in one context (an in-process test
    client) from carrying one request's authority into the next.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app in a fresh request scope (HTTP and WebSocket; lifespan passes through)."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = open_scope(scope)
        try:
            await self.app(scope, receive, send)
        finally:
            close_scope(token)


def attach(app: FastAPI) -> None:
    """The 503 handler and the per-request scopes, once per app."""
    if any(getattr(middleware, "cls", None) is RequestScopes for middleware in app.user_middleware):
        return
    try:
        app.add_middleware(RequestScopes)
    except RuntimeError as exc:
        raise ConfigurationError(f"install(app=...) must run before the app serves requests: {exc}") from exc
    app.add_exception_handler(StoreUnavailableError, store_unavailable)  # type: ignore[arg-type]


def watch_requests(auth: AuthX[Any], apps: weakref.WeakKeyDictionary[Any, bool], middleware: Any) -> None:
    """At every AuthX dependency: the request's scope, its 503 handler, and AuthX's own middleware found out.

    AuthX's dependencies call ``ensure_request_exception_handlers(request)`` first; it is the one
    place where the library sees the request and the app without having been given them. There it
    makes sure the request has a scope for its authorities, adds the 503 handler for apps installed
    without ``app=`` (as AuthX adds its own handlers), and refuses every request of an app that
    registered AuthX's own implicit-refresh middleware before ``install()`` (which
    ``install(app=...)`` refuses at once). ``apps`` remembers, per app, whether it did; ``middleware``
    is AuthX's own, as it was before ``install()``.
    """
    original = auth.ensure_request_exception_handlers

    def ensure_request_exception_handlers(request: Request) -> None:
        original(request)
        enter_request(request.scope)
        handlers = request.scope.get("starlette.exception_handlers")
        if handlers is not None and StoreUnavailableError not in handlers[0]:
            handlers[0][StoreUnavailableError] = store_unavailable
        app = request.scope.get("app")
        if app is None:
            return
        wrong_order = apps.get(app)
        if wrong_order is None:
            wrong_order = apps[app] = middleware in registered_dispatchers(app)
        if wrong_order:
            raise ConfigurationError(MIDDLEWARE_ORDER)

    ensure_request_exception_handlers.__doc__ = original.__doc__
    auth.ensure_request_exception_handlers = ensure_request_exception_handlers  # type: ignore[method-assign]


__all__ = [
    "MIDDLEWARE_ORDER",
    "RequestScopes",
    "attach",
    "registered_dispatchers",
    "store_unavailable",
    "watch_requests",
]
