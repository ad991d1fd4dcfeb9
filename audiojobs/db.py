"""Database engine, sessions and the declarative base: one schema for SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_sessionmakers: dict[str, sessionmaker[Session]] = {}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database keeps."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.timezone.utc)
        # SQLite keeps no zone: store naive UTC there.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")  # JSONB on PostgreSQL


class Base(DeclarativeBase):
    pass


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite would send its own BEGIN (deferred) only before the first write, so a transaction's
    # reads ran outside it and its writes acted on what they read earlier: two workers could both
    # start one stage, and the reaper re-dispatch a job whose stage was starting (issue 12). We send
    # BEGIN IMMEDIATE ourselves (see _sqlite_begin) and turn pysqlite's off.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while a worker writes; the busy timeout waits out short write locks.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    """Every SQLite transaction takes the write lock at its start, so read-then-write transactions
    (a stage's begin and end, the reaper's passes) run one after another, as FOR UPDATE makes them
    on PostgreSQL. Reads in autocommit (``read_session``) take no lock; in WAL mode they never wait."""
    if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(url: str) -> Engine:
    """One engine per database URL per process (created on first use, never at import)."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            parsed = make_url(url)
            kwargs: dict[str, Any] = {"future": True}
            if parsed.get_backend_name() == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
            else:
                kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=10, pool_recycle=1800)
            engine = sa.create_engine(url, **kwargs)
            if parsed.get_backend_name() == "sqlite":
                event.listen(engine, "connect", _sqlite_pragmas)
                event.listen(engine, "begin", _sqlite_begin)
            _engines[url] = engine
            _sessionmakers[url] = sessionmaker(bind=engine, expire_on_commit=False)
        return engine


def get_sessionmaker(url: str) -> sessionmaker[Session]:
    get_engine(url)
    return _sessionmakers[url]


_readers: dict[str, Engine] = {}


def read_session(url: str) -> Session:
    """A session for reads only, in autocommit mode: no BEGIN and COMMIT round trips around its
    queries (a status read is a handful of primary-key lookups). It must not write; close it."""
    reader = _readers.get(url)
    if reader is None:
        reader = _readers[url] = get_engine(url).execution_options(isolation_level="AUTOCOMMIT")
    return Session(bind=reader, expire_on_commit=False, autoflush=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits when the block ends normally and rolls back on any exception."""
    session = get_sessionmaker(url)()
    session.info["db_url"] = url  # whose changes jobs.events publishes, and where
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Drop pooled connections; a forked worker child must not share its parent's sockets."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)
        _readers.clear()
