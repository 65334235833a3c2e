"""Verification for ``install()``: a token verified as AuthX would, and the callback's answer reused once.

``authx_verifier`` is the service's ``Verifier`` for an AuthX instance. ``JustChecked`` lets the
wrapped ``verify_token`` reuse the answer the blocklist callback gave an instant before, instead of
asking the store twice in one AuthX dependency.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from typing import Any, Optional

import jwt
from authx import AuthX


def authx_verifier(auth: AuthX[Any]) -> Callable[..., Optional[Mapping[str, Any]]]:
    """Verify a token exactly as AuthX would: its key, the previous key, algorithm, audience, issuer."""

    def verify(token: str, *, verify_exp: bool = True) -> Optional[Mapping[str, Any]]:
        config = auth.config
        keys = [config.public_key]
        if config.previous_public_key:
            keys.append(config.previous_public_key)
        for key in keys:
            try:
                payload: dict[str, Any] = jwt.decode(
                    token,
                    key=key,
                    algorithms=[config.JWT_ALGORITHM],
                    audience=config.JWT_DECODE_AUDIENCE,
                    issuer=config.JWT_DECODE_ISSUER,
                    options={"verify_exp": verify_exp},
                )
            except (jwt.PyJWTError, ValueError, TypeError):
                continue
            return payload
        return None

    return verify


class JustChecked:
    """The last token the blocklist callback accepted on this thread, until the event loop runs other work.

    AuthX's dependencies call the callback and then ``verify_token`` with no ``await`` in between,
    so ``verify_token`` may reuse the callback's answer instead of asking the store a second time.
    The answer is forgotten as soon as the loop gets control back (``call_soon``), so a later
    ``verify_token`` of the same token, after other requests had a chance to revoke it, asks again.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def note(self, token: str) -> None:
        """Remember that ``token`` was accepted just now."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop to tell when "just now" ends: remember nothing
        local = self._local
        if local.__dict__.get("token") is None:
            loop.call_soon(local.__dict__.pop, "token", None)
        local.token = token

    def take(self, token: str) -> bool:
        """Whether ``token`` is the one accepted just now (forgetting it: each answer serves once)."""
        local = self._local
        if local.__dict__.get("token") == token:
            local.token = None
            return True
        return False


__all__ = ["JustChecked", "authx_verifier"]
