"""Bulk inserts for large writes: rows as tuples, straight to the driver."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, func, insert, select

Row = tuple[Any, ...]
Insert = Callable[[Sequence[Row]], None]
# Values per statement: SQLite allows 32766 since 3.32 and 999 before.
SQLITE_MAX_PARAMS = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
SQLITE_MAX_ROWS = 1000  # rows per statement, so that one statement's text stays small


class BulkInserter:
    """Inserts rows given as tuples, with values converted only where a column type needs it.

    SQLite: rows go in multi-row INSERTs of up to SQLITE_MAX_PARAMS values. The driver lets go of
    the interpreter lock for every statement it steps, so one statement per row would hand the
    lock to the fetching threads and back about a hundred thousand times for 10k images.
    Elsewhere: each statement is compiled once and run through the driver's executemany.
    SQLAlchemy's per-row work would otherwise be most of a large sync's time.

    Measured against plain SQLAlchemy in syncs of 10k and 100k images (scripts/bench.py
    --sync): ids from ``insert().returning()`` instead of numbered by the writer made them
    10-17% slower, with the other rows through the driver's executemany 24-27%, and with
    every row through SQLAlchemy's executemany 17-46%.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._inserts: dict[tuple[str, tuple[str, ...]], Insert] = {}
        self._next_id: dict[str, int] = {}

    def _converter(self, table: Any, names: tuple[str, ...]) -> Callable[[Sequence[Row]], Any]:
        """rows -> rows with each value that its column's type converts, converted."""
        dialect = self.conn.dialect
        processors = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
        converted = [(i, f) for i, f in enumerate(processors) if f is not None]
        if not converted:
            return lambda rows: rows

        def convert(rows: Sequence[Row]) -> list[list[Any]]:
            out = []
            for row in rows:
                values = list(row)
                for i, f in converted:
                    values[i] = f(values[i])
                out.append(values)
            return out

        return convert

    def _sqlite_insert(self, table: Any, names: tuple[str, ...]) -> Insert:
        convert = self._converter(table, names)
        quote = self.conn.dialect.identifier_preparer.quote
        head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) VALUES "
        one = "(" + ", ".join("?" * len(names)) + ")"
        per = max(1, min(SQLITE_MAX_ROWS, SQLITE_MAX_PARAMS // len(names)))
        statements: dict[int, str] = {}
        flat = itertools.chain.from_iterable

        def statement(count: int) -> str:
            if count not in statements:
                statements[count] = head + ", ".join([one] * count)
            return statements[count]

        def run(rows: Sequence[Row]) -> None:
            values = convert(rows)
            whole = len(values) - len(values) % per
            if whole:
                chunks = [tuple(flat(values[i : i + per])) for i in range(0, whole, per)]
                self.conn.exec_driver_sql(statement(per), chunks)
            if whole < len(values):
                self.conn.exec_driver_sql(
                    statement(len(values) - whole), tuple(flat(values[whole:]))
                )

        return run

    def _compiled_insert(self, table: Any, names: tuple[str, ...]) -> Insert:
        convert = self._converter(table, names)
        dialect = self.conn.dialect
        compiled = insert(table).compile(dialect=dialect, column_keys=list(names))
        sql = str(compiled)
        # The compiled statement lists the columns in the table's order, not in ``names``'.
        order = [names.index(bind) for bind in compiled.positiontup or ()]
        shuffled = compiled.positional and order != sorted(order)
        reorder = itemgetter(*order) if shuffled else None

        def run(rows: Sequence[Row]) -> None:
            values = convert(rows)
            if not compiled.positional:
                params: Any = [dict(zip(names, row, strict=True)) for row in values]
            elif reorder is not None:
                params = [reorder(row) for row in values]
            else:
                params = values
            self.conn.exec_driver_sql(sql, params)

        return run

    def rows(self, table: Any, names: Sequence[str], rows: Sequence[Row]) -> None:
        """Insert rows, each a tuple of values for ``names``."""
        if not rows:
            return
        key = (table.name, tuple(names))
        run = self._inserts.get(key)
        if run is None:
            build = (
                self._sqlite_insert if self.conn.dialect.name == "sqlite" else self._compiled_insert
            )
            run = self._inserts[key] = build(table, key[1])
        run(rows)

    def returning_ids(self, table: Any, names: Sequence[str], rows: Sequence[Row]) -> list[int]:
        """Insert rows and give their new ids, in the rows' order.

        SQLite: the run's first insert took the database's only write lock, so the writer
        numbers the rows itself. PostgreSQL: other regions' syncs insert at the same time, so
        the server's sequence numbers them and RETURNING reports them.
        """
        if not rows:
            return []
        if self.conn.dialect.name != "sqlite":
            statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
            params = [dict(zip(names, row, strict=True)) for row in rows]
            return [row[0] for row in self.conn.execute(statement, params)]
        if table.name not in self._next_id:
            query = select(func.coalesce(func.max(table.c.id), 0))
            self._next_id[table.name] = self.conn.execute(query).scalar_one() + 1
        start = self._next_id[table.name]
        self._next_id[table.name] = start + len(rows)
        self.rows(table, ("id", *names), [(start + n, *row) for n, row in enumerate(rows)])
        return list(range(start, start + len(rows)))
