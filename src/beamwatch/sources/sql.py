"""SQL databases as a polled source: MariaDB/MySQL (pymysql), PostgreSQL (psycopg), SQLite.

    sources:
      ispyb: {kind: sql, url: "mysql+pymysql://reader@ispyb/ispyb", password_file: ispyb.pw}
    checks:
      - {id: queue, source: ispyb, query: "SELECT count(*) FROM queue", above: {minor: 50}}

A check's value is the first column of the first row, or its `column:`.

Read-only three times over: the config refuses anything but one SELECT/WITH
(`config.schema.read_only_problem`), every poll runs in a read-only
transaction that is rolled back, and under a statement timeout that the
*server* enforces, so a hanging query is cancelled there rather than left
running on a connection we abandoned.

Each source has its own pooled engine (pre-ping: a database that restarted is
reconnected on the next poll) and its own worker threads, as many as it has
connections: a slow database holds up its own checks, never the event loop nor
another source's blocking work.

The URL is a secret (it may hold a password); the password from `password:`
is put into the URL object, never into a string. Errors say what went wrong
with the driver's own one-line message, scrubbed of the password, never the SQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..clock import Clock
from ..config.schema import CheckConfig, Config, SourceConfig
from .base import SourceUnavailable
from .polled import PolledSource, ReadError, Reading

log = logging.getLogger("beamwatch.sources.sql")

# Outer backstop beyond the server's statement timeout: the server should answer
# first (with its own "cancelled" error), this only catches a dead network.
BACKSTOP = 5.0


class SqlSource(PolledSource):
    kind = "sql"

    def __init__(self, name: str, config: Config, clock: Clock | None = None):
        self._engine: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._settings: SourceConfig | None = None
        super().__init__(name, config, clock)

    # -- configuration -----------------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        settings = config.sources.get(self.name)
        if settings is None or settings.kind != "sql":
            raise SourceUnavailable(f"source '{self.name}' is not a sql source")
        if self._settings is not None and _connection_of(settings) != _connection_of(
                self._settings):
            self._dispose()  # a new URL, password or pool size: a new engine, lazily
        self._settings = settings
        super().reconfigure(config)

    @property
    def settings(self) -> SourceConfig:
        assert self._settings is not None
        return self._settings

    def statement_timeout(self, check: CheckConfig) -> float:
        return check.timeout if check.timeout is not None else self.settings.timeout

    def timeout_of(self, check: CheckConfig) -> float:
        return self.statement_timeout(check) + BACKSTOP

    # -- life cycle --------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self._ensure_engine()
        except SourceUnavailable as e:  # each poll says so, as a disconnected sample
            log.warning("sql source %s: %s", self.name, e)

    async def close(self) -> None:
        self._dispose()

    def _ensure_engine(self) -> Any:
        if self._engine is None:
            self._engine = make_engine(self.settings)
            self._executor = ThreadPoolExecutor(self.settings.max_connections,
                                                thread_name_prefix=f"sql-{self.name}")
        return self._engine

    def _dispose(self) -> None:
        engine, executor = self._engine, self._executor
        self._engine = self._executor = None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if engine is not None:
            engine.dispose(close=True)

    # -- one poll ----------------------------------------------------------------------

    async def read(self, check: CheckConfig) -> Reading:
        try:
            engine = self._ensure_engine()
        except SourceUnavailable as e:
            raise ReadError(str(e)) from None
        loop = asyncio.get_running_loop()
        value = await loop.run_in_executor(
            self._executor, run_query, engine, check.query or "", check.column,
            self.statement_timeout(check), self._secret_words())
        return Reading(value, server=f"sql:{self.name}")

    def _secret_words(self) -> list[str]:
        words = [self.settings.password.get()] if self.settings.password else []
        url = self.settings.url.get() if self.settings.url else ""
        try:
            from sqlalchemy.engine import make_url

            words.append(str(make_url(url).password or ""))
        except Exception:  # an unparsable URL is reported when the engine is made
            pass
        return [w for w in words if w]


def _connection_of(settings: SourceConfig) -> tuple:
    return (settings.url, settings.password, settings.max_connections, settings.timeout)


# --- the engine ---------------------------------------------------------------------------


def make_engine(settings: SourceConfig) -> Any:
    """A pooled engine for one source; the password goes into the URL object only."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(settings.url.get() if settings.url else "")
    except ArgumentError:
        # the message would quote the URL, password and all
        raise SourceUnavailable("url: not a database URL (e.g. mysql+pymysql://user@host/db, "
                                "postgresql+psycopg://user@host/db, sqlite:///path)") from None
    if settings.password:
        url = url.set(password=settings.password.get())
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    pool: dict[str, Any] = {"pool_size": settings.max_connections, "max_overflow": 0,
                            "pool_timeout": settings.timeout, "pool_recycle": 3600}
    if backend == "sqlite":
        connect_args = {"check_same_thread": False, "timeout": settings.timeout}
    elif backend == "postgresql":
        connect_args = {"connect_timeout": max(1, round(settings.timeout))}
    elif backend in ("mysql", "mariadb"):
        connect_args = {"connect_timeout": max(1, round(settings.timeout))}
    else:
        raise SourceUnavailable(f"url: database '{backend}' is not supported "
                                "(mysql/mariadb, postgresql, sqlite)")
    try:
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, **pool)
    except (NoSuchModuleError, ImportError) as e:
        driver = url.get_driver_name()
        raise SourceUnavailable(f"url: the {backend} driver '{driver}' is not installed "
                                f"({type(e).__name__})") from None
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_read_only)
    return engine


