"""Bulk inserts for large writes: compiled once per statement, executed by the driver."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, func, insert, select

Row = tuple[Any, ...]
Params = Callable[[Sequence[Row]], Any]  # rows -> what the driver's executemany takes


class BulkInserter:
    """Inserts rows given as tuples through the driver's executemany.

    Each statement is compiled once for the dialect, and values pass through the column types'
    own converters only where a type has one; SQLAlchemy's per-row work would otherwise be most
    of a large sync's time.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._statements: dict[tuple[str, tuple[str, ...]], tuple[str, Params]] = {}
        self._next_id: dict[str, int] = {}

    def _statement(self, table: Any, names: tuple[str, ...]) -> tuple[str, Params]:
        found = self._statements.get((table.name, names))
        if found is not None:
            return found
        dialect = self.conn.dialect
        compiled = insert(table).compile(dialect=dialect, column_keys=list(names))
        convert = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
        converted = [(i, f) for i, f in enumerate(convert) if f is not None]
        # The compiled statement lists the columns in the table's order, not in ``names``'.
        order = [names.index(bind) for bind in compiled.positiontup or ()]
        in_order = compiled.positional and order == list(range(len(names)))
        reorder = itemgetter(*order) if compiled.positional and len(order) > 1 else None

        def params(rows: Sequence[Row]) -> Any:
            if not converted and in_order:  # the driver takes the tuples as they are
                return rows
            out: list[Any] = []
            for row in rows:
                values = list(row)
                for i, f in converted:
                    values[i] = f(values[i])
                if in_order:
                    out.append(values)
                elif reorder is not None:
                    out.append(reorder(values))
                else:
                    out.append(dict(zip(names, values, strict=True)))
            return out

        found = self._statements[(table.name, names)] = (str(compiled), params)
        return found

    def rows(self, table: Any, names: Sequence[str], rows: Sequence[Row]) -> None:
        """Insert rows, each a tuple of values for ``names``."""
        if rows:
            sql, params = self._statement(table, tuple(names))
            self.conn.exec_driver_sql(sql, params(rows))

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
