"""The claims reader: cheap, bounded, and strict about what counts as an epoch stamp."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from authx_epoch import ClaimNames, ConfigurationError
from authx_epoch.claims import (
    AUTHX_CLAIMS,
    DEFAULT_MAX_TOKEN_BYTES,
    ClaimReader,
    StampState,
    claims_from_mapping,
    decode_payload_segment,
    stamp_claims,
)
from authx_epoch.records import MAX_EPOCH, Stamps
from tests.helpers import forge, raw_token

NAMES = ClaimNames()


def stamped(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"sub": "alice", "jti": "j1", "iat": 100, "exp": 200.5, "uep": 5, "gep": 7}
    payload.update(overrides)
    return payload


# -- ClaimNames ----------------------------------------------------------------------------


def test_default_claim_names_are_documented_and_do_not_collide_with_authx() -> None:
    names = ClaimNames()
    assert (names.user_epoch, names.global_epoch, names.session_id) == ("uep", "gep", "session_id")
    assert not {names.user_epoch, names.global_epoch, names.session_id} & AUTHX_CLAIMS


@pytest.mark.parametrize("taken", sorted(AUTHX_CLAIMS))
def test_claim_names_refuse_every_authx_claim(taken: str) -> None:
    with pytest.raises(ConfigurationError, match="collides"):
        ClaimNames(user_epoch=taken)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"user_epoch": ""},
        {"global_epoch": ""},
        {"session_id": ""},
        {"user_epoch": 3},
        {"global_epoch": None},
        {"user_epoch": "x", "global_epoch": "x"},
        {"session_id": "gep"},
    ],
)
def test_claim_names_refuse_empty_non_string_and_duplicate_names(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ClaimNames(**kwargs)


def test_custom_claim_names_are_read_and_stamped() -> None:
    names = ClaimNames(user_epoch="my_u", global_epoch="my_g", session_id="sid")
    claims = claims_from_mapping({"sub": "a", "my_u": 1, "my_g": 2, "sid": "s9", "uep": "junk"}, names)
    assert claims is not None
    assert (claims.stamp, claims.user_epoch, claims.global_epoch, claims.session_id) == (StampState.STAMPED, 1, 2, "s9")
    assert stamp_claims({"keep": 1}, Stamps(3, 4), names) == {"keep": 1, "my_u": 3, "my_g": 4}


# -- claims_from_mapping -------------------------------------------------------------------


def test_a_stamped_payload_is_read_whole() -> None:
    claims = claims_from_mapping(stamped(session_id="s1"), NAMES)
    assert claims is not None
    assert claims.sub == "alice"
    assert claims.jti == "j1"
    assert claims.session_id == "s1"
    assert claims.iat == 100.0
    assert claims.exp == 200.5
    assert claims.stamp is StampState.STAMPED
    assert (claims.user_epoch, claims.global_epoch) == (5, 7)


def test_no_stamp_at_all_is_unstamped() -> None:
    claims = claims_from_mapping({"sub": "alice", "iat": 1, "exp": 2}, NAMES)
    assert claims is not None
    assert claims.stamp is StampState.UNSTAMPED


@pytest.mark.parametrize("sub", [None, 1, 1.5, True, ["a"], {"a": 1}])
def test_no_string_sub_is_not_ours(sub: Any) -> None:
    assert claims_from_mapping(stamped(sub=sub), NAMES) is None
    assert claims_from_mapping({k: v for k, v in stamped().items() if k != "sub"}, NAMES) is None


@pytest.mark.parametrize(
    "bad",
    [True, False, 1.0, 5.5, "5", None, -1, 2**70, MAX_EPOCH + 1, [5], {"e": 5}],
    ids=repr,
)
@pytest.mark.parametrize("claim", ["uep", "gep"])
def test_a_stamp_that_is_not_a_valid_epoch_is_malformed(claim: str, bad: Any) -> None:
    claims = claims_from_mapping(stamped(**{claim: bad}), NAMES)
    assert claims is not None
    assert claims.stamp is StampState.MALFORMED
    # a malformed stamp never carries a number a caller could compare by mistake
    assert (claims.user_epoch, claims.global_epoch) == (0, 0)


@pytest.mark.parametrize("missing", ["uep", "gep"])
def test_half_a_stamp_is_malformed_not_unstamped(missing: str) -> None:
    payload = stamped()
    del payload[missing]
    claims = claims_from_mapping(payload, NAMES)
    assert claims is not None
    assert claims.stamp is StampState.MALFORMED


@pytest.mark.parametrize("value", [0, MAX_EPOCH])
def test_epoch_bounds_are_inclusive(value: int) -> None:
    claims = claims_from_mapping(stamped(uep=value, gep=value), NAMES)
    assert claims is not None
    assert claims.stamp is StampState.STAMPED
    assert claims.user_epoch == value


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("jti", 5, None),
        ("jti", None, None),
        ("iat", "100", None),
        ("iat", True, None),
        ("exp", "200", None),
        ("exp", False, None),
    ],
)
def test_wrongly_typed_side_claims_are_dropped_not_trusted(field: str, value: Any, expected: Any) -> None:
    claims = claims_from_mapping(stamped(**{field: value}), NAMES)
    assert claims is not None
    assert getattr(claims, field) == expected


@pytest.mark.parametrize("value", [42, 4.2, ["s"], {"id": "s"}, "", True])
@pytest.mark.parametrize("stamp", [True, False])
def test_a_session_claim_that_is_not_a_non_empty_string_is_malformed(value: Any, stamp: bool) -> None:
    # One rule for session ids: a non-empty string. 123 and "123" are not one session: a number
    # names no session a revocation could reach, so the token is refused rather than passed as
    # one without a session.
    payload = stamped(session_id=value) if stamp else {"sub": "alice", "jti": "j1", "session_id": value}
    claims = claims_from_mapping(payload, NAMES)
    assert claims is not None
    assert claims.session_id is None
    assert claims.stamp is StampState.MALFORMED


def test_a_null_session_claim_is_no_session() -> None:
    claims = claims_from_mapping(stamped(session_id=None), NAMES)
    assert claims is not None
    assert (claims.session_id, claims.stamp) == (None, StampState.STAMPED)


# -- decode_payload_segment ----------------------------------------------------------------


def test_decode_reads_a_real_token() -> None:
    token = forge("bob", uep=1, gep=2)
    payload = decode_payload_segment(token)
    assert payload is not None
    assert payload["sub"] == "bob"
    assert payload["uep"] == 1


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c.d",
        "..",
        "a.!!!!.c",
        "a.%%%.c",
        raw_token("not an object"),
        raw_token([1, 2, 3]),
        raw_token(None),
        raw_token(7),
        "h.bm90IGpzb24.s",  # base64 of "not json"
        "h.\u00e9\u00e9.s",
    ],
)
def test_decode_returns_none_for_garbage_and_non_object_payloads(token: str) -> None:
    assert decode_payload_segment(token) is None


def test_decode_refuses_tokens_over_the_size_bound() -> None:
    token = forge("alice", padding="x" * DEFAULT_MAX_TOKEN_BYTES)
    assert len(token) > DEFAULT_MAX_TOKEN_BYTES
    assert decode_payload_segment(token) is None
    assert decode_payload_segment(token, max_bytes=len(token)) is not None


def test_decode_survives_deeply_nested_json() -> None:
    nested = "[" * 100_000 + "]" * 100_000
    token = "e30." + base64.urlsafe_b64encode(nested.encode()).decode().rstrip("=") + ".sig"
    assert decode_payload_segment(token, max_bytes=10**7) is None


# -- ClaimReader ---------------------------------------------------------------------------


def test_reader_returns_the_claims_and_remembers_them() -> None:
    reader = ClaimReader(memo_size=8)
    token = forge("carol", uep=3, gep=4)
    first = reader.read(token)
    assert first is not None
    assert first.sub == "carol"
    assert reader.read(token) is first


@pytest.mark.parametrize("token", [None, 5, b"a.b.c", "garbage", raw_token([1]), raw_token({"sub": 5})])
def test_reader_returns_none_for_what_it_cannot_judge(token: Any) -> None:
    reader = ClaimReader()
    assert reader.read(token) is None
    assert len(reader._memo) == 0


def test_reader_memo_is_bounded() -> None:
    reader = ClaimReader(memo_size=4)
    tokens = [forge(f"u{i}", uep=i, gep=i) for i in range(20)]
    for token in tokens:
        assert reader.read(token) is not None
        assert len(reader._memo) <= 4
    assert set(reader._memo) == set(tokens[-4:])


def test_reader_with_memo_disabled_keeps_nothing() -> None:
    reader = ClaimReader(memo_size=0)
    assert reader.read(forge("dave", uep=1, gep=1)) is not None
    assert len(reader._memo) == 0


def test_reader_does_not_memo_garbage() -> None:
    reader = ClaimReader(memo_size=2)
    good = forge("erin", uep=1, gep=1)
    reader.read(good)
    for i in range(10):
        reader.read(f"garbage-{i}")
        reader.read(raw_token({"sub": i}))
    assert list(reader._memo) == [good]


def test_stamp_claims_overwrites_given_stamps_and_copies() -> None:
    data = {"uep": 1, "gep": 1, "other": "x"}
    out = stamp_claims(data, Stamps(user_epoch=10, global_epoch=20), NAMES)
    assert out == {"uep": 10, "gep": 20, "other": "x"}
    assert data == {"uep": 1, "gep": 1, "other": "x"}
    assert stamp_claims(None, Stamps(1, 2), NAMES) == {"uep": 1, "gep": 2}
