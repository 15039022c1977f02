"""Tables of the pre-aggregated metric store (DESIGN.md §11): roaring bitmaps per UTC bucket.

A bucket is identified by its level and the UTC hour it starts at (hours since the epoch):
level 0 is one UTC hour, level 1 one UTC day, level 2 one UTC calendar month.
"""

from sqlalchemy import Column, Integer, LargeBinary, SmallInteger, Table

from reports.schema import metadata

HOUR, DAY, MONTH = 0, 1, 2
STORE_VERSION = 1

# Per (level, bucket, app): the appeals in it, how many of them are their client's first-ever
# appeal, and the serialized roaring bitmap of the internal ids of the clients who wrote.
rollup_clients = Table(
    "rollup_clients",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("bucket", Integer, primary_key=True, autoincrement=False),
    Column("app_id", Integer, primary_key=True, autoincrement=False),
    Column("appeals", Integer, nullable=False),
    Column("firsts", Integer, nullable=False),
    Column("clients", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

# Per (level, bucket): the clients whose first-ever appeal (any app) lies in the bucket.
rollup_first = Table(
    "rollup_first",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("bucket", Integer, primary_key=True, autoincrement=False),
    Column("clients", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

# One row while the store is complete; without it reports use the plain SQL.
rollup_state = Table(
    "rollup_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
)
