"""The Redis store's versioned reads (see ``stores.versions``): the calls and what their answers mean. Pure, no I/O.

A user's hash carries its version in field ``v``, moved by every write script (``touch`` in
``lua/common.lua``). ``view.lua`` reads a user's whole hash when it is small (at most
``VIEW_FIELDS`` fields: the record, the id, the version, the sweep cursor and up to 60 revoked
jtis) and only the fields one check needs otherwise; ``versions.lua`` reads the version of many
users, the global record and sessions' records, for the cache to confirm what it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from authx_epoch.records import CheckState, SessionRecord
from authx_epoch.stores.redis.keys import RECORD_FIELD
from authx_epoch.stores.redis.keyspace import KeySpace
from authx_epoch.stores.redis.scripts import VERSIONS, VIEW, Call
from authx_epoch.stores.redis.values import decode_record, decode_session, revoked_until
from authx_epoch.stores.versions import UserView, Versions

#: The most fields of a user's hash a view reads whole (a user with more revoked jtis is read per jti).
VIEW_FIELDS = 64
#: The field of a user's hash that holds its version.
VERSION_FIELD = b"v"
#: The most keys one ``versions.lua`` call reads (a larger confirmation is sent in several calls).
VERSIONS_BATCH = 1000


def view_call(keys: KeySpace, uid: str, jti: Optional[str], session_id: Optional[str]) -> Call:
    """Read a user's hash (and, on a single Redis, the global and session records) for a view."""
    call_keys = [keys.user_key(uid)]
    if not keys.cluster:
        call_keys.append(keys.global_key)
        if session_id is not None:
            call_keys.append(keys.session_key(session_id))
    field = keys.token_field(jti) if jti is not None else b""
    return Call(VIEW, call_keys, [field, str(VIEW_FIELDS)])


def user_view(keys: KeySpace, answer: Sequence[Any]) -> tuple[dict[bytes, Any], UserView]:
    """The user's fields and view from ``view.lua``'s answer (``[fields, complete, ...]``)."""
    flat = answer[0] or []
    fields = {flat[index]: flat[index + 1] for index in range(0, len(flat), 2)}
    revoked: Optional[dict[bytes, float]] = None
    if answer[1] == 1:
        revoked = {}
        for field, value in fields.items():
            if field.startswith(b"j:") and value is not None:
                until = revoked_until(value)
                revoked[field] = until if until is not None else float("inf")
    # A user without a hash has version b"" (so "still nothing" can be confirmed); a hash written
    # before versions existed has none, and is never confirmed by a read of versions.
    version = fields.get(VERSION_FIELD) if fields else b""
    return fields, UserView(version, revoked, keys.token_field)


def view_state(
    keys: KeySpace, answer: Sequence[Any], jti: Optional[str], global_raw: Any, session_raw: Any, now: float
) -> tuple[CheckState, UserView]:
    """One check's state and the user's view, from ``view.lua``'s answer and the global and session records."""
    fields, view = user_view(keys, answer)
    jti_raw = fields.get(keys.token_field(jti)) if jti is not None else None
    return keys.check_state([fields.get(RECORD_FIELD), jti_raw, global_raw, session_raw], now), view


def versions_calls(keys: KeySpace, uids: Sequence[str], session_ids: Sequence[str]) -> list[Call]:
    """``versions.lua`` calls reading the global record, the users' versions and the sessions' records.

    One call unless there are more than ``VERSIONS_BATCH`` users and sessions; each call reads the
    global record, then its users, then its sessions.
    """
    items = [(True, keys.user_key(uid)) for uid in uids] + [(False, keys.session_key(sid)) for sid in session_ids]
    calls = []
    for start in range(0, max(len(items), 1), VERSIONS_BATCH):
        batch = items[start : start + VERSIONS_BATCH]
        users = sum(1 for is_user, _ in batch if is_user)
        calls.append(Call(VERSIONS, [keys.global_key, *(key for _, key in batch)], [str(users)]))
    return calls


def versions_of(answers: Sequence[Sequence[Any]]) -> Versions:
    """The ``Versions`` from the answers of ``versions_calls`` (in their order)."""
    users: list[Optional[bytes]] = []
    sessions: list[Optional[SessionRecord]] = []
    for answer in answers:
        users.extend(answer[1])
        sessions.extend(decode_session(raw) for raw in answer[2])
    # Any call's global record will do: each is as of a moment after the claim.
    return Versions(decode_record(answers[-1][0]), users, sessions)


def cluster_versions_reads(keys: KeySpace, uids: Sequence[str], session_ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """On Cluster, one read per key (each key in its own slot): the global record, users' versions, sessions."""
    reads: list[tuple[Any, ...]] = [("get", keys.global_key)]
    reads.extend(("hmget", keys.user_key(uid), [VERSION_FIELD]) for uid in uids)
    reads.extend(("get", keys.session_key(session_id)) for session_id in session_ids)
    return reads


def cluster_versions_of(answers: Sequence[Any], users: int) -> Versions:
    """The ``Versions`` from the answers of ``cluster_versions_reads``."""
    # HMGET cannot tell a missing hash from one without a version: neither is confirmed on Cluster.
    versions = [answer[0] or None for answer in answers[1 : users + 1]]
    sessions = [decode_session(raw) for raw in answers[users + 1 :]]
    return Versions(decode_record(answers[0]), versions, sessions)
