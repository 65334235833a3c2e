"""Namespaces: the names a store's data is divided by, and the key prefix of each.

A store only fetches state and applies atomic writes; it never decides. The decision is made
by ``authx_epoch.decision`` from what ``fetch`` returns, identically for every backend. The
contract every backend implements is in ``stores.contract``.
"""

from __future__ import annotations

import re

from authx_epoch.errors import ConfigurationError

#: The root namespace: the data of a store as it was before namespaces existed.
ROOT_NAMESPACE = ""

_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def namespaced_prefix(prefix: str, namespace: str) -> str:
    """The key prefix of ``namespace`` under ``prefix``: ``prefix`` itself for the root, else ``prefix~namespace``.

    ``~`` is allowed in neither prefixes nor namespace names, so ``prefix:*`` (the root's keys)
    never matches the keys of a namespace, nor one namespace's keys another's.
    """
    return f"{prefix}~{namespace}" if namespace else prefix


def check_namespace(namespace: object) -> str:
    """Return ``namespace`` if it is a valid namespace name.

    Raises:
        ConfigurationError: It is not ``""`` (the root) nor 1 to 64 ASCII letters, digits,
            ``_``, ``.`` or ``-`` starting with a letter or a digit.
    """
    if namespace == ROOT_NAMESPACE or (isinstance(namespace, str) and _NAMESPACE.fullmatch(namespace)):
        return str(namespace)
    raise ConfigurationError(
        "a namespace is '' (the root) or 1 to 64 ASCII letters, digits, '_', '.' or '-' starting with a letter "
        f"or a digit, got {namespace!r:.80}"
    )
