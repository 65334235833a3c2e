"""Read the few claims the check needs from a raw JWT, cheaply, and write the stamp claims.

The blocklist callback runs *before* AuthX verifies the signature, so everything read here is
attacker-chosen. Reading is still safe because it can only add rejections: a token this module
cannot read is left to AuthX, which rejects it on its own, and a rejection is only answered
after the signature has been verified (see ``checking.py``). What is parsed is bounded in size.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from authx_epoch._memo import Memo
from authx_epoch.errors import ConfigurationError
from authx_epoch.records import MAX_EPOCH, Stamps

#: Claims that AuthX writes or reads itself; stamp claim names must not collide with them.
AUTHX_CLAIMS = frozenset(
    {"sub", "jti", "iat", "exp", "nbf", "iss", "aud", "type", "fresh", "csrf", "scopes", "login_type"}
)

#: Tokens longer than this are not parsed before verification (see ``ClaimReader``).
DEFAULT_MAX_TOKEN_BYTES = 16 * 1024
#: Tokens longer than this are parsed every time instead of being remembered, so that the memo
#: holds at most ``memo_size`` times this many characters whatever clients send (8 MiB by default).
DEFAULT_MEMO_MAX_CHARS = 2048


@dataclass(frozen=True)
class ClaimNames:
    """The names of the claims authx-epoch writes into tokens and reads back.

    The defaults are short, so they add little to every token, and none collides with a claim
    of AuthX's own. ``session_id`` matches the data key AuthX's session guide uses.

    Attributes:
        user_epoch: The claim holding the user's epoch at issue time.
        global_epoch: The claim holding the global epoch at issue time.
        session_id: The claim holding the session id of the login that minted the token.
        session_generation: The claim holding the session's generation at issue time (written
            into every token minted with a session id; rotation moves the generation).
    """

    user_epoch: str = "uep"
    global_epoch: str = "gep"
    session_id: str = "session_id"
    session_generation: str = "sgen"

    def __post_init__(self) -> None:
        names = (self.user_epoch, self.global_epoch, self.session_id, self.session_generation)
        for name in names:
            if not isinstance(name, str) or not name:
                raise ConfigurationError(f"claim names must be non-empty strings, got {name!r}")
            if name in AUTHX_CLAIMS:
                raise ConfigurationError(f"claim name {name!r} collides with a claim AuthX uses; pick another name")
        if len(set(names)) != len(names):
            raise ConfigurationError(f"claim names must differ from each other, got {names!r}")


class StampState(Enum):
    """Whether a token carries the epoch stamp."""

    STAMPED = "stamped"
    UNSTAMPED = "unstamped"
    MALFORMED = "malformed"


@dataclass(frozen=True, init=False)
class TokenClaims:
    """The claims of one token that matter to the check, already type-checked.

    Attributes:
        sub: The subject (user id).
        jti: The token id, if it has a string one.
        session_id: The session id, if the token carries one.
        iat: Issued-at, in Unix seconds.
        exp: Expiry, in Unix seconds.
        stamp: Whether the epoch stamp is present, absent or malformed.
        user_epoch: The stamped user epoch (only when ``stamp`` is ``STAMPED``).
        global_epoch: The stamped global epoch (only when ``stamp`` is ``STAMPED``).
        session_generation: The stamped session generation (only when ``stamp`` is ``STAMPED``
            and the token was minted for a session).
    """

    sub: str
    jti: Optional[str] = None
    session_id: Optional[str] = None
    iat: Optional[float] = None
    exp: Optional[float] = None
    stamp: StampState = StampState.UNSTAMPED
    user_epoch: int = 0
    global_epoch: int = 0
    session_generation: Optional[int] = None

    def __init__(
        self,
        sub: str,
        jti: Optional[str] = None,
        session_id: Optional[str] = None,
        iat: Optional[float] = None,
        exp: Optional[float] = None,
        stamp: StampState = StampState.UNSTAMPED,
        user_epoch: int = 0,
        global_epoch: int = 0,
        session_generation: Optional[int] = None,
    ) -> None:
        # Built for every token not yet in the memo; the frozen dataclass's generated __init__
        # (one object.__setattr__ per field) costs more than parsing the payload. Writing the
        # instance dict once keeps the object frozen to callers.
        fields = self.__dict__
        fields["sub"] = sub
        fields["jti"] = jti
        fields["session_id"] = session_id
        fields["iat"] = iat
        fields["exp"] = exp
        fields["stamp"] = stamp
        fields["user_epoch"] = user_epoch
        fields["global_epoch"] = global_epoch
        fields["session_generation"] = session_generation


def _valid_epoch(value: object) -> bool:
    # bool is a subclass of int: reject it explicitly, as a stamp never holds one.
    return type(value) is int and 0 <= value <= MAX_EPOCH


def _number(value: object) -> Optional[float]:
    if type(value) is int or type(value) is float:
        return float(value)
    return None


def session_id_of(value: object) -> Optional[str]:
    """The session id a session claim holds: a non-empty string, or ``None`` for anything else.

    One rule everywhere (the check, the mint, the public methods): a session id is a non-empty
    string. ``123`` and ``"123"`` are not the same session; a number is no session id at all.
    """
    return value if isinstance(value, str) and value else None


def claims_from_mapping(payload: Mapping[str, Any], names: ClaimNames) -> Optional[TokenClaims]:
    """Extract the claims the check needs from a decoded payload.

    Returns ``None`` when the payload is not a token this library can judge (no string ``sub``);
    such a token is left to AuthX.
    """
    sub = payload.get("sub")
    if not isinstance(sub, str):
        return None
    jti = payload.get("jti")
    user_raw = payload.get(names.user_epoch, _MISSING)
    global_raw = payload.get(names.global_epoch, _MISSING)
    generation_raw = payload.get(names.session_generation, _MISSING)
    session_raw = payload.get(names.session_id)
    session_id = session_id_of(session_raw)
    if session_raw is not None and session_id is None:
        # A session claim no revocation can name (a number, an empty string, an object): a token
        # revoked by its session would otherwise pass as one without a session.
        stamp = StampState.MALFORMED
    elif user_raw is _MISSING and global_raw is _MISSING and generation_raw is _MISSING:
        stamp = StampState.UNSTAMPED
    elif (
        _valid_epoch(user_raw)
        and _valid_epoch(global_raw)
        # A session generation only means something next to the session id it belongs to.
        and (generation_raw is _MISSING or (_valid_epoch(generation_raw) and session_id is not None))
    ):
        stamp = StampState.STAMPED
    else:
        stamp = StampState.MALFORMED
    stamped = stamp is StampState.STAMPED
    return TokenClaims(
        sub=sub,
        jti=jti if isinstance(jti, str) else None,
        session_id=session_id,
        iat=_number(payload.get("iat")),
        exp=_number(payload.get("exp")),
        stamp=stamp,
        user_epoch=user_raw if stamped else 0,
        global_epoch=global_raw if stamped else 0,
        session_generation=generation_raw if stamped and generation_raw is not _MISSING else None,
    )


_MISSING: Any = object()


def decode_payload_segment(token: str, max_bytes: int = DEFAULT_MAX_TOKEN_BYTES) -> Optional[dict[str, Any]]:
    """Decode the payload segment of a compact JWT without any signature work.

    Returns ``None`` for anything that is not ``header.payload.signature`` with a base64url JSON
    object in the middle, and for tokens longer than ``max_bytes``.
    """
    if len(token) > max_bytes:
        return None
    first = token.find(".")
    second = token.find(".", first + 1)
    if first < 0 or second < 0 or token.find(".", second + 1) >= 0:
        return None
    segment = token[first + 1 : second]
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        payload = json.loads(raw)
    except (ValueError, binascii.Error, RecursionError, TypeError):
        return None
    return payload if isinstance(payload, dict) else None


@dataclass
class ClaimReader:
    """Reads ``TokenClaims`` from raw tokens, remembering the last few it read.

    A token is usually presented many times during its life, so a bounded memo keyed by the
    token string turns most reads into one dictionary lookup. Only tokens that parsed are
    remembered, so garbage cannot push good entries out faster than they are used.

    Attributes:
        names: The claim names to read.
        max_bytes: Tokens longer than this are not parsed here.
        memo_size: How many tokens to remember; 0 disables the memo.
        memo_max_chars: Tokens longer than this are read every time, never remembered: the
            tokens are not verified yet, so this bounds the memory clients can make it hold.
    """

    names: ClaimNames = field(default_factory=ClaimNames)
    max_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    memo_size: int = 4096
    memo_max_chars: int = DEFAULT_MEMO_MAX_CHARS
    _memo: Memo[str, TokenClaims] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._memo = Memo(self.memo_size)

    def read(self, token: str) -> Optional[TokenClaims]:
        """Return the token's claims, or ``None`` if it cannot be read cheaply."""
        if not isinstance(token, str):
            return None
        memo = self._memo
        hit = memo.get(token)
        if hit is not None:
            return hit
        payload = decode_payload_segment(token, self.max_bytes)
        if payload is None:
            return None
        claims = claims_from_mapping(payload, self.names)
        if claims is not None and len(token) <= self.memo_max_chars:
            memo.put(token, claims)
        return claims


def stamp_claims(data: Optional[Mapping[str, Any]], stamps: Stamps, names: ClaimNames) -> dict[str, Any]:
    """Return a copy of ``data`` with the epoch stamps written in (overwriting any given ones).

    The session generation is written when the stamps have one, and removed otherwise, so a
    caller's data can never carry a generation the store did not hand out.
    """
    stamped = dict(data) if data else {}
    stamped[names.user_epoch] = stamps.user_epoch
    stamped[names.global_epoch] = stamps.global_epoch
    if stamps.session_generation is not None:
        stamped[names.session_generation] = stamps.session_generation
    else:
        stamped.pop(names.session_generation, None)
    return stamped
