"""Namespaces: which AuthX instance of this process works in which namespace of which store.

Several instances of one app may share a namespace; two realms (other keys or another login
type) may not by accident, since they would share every user's epochs and the global one.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any, Optional

from authx import AuthX
from authx.exceptions import AuthXException

from authx_epoch.errors import ConfigurationError
from authx_epoch.stores import Store

#: Which AuthX instance of this process works in which (store location, namespace), whether it named
#: the namespace itself, and what it signs with (a digest, never the key itself).
_CLAIMS: dict[tuple[str, str], tuple[weakref.ref[AuthX[Any]], bool, str]] = {}


def _realm(auth: AuthX[Any]) -> str:
    """What tells two AuthX instances of one app (same keys, algorithm, login type) from two realms."""
    config = auth.config
    keys: tuple[Optional[str], Optional[str]]
    try:
        keys = (config.public_key, config.previous_public_key)
    except AuthXException:  # no key configured yet (AuthX says so when one is needed)
        keys = (None, None)
    material = "\x00".join(str(part) for part in (config.JWT_ALGORITHM, *keys, auth.login_type))
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


def claim_namespace(auth: AuthX[Any], backend: Store, explicit: bool) -> None:
    """Refuse a second realm on a namespace another live AuthX instance uses, unless both named it.

    Several instances of one app (the same keys and login type: test apps, a restart in one
    process) may share a namespace; two realms (users and admins with their own keys) may not by
    accident, or an admin's logout would log out the user with the same id.
    """
    key = (backend.location, backend.namespace)
    realm = _realm(auth)
    found = _CLAIMS.get(key)
    if found is not None and found[0]() is not None and found[2] != realm and not (explicit and found[1]):
        shown = repr(backend.namespace) if backend.namespace else "the root namespace"
        raise ConfigurationError(
            f"another AuthX instance, with other keys or another login type, already uses {shown} of the store "
            f"at {backend.location}: two instances on one namespace share every user's epochs and the global "
            "one (an admin's logout would log out the user with the same id). Give each its own "
            "install(..., namespace='...'), or pass the same namespace= to both to share on purpose"
        )
    _CLAIMS[key] = (weakref.ref(auth), explicit, realm)


__all__ = ["claim_namespace"]
