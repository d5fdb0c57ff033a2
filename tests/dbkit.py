"""Catalog databases under test, on SQLite or PostgreSQL, and a dump that compares on both."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from catalog.config import parse_target
from catalog.parse import times
from catalog.store import db


def plain(value: Any) -> Any:
    """A value as SQLite hands it back: timestamps as text, booleans as 0 and 1."""
    if isinstance(value, datetime):
        return times.stored(value)  # as SQLite files hold it
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


@dataclass
class CatalogDb:
    """One database: ``target`` is what --db takes (a file path, or a server URL)."""

    target: str

    @classmethod
    def file(cls, path: Path) -> CatalogDb:
        """An SQLite file, whatever the backend under test."""
        return cls(str(path))

    @property
    def backend(self) -> str:
        """ "sqlite", or the server's kind: "postgresql"."""
        return "sqlite" if self.path is not None else make_url(self.target).get_backend_name()

    @property
    def path(self) -> Path | None:
        """The file, on SQLite."""
        return parse_target(self.target).path

    @property
    def display(self) -> str:
        """How pai-catalog names this database in its messages."""
        return parse_target(self.target).display

    @cached_property
    def engine(self) -> Engine:
        if self.path is not None:  # a file that does not exist yet: its folder, at least
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # No pool: nothing stays connected between calls, as with sqlite3.connect().close(),
        # so a server database can be copied or dropped whenever the test is done with it.
        return create_engine(parse_target(self.target).url, poolclass=NullPool)

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(plain(v) for v in row) for row in conn.execute(text(sql), params or {})]

    def dicts(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            result = conn.execute(text(sql), params or {})
            return [{k: plain(v) for k, v in row._mapping.items()} for row in result]

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def execute(self, *statements: str) -> None:
        """Run writes in one transaction, as another program editing the catalog would."""
        with self.engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
            del self.__dict__["engine"]


def dump(catalog: CatalogDb, skip: tuple[str, ...] = ()) -> list[str]:
    """Every row of every table but ``skip``, one line each, sorted: equal dumps mean equal
    tables. Values are shown as SQLite returns them, so the lines read alike on both backends."""
    lines: list[str] = []
    with catalog.engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            if table in skip:
                continue
            # The name comes from the database's own catalog, not from input.
            result = conn.execute(text(f'SELECT * FROM "{table}"'))
            lines += sorted(
                f"{table} "
                + ", ".join(f"{k}={plain(v)!r}" for k, v in sorted(row._mapping.items()))
                for row in result
            )
    catalog.close()
    return lines


def _fields(row: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={plain(value)!r}" for name, value in sorted(row.items()))


def sqlite_dump(path: Path) -> list[str]:
    """The SQL text of an SQLite file, schema included, for tests of the file itself.

    The connection may write: a sync killed mid-write leaves a WAL that only such a connection
    can recover, as any later reader would."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@dataclass
class Databases:
    """Makes catalog databases on the backend under test: SQLite files, or databases on the
    PostgreSQL server named by ``admin``, each copied from one migrated once per session."""

    admin: str | None
    _made: list[str] = field(default_factory=list)
    _template: str | None = None

    @property
    def backend(self) -> str:
        return "sqlite" if self.admin is None else "postgresql"

    def empty(self, folder: Path) -> CatalogDb:
        """A database with nothing in it; on SQLite, a file that does not exist yet."""
        if self.admin is None:
            return CatalogDb.file(folder / "new" / "catalog.db")
        return self._create()

    def migrated(self, folder: Path) -> CatalogDb:
        """An empty catalog at migration head."""
        if self.admin is None:
            return migrated_file(folder / "catalog.db")
        if self._template is None:
            template = self._create()
            upgrade(template)
            template.close()
            self._template = template.target
        return self.copy(CatalogDb(self._template), folder)

    def copy(self, source: CatalogDb, folder: Path) -> CatalogDb:
        """A copy of ``source``, which nothing may be connected to meanwhile."""
        source.close()
        if source.path is not None:
            out = folder / "catalog.db"
            shutil.copyfile(source.path, out)
            return CatalogDb.file(out)
        return self._create(template=make_url(source.target).database)

    def _create(self, template: str | None = None) -> CatalogDb:
        assert self.admin is not None
        name = "pai_test_" + uuid.uuid4().hex[:16]
        clause = f' TEMPLATE "{template}"' if template else ""
        self._admin(f'CREATE DATABASE "{name}"{clause}')
        self._made.append(name)
        url = make_url(self.admin).set(database=name).render_as_string(hide_password=False)
        return CatalogDb(url)

    def drop(self, catalog: CatalogDb) -> None:
        catalog.close()
        if catalog.path is None:
            name = make_url(catalog.target).database
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if name in self._made:
                self._made.remove(name)

    def close(self) -> None:
        for name in list(self._made):
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._made.clear()

    def _admin(self, statement: str) -> None:
        assert self.admin is not None
        engine = create_engine(self.admin, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(text(statement))
        finally:
            engine.dispose()


def upgrade(catalog: CatalogDb) -> None:
    target = parse_target(catalog.target)
    engine = db.make_engine(target)
    try:
        db.upgrade(engine, target)
    finally:
        engine.dispose()


def migrated_file(path: Path) -> CatalogDb:
    """An SQLite catalog file at migration head."""
    catalog = CatalogDb.file(path)
    upgrade(catalog)
    return catalog
