"""``sqlite:///PATH``: the embedded default. Durable, and shared by every worker process of one machine.

The file is opened in WAL mode, so checks (reads) never wait for a bump (write) of another
process. Writes are single atomic statements (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``),
so concurrent bumps from several processes never lose an increment. ``synchronous=FULL``: a bump
that has returned survives a power cut, because a lost bump would bring revoked tokens back.
Expired rows are ignored by every read and deleted a few at a time by writes (of any namespace:
an expired row is invisible to every reader, so no abandoned namespace keeps rows forever).

The package: ``store`` (``SqliteStore``, the contract's operations), ``file`` (``DatabaseFile``:
the connections to one file, reopened when it is replaced, forgotten after a fork), ``schema``
(the tables, the statements, rows to records and back, and the upgrade of older files: schema
version 2, see there) and ``snapshot`` (export and import of one namespace).
"""

from authx_epoch.stores.sqlite.schema import SCHEMA_VERSION
from authx_epoch.stores.sqlite.store import SqliteStore

__all__ = ["SCHEMA_VERSION", "SqliteStore"]
