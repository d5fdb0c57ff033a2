"""sql cannot write, reach the server's files, run forever or fill the disk (issue 13)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from catalog.cli.main import main
from catalog.config import parse_target
from catalog.errors import CatalogError, QueryError, UsageError
from catalog.read.sql import MAX_TIMEOUT, SQL_TIMEOUT, execute, run_sql
from catalog.sync.run import import_files
from tests.dbkit import CatalogDb, dump
from tests.test_query import beijing, hangzhou
from tests.test_readonly import read_only_command

# What a role that can only read is given: the lines `sql`'s refusal of a superuser suggests.
READER = (
    "GRANT CONNECT ON DATABASE {database} TO {role}",
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
)
# A role that may write the catalog, as a sync's role may: only the transaction stops it.
WRITER = (
    *READER,
    "GRANT INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO {role}",
)
FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"
CLI = [sys.executable, "-m", "catalog", "--db"]


@contextmanager
def pg_role(url: str, *grants: str, options: str = "") -> Iterator[str]:
    """A new login role on the database of ``url`` (a superuser's URL), given ``grants``
    ({role} and {database} filled in); yields the URL that connects as it. Roles belong to the
    whole cluster: each has a name of its own and is dropped afterwards."""
    role, database = f"pai_test_{uuid.uuid4().hex[:12]}", make_url(url).database
    admin = CatalogDb(url)
    names = {"role": f'"{role}"', "database": f'"{database}"'}
    admin.execute(f'CREATE ROLE "{role}" LOGIN {options}', *(g.format(**names) for g in grants))
    try:
        yield make_url(url).set(username=role).render_as_string(hide_password=False)
    finally:
        admin.execute(f'DROP OWNED BY "{role}"', f'DROP ROLE "{role}"')
        admin.close()


@pytest.fixture
def catalog_sql(catalog_db: CatalogDb, write_listing: Callable[..., Path]) -> Iterator[str]:
    """A filled catalog on the backend under test, as ``sql`` reaches it: the file, or a role
    that can only read."""
    import_files([write_listing(hangzhou())], "cn-hangzhou", db_option=catalog_db.target)
    import_files([write_listing(beijing())], "cn-beijing", db_option=catalog_db.target)
    if catalog_db.path is not None:
        yield catalog_db.target
        return
    with pg_role(catalog_db.target, *READER) as url:
        yield url


@pytest.fixture
def pg_catalog(pg_url: str, write_listing: Callable[..., Path]) -> str:
    """A filled catalog on PostgreSQL (skipped without one); the URL is a superuser's."""
    import_files([write_listing(hangzhou())], "cn-hangzhou", db_option=pg_url)
    import_files([write_listing(beijing())], "cn-beijing", db_option=pg_url)
    return pg_url


@pytest.fixture
def server_folder() -> Iterator[Path]:
    """An empty folder the database server could write to, were it asked."""
    folder = Path(tempfile.mkdtemp(prefix="pai-sql-guard-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def timed_out(seconds: float) -> str:
    return (
        f"The query ran past its {seconds:g}-second timeout and was stopped; narrow it, "
        "or give --timeout SECONDS (0 for none)."
    )


def refused_role(role: str, why: str, database: str) -> str:
    return (
        f"The sql command does not run as {role} ({why}), whose statements reach past "
        "reading the catalog; connect as a role that can only read: CREATE ROLE catalog_reader "
        f"LOGIN PASSWORD '...'; GRANT CONNECT ON DATABASE {database} TO catalog_reader; "
        "GRANT USAGE ON SCHEMA public TO catalog_reader; GRANT SELECT ON ALL TABLES IN SCHEMA "
        "public TO catalog_reader."
    )


# --- statements ---------------------------------------------------------------------------------


def test_upper_case_pragmas_read_as_lower_case_ones(sqlite_path: Path) -> None:
    db = str(sqlite_path)
    lower = list(run_sql("PRAGMA table_info(image)", db=db).rows)
    assert lower and list(run_sql("PRAGMA TABLE_INFO(image)", db=db).rows) == lower
    assert list(run_sql("pragma Table_Info('image')", db=db).rows) == lower
    with pytest.raises(UsageError) as caught:
        run_sql("PRAGMA WRITABLE_SCHEMA = 1", db=db)
    assert str(caught.value) == "The sql command only reads: PRAGMA writable_schema is not allowed."


@pytest.mark.parametrize(
    ("statement", "errors"),
    [
        (
            "SELEC 1",
            {
                "sqlite": 'Error: SQL error: near "SELEC": syntax error.',
                "postgresql": 'Error: SQL error: syntax error at or near "SELEC".',
            },
        ),
        (
            "SELECT * FROM nowhere",
            {
                "sqlite": "Error: SQL error: no such table: nowhere.",
                "postgresql": 'Error: SQL error: relation "nowhere" does not exist.',
            },
        ),
    ],
)
def test_a_failing_statement_exits_1_in_the_databases_words(
    catalog_sql: str, statement: str, errors: dict[str, str]
) -> None:
    result = CliRunner().invoke(main, ["--db", catalog_sql, "sql", statement])
    backend = "sqlite" if parse_target(catalog_sql).path else "postgresql"
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", errors[backend] + "\n")


def test_the_cli_timeout_default_is_the_librarys() -> None:
    [timeout] = [p for p in main.commands["sql"].params if p.name == "timeout"]
    assert timeout.default == SQL_TIMEOUT
    assert timeout.type.max == MAX_TIMEOUT  # type: ignore[attr-defined]


@pytest.mark.parametrize("given", ["nan", "inf", "1e9", "-1"])
def test_a_timeout_out_of_bounds_is_refused(sqlite_path: Path, given: str) -> None:
    """NaN passed every comparison and reached PostgreSQL's statement_timeout as garbage."""
    result = CliRunner().invoke(
        main, ["--db", str(sqlite_path), "sql", "SELECT 1", "--timeout", given]
    )
    assert result.exit_code == 2 and result.stdout == ""
    assert "timeout" in result.stderr.lower() and "Traceback" not in result.stderr
    with pytest.raises(UsageError) as caught:
        run_sql("SELECT 1", db=str(sqlite_path), timeout=float(given))
    assert str(caught.value) == (
        f"The timeout must be from 0 to 86400 seconds (0 for none), not {float(given):g}."
    )


def test_numeric_nan_and_infinity_come_out_as_floats_and_valid_json(pg_catalog: str) -> None:
    statement = "SELECT 'NaN'::numeric AS n, '-Infinity'::numeric AS i, 1.5::numeric AS d"
    with pg_role(pg_catalog, *READER) as url:
        [(nan, inf, half)] = list(run_sql(statement, db=url).rows)
        result = CliRunner().invoke(main, ["--db", url, "sql", statement, "--format", "json"])
    assert math.isnan(nan) and inf == -math.inf and half == 1.5
    assert result.exit_code == 0, result.stderr

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    assert json.loads(result.stdout, parse_constant=refuse) == [
        {"n": "NaN", "i": "-Infinity", "d": 1.5}
    ]


def test_repeated_column_names_keep_every_value(sqlite_path: Path) -> None:
    """SELECT 1 AS a, 2 AS a printed {"a": 2}: the first value was lost."""
    statement = "SELECT 1 AS a, 2 AS a, 3 AS a_2, 4 AS a"
    result = CliRunner().invoke(
        main, ["--db", str(sqlite_path), "sql", statement, "--format", "json"]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [{"a": 1, "a_3": 2, "a_2": 3, "a_4": 4}]


@pytest.mark.parametrize(
    ("fmt", "where", "expected"),
    [
        ("csv", "", '"a\nb","x,y"\n1,2\n'),  # CSV quotes a line break; it is no terminal
        ("csv", " WHERE 0", '"a\nb","x,y"\n'),  # no rows: the header was joined unquoted
        ("table", "", "a\\nb  x,y\n----  ---\n1     2\n"),
    ],
)
def test_column_names_are_escaped_like_values(
    sqlite_path: Path, fmt: str, where: str, expected: str
) -> None:
    """A column name is text the statement chose: a control character in it reached the
    terminal raw, and a CSV header of no rows with a comma in a name broke the file."""
    statement = "SELECT 1 AS [a\nb], 2 AS [x,y]" + where
    result = CliRunner().invoke(main, ["--db", str(sqlite_path), "sql", statement, "--format", fmt])
    assert (result.exit_code, result.stdout) == (0, expected), result.stderr


# --- time -------------------------------------------------------------------------------------


def test_a_query_that_never_ends_stops_at_its_timeout(catalog_sql: str, hang_guard: Any) -> None:
    with hang_guard(60), pytest.raises(QueryError) as caught:
        list(run_sql(FOREVER, db=catalog_sql, timeout=0.5).rows)
    assert str(caught.value) == timed_out(0.5)  # the statement's own limit, named


def test_the_timeout_covers_fetching_the_rows(catalog_sql: str, hang_guard: Any) -> None:
    first, fetched = None, 0
    with hang_guard(60), pytest.raises(QueryError) as caught:
        for (x,) in run_sql(ENDLESS, db=catalog_sql, timeout=1).rows:
            first, fetched = first or x, fetched + 1
            assert x == fetched  # in order, none lost
    assert str(caught.value) == timed_out(1)
    # The statement never ends, so rows read before its timeout came while it ran: none
    # would have, had the rows been gathered before the first was given.
    assert first == 1 and fetched > 0


def test_the_cli_timeout_is_one_line_and_exit_1(catalog_sql: str) -> None:
    done = subprocess.run(
        [*CLI, catalog_sql, "sql", FOREVER, "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (1, "", f"Error: {timed_out(1)}\n")


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"no {what} after {seconds} s"
        time.sleep(0.05)


STOPPED = {
    signal.SIGINT: "Error: Interrupted (SIGINT); nothing was left half-written.\n",
    signal.SIGTERM: "Error: Terminated (SIGTERM); nothing was left half-written.\n",
}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see open files")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_stop_an_sqlite_query_at_once(
    sqlite_path: Path, signum: signal.Signals
) -> None:
    """Without a progress handler, SQLite never gave Python a chance to see the signal."""
    path = sqlite_path.resolve()
    proc = subprocess.Popen(
        [*CLI, str(sqlite_path), "sql", FOREVER, "--timeout", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fds = Path(f"/proc/{proc.pid}/fd")

        def opened() -> bool:
            assert proc.poll() is None, proc.communicate()
            return any(Path(os.path.realpath(fd)) == path for fd in list(fds.iterdir()))

        wait_for(opened, 20, "open catalog")
        # The statement follows the open within milliseconds and shows nothing outside, so a
        # margin; a signal that came before it would be seen and leave this test passing.
        time.sleep(0.3)
        proc.send_signal(signum)
        # The query never ends: without the progress handler, the signal is never seen.
        out, err = proc.communicate(timeout=10)
        assert (proc.returncode, out, err) == (1, "", STOPPED[signum])
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "kill"]
)
def test_a_stopped_client_stops_its_query_on_the_server(
    pg_catalog: str, signum: signal.Signals
) -> None:
    """SIGTERM killed the client and left the query running; so did SIGKILL, until the server
    checks the client's connection while the query runs (client_connection_check_interval)."""
    marker = f"sql-guard-{uuid.uuid4().hex}"
    plain = make_url(pg_catalog).set(drivername="postgresql").render_as_string(False)
    running = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s"
    with psycopg.connect(plain, autocommit=True) as admin, pg_role(pg_catalog, *READER) as url:

        def active() -> int:
            return int(admin.execute(running, (f"%{marker}%",)).fetchone()[0])

        proc = subprocess.Popen(
            [*CLI, url, "sql", f"SELECT pg_sleep(60) -- {marker}", "--timeout", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: proc.poll() is None and active() == 1, 20, "running query")
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=10)
            if signum == signal.SIGKILL:
                assert proc.returncode == -signal.SIGKILL
            else:
                assert (proc.returncode, out, err) == (1, "", STOPPED[signum])
            wait_for(lambda: active() == 0, 5, "end of the query on the server")
        finally:
            proc.kill()
            proc.wait()


def test_set_config_cannot_lift_the_timeout(pg_catalog: str) -> None:
    sleep = "SELECT set_config('statement_timeout', '0', false), pg_sleep(10)"
    with pg_role(pg_catalog, *READER) as url, pytest.raises(QueryError) as caught:
        list(run_sql(sleep, db=url, timeout=0.5).rows)
    # Lifted, the sleep would end after 10 s and return its row: no error.
    assert str(caught.value) == timed_out(0.5)


# --- memory and disk --------------------------------------------------------------------------

BOUNDED = """
import json, resource, signal, sqlite3, sys
# Any write to a file fails from here on (pipes are not files): a temporary file is an error.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
from catalog.read.sql import run_sql
from catalog.errors import QueryError

db, rows, limit, control = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
sort = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT :n) "
    "SELECT x, hex(randomblob(64)) AS b FROM c ORDER BY b"
)
out = {}
try:  # the control: SQLite's own default spills a sort this big to a temporary file
    if control:  # not where the peak memory is measured: what it holds would count
        sqlite3.connect(db).execute(sort, {"n": rows}).fetchone()
        out["plain"] = "sorted"
except sqlite3.Error as exc:
    out["plain"] = str(exc)
try:
    result = run_sql(sort, {"n": str(rows)}, db=db, max_memory=limit)
    out["sql"] = "sorted" if next(result.rows) else "empty"
except QueryError as exc:
    out["sql"] = str(exc)
# This process's own peak: ru_maxrss would count the test runner's size before exec too.
with open("/proc/self/status") as status:
    peak = next(line for line in status if line.startswith("VmHWM:"))
out["peak_mib"] = int(peak.split()[1]) // 1024
print(json.dumps(out))
"""


def bounded_sort(
    db: Path, rows: int, limit_mib: int, tmp: Path, control: bool = False
) -> dict[str, Any]:
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "SQLITE_TMPDIR": str(tmp), "TMPDIR": str(tmp)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            BOUNDED,
            str(db),
            str(rows),
            str(limit_mib << 20),
            str(int(control)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert os.listdir(tmp) == []
    return dict(json.loads(done.stdout))


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and /proc/self/status: Linux")
def test_sorts_stay_in_bounded_memory_and_off_the_disk(sqlite_path: Path, tmp_path: Path) -> None:
    db = sqlite_path
    # 200,000 rows of 140 bytes: more than SQLite sorts in memory by default, within 64 MiB.
    small = bounded_sort(db, 200_000, 64, tmp_path / "tmp", control=True)
    assert small["plain"] != "sorted"  # it would have written a temporary file
    assert small["sql"] == "sorted"
    # Ten times as many need far more than 32 MiB: stopped, with the memory left bounded.
    big = bounded_sort(db, 2_000_000, 32, tmp_path / "tmp")
    assert big["sql"] == (
        "The query needed more than 32 MiB of memory for sorting and temporary results; "
        "narrow it with WHERE or LIMIT."
    )
    assert big["peak_mib"] < 32 + 120  # the interpreter and the catalog's modules, roughly


# --- PostgreSQL: the statement runs alone, in a transaction it cannot end ---------------------

# Each hides a second statement from a reader that knows only SQLite's strings and comments.
TAIL = "; COMMIT ; DELETE FROM image_label ; SELECT ''"
FOUR, THREE = "Give one statement; this has 4.", "Give one statement; this has 3."
NOT_ALLOWED = "The sql command only reads: {} is not allowed."
PAYLOADS = [
    (f"SELECT E'\\'' {TAIL}", FOUR),
    (f"SELECT $$'$$ {TAIL}", FOUR),
    (f"SELECT $q$'$q$ {TAIL}", FOUR),
    (f"SELECT e'\\\\' {TAIL}", FOUR),
    (f"SELECT U&'\\0027' {TAIL}", FOUR),
    ("SELECT U&'!0027' UESCAPE '!' ; COMMIT ; DELETE FROM image_label", THREE),
    (f"SELECT '\\' {TAIL}", FOUR),
    (f"SELECT 1 -- it's\n{TAIL}", FOUR),
    (f"SELECT 1 -- it's\r{TAIL}", FOUR),  # to PostgreSQL a carriage return ends it too
    (f"SELECT 1 /* it's */ {TAIL}", FOUR),
    # Block comments nest: to PostgreSQL the ' below is inside the comment.
    ("SELECT 1 /* /* */ ' */ ; COMMIT ; DELETE FROM image_label ; SELECT '' -- '", FOUR),
    ('SELECT 1 AS "it\'s" ; COMMIT ; DELETE FROM image_label', THREE),
    ("COMMIT", NOT_ALLOWED.format("COMMIT")),
    ("/* BEGIN */ ROLLBACK", NOT_ALLOWED.format("ROLLBACK")),
    ("PREPARE TRANSACTION 'kept'", NOT_ALLOWED.format("PREPARE")),
    ("DELETE FROM image_label", NOT_ALLOWED.format("DELETE")),
    (
        "DO $$BEGIN COMMIT; DELETE FROM image_label; END$$",
        "SQL error: invalid transaction termination.",
    ),
    (
        "SELECT set_config('transaction_read_only', 'off', false)",
        "SQL error: transaction read-write mode must be set before any query.",
    ),
    ("COPY (SELECT 1) TO PROGRAM 'touch {folder}/program'", NOT_ALLOWED.format("COPY")),
    ("/* /* */ */ copy image_label TO '{folder}/labels.csv'", NOT_ALLOWED.format("COPY")),
    (
        "SELECT pg_read_file('/etc/hostname')",
        "SQL error: permission denied for function pg_read_file.",
    ),
    (
        "SELECT lo_export(1, '{folder}/object')",
        "SQL error: permission denied for function lo_export.",
    ),
]


@pytest.mark.parametrize("grants", [READER, WRITER], ids=["reader", "writer"])
def test_no_payload_changes_a_row_or_writes_a_file(
    pg_catalog: str, server_folder: Path, grants: tuple[str, ...]
) -> None:
    before = dump(CatalogDb(pg_catalog))
    assert any(line.startswith("image_label ") for line in before)
    failures = []
    with pg_role(pg_catalog, *grants) as url:
        # A role that may write is refused whatever it sends, past the checks of the text.
        writer = refused_role(
            str(make_url(url).username),
            "a role that can write the catalog",
            str(make_url(url).database),
        )
        for payload, message in PAYLOADS:
            try:
                rows = list(run_sql(payload.format(folder=server_folder), db=url).rows)
                failures.append(f"{payload!r} ran: {rows}")
            except CatalogError as exc:
                if str(exc) != message and not (grants is WRITER and str(exc) == writer):
                    failures.append(f"{payload!r}: {exc}")
    assert failures == []
    assert dump(CatalogDb(pg_catalog)) == before
    assert os.listdir(server_folder) == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (f"SELECT E'\\'' {TAIL}", "Give one statement; this has more than one."),
        ("SELECT 1 ; DELETE FROM image_label", "Give one statement; this has more than one."),
        ("COMMIT", NOT_ALLOWED.format("COMMIT")),
    ],
)
def test_the_server_refuses_what_a_lexer_would_miss(
    pg_catalog: str, payload: str, message: str
) -> None:
    """The statement count and the first keyword are read from the text only for a helpful
    message: the server, not that reading, keeps the statement alone and read-only."""
    before = dump(CatalogDb(pg_catalog))
    with pg_role(pg_catalog, *WRITER) as url, pytest.raises(UsageError) as caught:
        # No limits: no refusal of the writer role either, so the server alone stands guard.
        list(execute(parse_target(url), payload, {}, payload, None).rows)
    assert str(caught.value) == message
    assert dump(CatalogDb(pg_catalog)) == before


def test_a_superuser_is_refused(pg_catalog: str) -> None:
    database = make_url(pg_catalog).database
    user = make_url(pg_catalog).username
    with pytest.raises(QueryError) as caught:
        run_sql("SELECT 1", db=pg_catalog)
    assert str(caught.value) == refused_role(str(user), "a superuser", str(database))
    result = CliRunner().invoke(main, ["--db", pg_catalog, "sql", "SELECT 1"])
    assert result.exit_code == 1 and result.stderr == f"Error: {caught.value}\n"


@contextmanager
def member_of(url: str, how: str, role: str) -> Iterator[tuple[str, str]]:
    """A login role that can act as ``role``: directly, through a group, or only by SET ROLE;
    yields its URL and what the refusal says of it."""
    if how == "direct":
        with pg_role(url, *READER, f"GRANT {role} TO {{role}}") as login:
            yield login, f"a member of {role}"
    elif how == "group":
        with pg_role(url, f"GRANT {role} TO {{role}}") as group:
            name = make_url(group).username
            with pg_role(url, *READER, f'GRANT "{name}" TO {{role}}') as login:
                yield login, f"a member of {role}"
    else:  # NOINHERIT: no privileges of its own from the grant, but SET ROLE reaches them
        with pg_role(url, *READER, f"GRANT {role} TO {{role}}", options="NOINHERIT") as login:
            yield login, f"a member of {role}"


FILE_ROLES = [
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_signal_backend",  # pg_terminate_backend would end a sync's lock session
]


@pytest.mark.parametrize("how", ["direct", "group", "set-role"])
@pytest.mark.parametrize("role", FILE_ROLES)
def test_roles_that_reach_the_servers_files_are_refused(
    pg_catalog: str, server_folder: Path, role: str, how: str
) -> None:
    database = str(make_url(pg_catalog).database)
    payload = f"COPY (SELECT 1) TO PROGRAM 'touch {server_folder}/program'"
    with member_of(pg_catalog, how, role) as (url, why):
        login = str(make_url(url).username)
        for statement in ("SELECT 1", "SELECT pg_read_file('/etc/hostname')"):
            with pytest.raises(QueryError) as caught:
                run_sql(statement, db=url)
            assert str(caught.value) == refused_role(login, why, database)
        with pytest.raises(UsageError):
            run_sql(payload, db=url)
        if role == "pg_execute_server_program" and how == "direct":
            # The control: this role can run a program on the server, given the chance.
            plain = make_url(url).set(drivername="postgresql").render_as_string(False)
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute(payload.replace("/program", "/control"))
            if not (server_folder / "control").exists():
                pytest.skip("the server cannot write to this machine's folders")
            (server_folder / "control").unlink()
    assert os.listdir(server_folder) == []


def test_a_member_of_a_superuser_role_is_refused(pg_catalog: str) -> None:
    database = str(make_url(pg_catalog).database)
    with pg_role(pg_catalog, options="SUPERUSER") as admin:
        group = str(make_url(admin).username)
        with (
            pg_role(
                pg_catalog, *READER, f'GRANT "{group}" TO {{role}}', options="NOINHERIT"
            ) as url,
            pytest.raises(QueryError) as caught,
        ):
            run_sql("SELECT 1", db=url)
    login = str(make_url(url).username)
    assert str(caught.value) == refused_role(login, f"a member of {group}", database)


@pytest.mark.parametrize(
    "statement",
    ["SELECT 1", "REINDEX TABLE image", "ANALYZE image", "LOCK TABLE image IN SHARE MODE"],
)
def test_a_role_that_can_write_the_catalog_is_refused(pg_catalog: str, statement: str) -> None:
    """A sync's role ran REINDEX, ANALYZE and LOCK TABLE, which a read-only transaction
    allows, and could hold every writer back."""
    database = str(make_url(pg_catalog).database)
    with pg_role(pg_catalog, *WRITER) as url, pytest.raises(QueryError) as caught:
        run_sql(statement, db=url)
    login = str(make_url(url).username)
    assert str(caught.value) == refused_role(login, "a role that can write the catalog", database)


def test_a_replication_role_is_refused(pg_catalog: str) -> None:
    """A replication slot outlives the read-only transaction and holds the server's WAL."""
    database = str(make_url(pg_catalog).database)
    with (
        pg_role(pg_catalog, *READER, options="REPLICATION") as url,
        pytest.raises(QueryError) as caught,
    ):
        run_sql("SELECT 1", db=url)
    login = str(make_url(url).username)
    assert str(caught.value) == refused_role(login, "a replication role", database)


# --- publish ------------------------------------------------------------------------------------


def test_publish_into_a_folder_it_cannot_write_is_one_line(
    sqlite_path: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    out = folder / "pai.db"
    try:
        done = subprocess.run(
            read_only_command(folder, [*CLI, str(sqlite_path), "publish", str(out)]),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        folder.chmod(0o755)
    reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"Error: Cannot write {out}: {reason}.\n"
    assert os.listdir(folder) == []
