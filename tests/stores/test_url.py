"""Store URLs: the password found in a URL, which the CLI scrubs from the messages it prints."""

from __future__ import annotations

from typing import Optional

import pytest

from authx_epoch.stores.url import password_of, redact


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("redis://admin:hunter2@cache.internal:6379/0", "hunter2"),
        ("rediss://:hunter2@cache.internal", "hunter2"),
        ("redis+cluster://admin:hunter2@h1:7001,h2:7002", "hunter2"),
        ("unix://admin:hunter2@/run/redis.sock?db=0", "hunter2"),
        ("redis://admin:hun:ter2@cache.internal", "hun:ter2"),
        # Unencoded, as the driver reads it: up to the last "@".
        ("redis://admin:hunter@2@cache.internal", "hunter@2"),
        ("redis://admin@cache.internal", None),
        ("redis://admin:@cache.internal", None),
        ("redis://cache.internal:6379/0", None),
        ("sqlite:////tmp/authx-epoch.db", None),
        ("memory://", None),
        ("redis://[::1", None),  # does not parse
        ("not a url", None),
    ],
)
def test_the_password_is_found_where_the_driver_reads_it(url: str, password: Optional[str]) -> None:
    assert password_of(url) == password
    if password is not None:
        assert password not in redact(url)