def _sqlite_read_only(dbapi_conn: Any, _record: Any) -> None:
    # SQLite has no read-only transaction; query_only refuses every write on the connection
    dbapi_conn.execute("PRAGMA query_only = ON")


# --- running one query (in a worker thread) -------------------------------------------------


def run_query(engine: Any, query: str, column: str | None, timeout: float,
              secrets: list[str]) -> Any:
    """The value of one read-only query, or ReadError with a one-line reason."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    try:
        conn = engine.connect()
    except DBAPIError as e:
        raise ReadError(f"cannot connect: {_scrub(_driver_message(e), secrets)}") from None
    except SQLAlchemyError as e:  # e.g. the pool stayed exhausted for the whole timeout
        raise ReadError(f"cannot connect: {_scrub(str(e).splitlines()[0], secrets)}") from None
    try:
        with conn:
            return _read_only_query(conn, query, column, timeout)
    except DBAPIError as e:
        raise ReadError(_explain(e, timeout, secrets)) from None


def _read_only_query(conn: Any, query: str, column: str | None, timeout: float) -> Any:
    statement = query.strip().rstrip(";").strip()
    backend = conn.dialect.name
    once = {"no_parameters": True}  # the query is sent as written: no bind-parameter parsing
    try:
        if backend == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY", execution_options=once)
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}",
                                 execution_options=once)
            result = conn.exec_driver_sql(statement, execution_options=once)
        elif backend in ("mysql", "mariadb"):
            conn.exec_driver_sql("START TRANSACTION READ ONLY", execution_options=once)
            result = conn.exec_driver_sql(_mysql_timed(conn, statement, timeout),
                                          execution_options=once)
        else:
            result = _sqlite_timed(conn, statement, timeout, once)
        return _value_of(result, column)
    finally:
        conn.rollback()  # never commit: nothing of ours is ever kept


def _mysql_timed(conn: Any, statement: str, timeout: float) -> str:
    """MariaDB: SET STATEMENT max_statement_time (s) FOR; MySQL: the optimizer hint
    MAX_EXECUTION_TIME (ms), which it honours for SELECT."""
    if getattr(conn.dialect, "is_mariadb", False):
        return f"SET STATEMENT max_statement_time={timeout:.3f} FOR {statement}"
    words = statement.split(None, 1)
    if words[0].upper() == "SELECT" and len(words) == 2:
        return f"SELECT /*+ MAX_EXECUTION_TIME({max(1, int(timeout * 1000))}) */ {words[1]}"
    return statement


def _sqlite_timed(conn: Any, statement: str, timeout: float, once: dict) -> Any:
    """SQLite runs in our thread: a progress handler aborts the statement at its deadline
    (sqlite3 raises OperationalError 'interrupted')."""
    raw = conn.connection.driver_connection
    deadline = time.monotonic() + timeout
    raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
    try:
        result = conn.exec_driver_sql(statement, execution_options=once)
        return _Buffered(result.keys(), result.first())
    finally:
        raw.set_progress_handler(None, 0)


class _Buffered:
    """The first row, fetched while the progress handler still guards the statement."""

    def __init__(self, keys: Any, row: Any):
        self._keys, self._row = keys, row

    def keys(self) -> Any:
        return self._keys

    def first(self) -> Any:
        return self._row


def _value_of(result: Any, column: str | None) -> Any:
    keys = list(result.keys())
    row = result.first()
    if column is not None and column not in keys:
        raise ReadError(f"no column '{column}' in the result (columns: {', '.join(keys)})")
    if row is None:
        raise ReadError("no row: the query returned nothing")
    return _plain(row[keys.index(column)] if column is not None else row[0])


def _plain(value: Any) -> Any:
    """A value the checks and `status --json` understand."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return value


# --- errors, in words ----------------------------------------------------------------------

_TIMEOUT_CODES = {1969, 3024, 1317}  # MariaDB max_statement_time, MySQL, "interrupted"
_PERMISSION_CODES = {1044, 1045, 1142, 1143, 1227}
_READ_ONLY_CODES = {1792}


def _explain(e: Any, timeout: float, secrets: list[str]) -> str:
    orig = getattr(e, "orig", None)
    message = _scrub(_driver_message(e), secrets)
    state = getattr(orig, "sqlstate", None)
    code = orig.args[0] if orig is not None and orig.args and isinstance(orig.args[0], int) \
        else None
    if state == "57014" or code in _TIMEOUT_CODES or message == "interrupted":
        return f"query cancelled after {timeout:g} s (statement timeout)"
    if state == "42501" or code in _PERMISSION_CODES:
        return f"permission denied: {message}"
    if state == "25006" or code in _READ_ONLY_CODES or "readonly database" in message:
        return f"refused in a read-only transaction: {message}"
    if e.connection_invalidated or (state or "").startswith("08") or code in (2006, 2013):
        return f"connection lost: {message}"
    return f"query failed: {message}"


def _driver_message(e: Any) -> str:
    """The driver's own message, first line, without SQLAlchemy's [SQL: …] dump."""
    orig = getattr(e, "orig", None)
    if orig is None:
        text = str(e)
    elif getattr(orig, "diag", None) is not None and orig.diag.message_primary:
        text = orig.diag.message_primary  # psycopg
    elif len(getattr(orig, "args", ())) == 2 and isinstance(orig.args[0], int):
        text = str(orig.args[1])  # pymysql: (code, message)
    else:
        text = str(orig)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(orig or e).__name__)[:300]


def _scrub(text: str, secrets: list[str]) -> str:
    for word in secrets:
        text = text.replace(word, "***")
    return text
