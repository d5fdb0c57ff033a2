"""A server catalog copied into a new SQLite file: the same migrations, every row, ids kept."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, select

from catalog import db
from catalog.config import DbTarget, parse_target
from catalog.errors import DatabaseError, first_line
from catalog.models import Base

BATCH = 5000  # rows read and written at a time: memory stays flat however large the catalog


def copy_to_sqlite(source: DbTarget, path: Path) -> None:
    """Build ``path`` (empty or absent) by running the migrations to head, then copy every
    table of ``source`` into it from one consistent snapshot, in primary-key order.

    The result is the file an SQLite catalog with the same history holds: same schema and
    revision (the migrations wrote them), same rows and ids (copied). The caller checks the
    source is at head first.
    """
    target = parse_target(str(path))
    reading_engine, writing_engine = db.make_engine(source), db.make_engine(target)
    try:
        db.upgrade(writing_engine, target)
        with reading_engine.connect() as reading, writing_engine.begin() as writing:
            # The transaction's first statement: every table is read as of one moment, so a
            # sync committing meanwhile is either wholly in the copy or not at all.
            reading.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            streaming = reading.execution_options(yield_per=BATCH)
            for table in Base.metadata.sorted_tables:  # parents before the rows that refer to them
                rows = streaming.execute(select(table).order_by(*table.primary_key.columns))
                for batch in rows.partitions():
                    writing.execute(insert(table), [row._asdict() for row in batch])
    except sa_exc.SQLAlchemyError as exc:
        raise DatabaseError(
            f"Cannot copy {source.display} into {path}: {first_line(exc)}."
        ) from None
    finally:
        reading_engine.dispose()
        writing_engine.dispose()
