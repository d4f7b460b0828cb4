"""A user's own table: read from SQL with PostgreSQL's parser, modelled exactly or refused, and the
model agreeing with PostgreSQL on it."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from sim.engine import scenario as scenarios
from sim.runs.backends import BackendSpec
from sim.runs.runner import SweepItem
from sim.runs.sweep import execute
from tracker.backend import Done
from tracker.memory import MemoryTracker, UnmodelledTable, check_row
from tracker.ops import Insert, Update
from tracker.pg_server import choose_server
from tracker.strategies import BUILTIN, load_strategy
from tracker.table import compile_defaults, compile_expr, compile_rules, evaluate
from tracker.table_sql import TableSqlError, bundled_table, for_postgres, parse_table

TABLES = Path(__file__).parent / "tables"
T0 = 1_760_287_012_000_000


def test_the_bundled_schema_is_read_with_every_constraint_by_its_postgres_name():
    table = bundled_table()
    assert [c.name for c in table.checks] == sorted(
        f"job_status_{n}_check" for n in ("status", "attempts", "timestamps", "completed", "failed", "cancelled")
    )
    assert (table.key, table.key_constraint, table.stamped, table.unmodelled) == ("job_id", "job_status_pkey", ("updated_at",), None)


def test_unnamed_checks_are_named_as_postgres_names_them():
    table = parse_table(
        "CREATE TABLE t (id text PRIMARY KEY, a int CHECK (a > 0), b int, CHECK (a < b), CHECK (b > 1), CHECK (a <> b));", "t.sql"
    )
    assert [c.name for c in table.checks] == ["t_a_check", "t_b_check", "t_check", "t_check1"]


def test_an_enum_column_orders_by_label_and_rejects_an_unknown_label_as_postgres_does():
    table = parse_table(
        "CREATE TYPE st AS ENUM ('zeta', 'alpha');\n"
        "CREATE TABLE t (id text PRIMARY KEY, s st NOT NULL DEFAULT 'zeta', CHECK (s < 'alpha'));", "t.sql"
    )
    model = MemoryTracker(table)
    assert model.execute("a", Insert("j"), T0) == Done(value={"id": "j", "s": "zeta"})
    refused = model.execute("a", Update("j", {"s": "alpha"}), T0)
    assert refused.error is not None and refused.error.key() == ("23514", "t_s_check")
    unknown = model.execute("a", Update("j", {"s": "beta"}), T0)
    assert unknown.error is not None and unknown.error.key() == ("22P02", None)


def test_a_trigger_stamps_its_columns_and_current_timestamp_reads_the_simulated_clock_on_postgres():
    text = (TABLES / "enum_cancelled_status.sql").read_text()
    assert "CURRENT_TIMESTAMP" in text and "CURRENT_TIMESTAMP" not in for_postgres(text)
    model = MemoryTracker(parse_table(text, "t.sql"))
    model.execute("a", Insert("j"), T0)
    row = model.execute("a", Update("j", {"attempts": 1}), T0 + 5).value  # type: ignore[union-attr]
    assert row["updated_at"] == T0 + 5 and row["created_at"] == T0


@pytest.mark.parametrize(
    ("construct", "sql_text"),
    [
        ("column owner of type uuid", "CREATE TABLE t (id text PRIMARY KEY,\n owner uuid);"),
        ("ordering (<) on text", "CREATE TABLE t (id text PRIMARY KEY,\n s text CHECK (s < 'm'));"),
        ("the operator +", "CREATE TABLE t (id text PRIMARY KEY,\n n int CHECK (n + 1 > 0));"),
        ("UNIQUE (s)", "CREATE TABLE t (id text PRIMARY KEY,\n s text UNIQUE);"),
    ],
)
def test_what_the_model_cannot_reproduce_is_refused_naming_the_construct_and_its_line(construct, sql_text):
    table = parse_table(sql_text, "t.sql")
    assert table.unmodelled is not None and construct in table.unmodelled and "line 2" in table.unmodelled
    assert "--backend postgres" in table.unmodelled
    with pytest.raises(UnmodelledTable):
        MemoryTracker(table)


def test_sql_no_backend_can_use_is_an_error_with_its_line():
    with pytest.raises(TableSqlError, match=r"t.sql: line 2: SQL syntax error"):
        parse_table("CREATE TABLE t (id text PRIMARY KEY,\n,);", "t.sql")
    with pytest.raises(TableSqlError, match="one-column PRIMARY KEY"):
        parse_table("CREATE TABLE t (id text);", "t.sql")


@pytest.mark.parametrize(
    ("statement", "said"),
    [
        ("CREATE SCHEMA leak;", "CREATE SCHEMA: would reach past the schema"),
        ("CREATE ROLE leak;", "CREATE ROLE: would reach past"),
        ("GRANT SELECT ON t TO PUBLIC;", "GRANT: would reach past"),
        ("SET search_path = public;", "SET: would reach past"),
        ("CREATE EXTENSION pgcrypto;", "CREATE EXTENSION: would reach past"),
        ("DROP TABLE IF EXISTS public.x;", "DROP: would reach past"),
        ("SELECT 1;", "SELECT: would reach past"),
        ("DO $$ BEGIN END $$;", "DO: would reach past"),
        ("BEGIN;", "BEGIN/COMMIT: racetrack runs the file's statements itself"),
        ("CREATE INDEX i ON public.t (id);", "public.t: racetrack creates everything in its own schema"),
        ("ALTER TABLE public.t ADD COLUMN z int;", "public.t: racetrack creates everything in its own schema"),
        ("CREATE SEQUENCE public.s;", "public.s: racetrack creates everything in its own schema"),
        ("COMMENT ON DATABASE test IS 'x';", "COMMENT ON DATABASE: would outlive the schema"),
        ("COMMENT ON SCHEMA public IS 'x';", "COMMENT ON SCHEMA: would outlive the schema"),
        ("COMMENT ON ROLE postgres IS 'x';", "COMMENT ON ROLE: would outlive the schema"),
        ("COMMENT ON COLUMN public.t.id IS 'x';", "COMMENT ON COLUMN public.t.id: would outlive the schema"),
        ("CREATE INDEX CONCURRENTLY i ON t (id);", "CREATE INDEX CONCURRENTLY: racetrack creates the table and its indexes in one transaction"),
        ("SECURITY LABEL ON TABLE t IS 'x';", "SECURITY LABEL: would reach past"),
    ],
)
def test_a_statement_beyond_racetracks_schema_is_refused_for_every_backend(statement, said):
    # the PostgreSQL backend runs the file on the user's server: nothing in it may reach past the
    # run's own schema or outlive it (a role, another schema, an extension stayed behind before)
    with pytest.raises(TableSqlError, match=r"^t.sql: line 2: " + re.escape(said)):
        parse_table(f"CREATE TABLE t (id text PRIMARY KEY);\n{statement}", "t.sql")


def test_statements_within_the_schema_stay_allowed_for_postgres():
    table = parse_table("CREATE TABLE t (id text PRIMARY KEY);\nCREATE SEQUENCE s;\nALTER TABLE t ADD COLUMN z int;\n"
                        "CREATE INDEX i ON t (id);\nCOMMENT ON TABLE t IS 'x';\nCOMMENT ON COLUMN t.id IS 'x';\n"
                        "COMMENT ON CONSTRAINT t_pkey ON t IS 'x';", "t.sql")
    assert table.unmodelled is not None and "CREATE SEQUENCE" in table.unmodelled and "--backend postgres" in table.unmodelled


def test_a_scenario_names_its_table_relative_to_its_own_file(tmp_path):
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "t.sql").write_text((TABLES / "extra_not_null_defaults.sql").read_text())
    (tmp_path / "s.toml").write_text('[table]\nsql = "sql/t.sql"\n')
    loaded = scenarios.load(str(tmp_path / "s.toml"))
    assert loaded.table is not None and loaded.table.column("owner_id") is not None
    assert loaded.to_toml_table()["table.sql"] == "sql/t.sql"
    assert "table.sql" not in scenarios.load("seed-fast-jobs").to_toml_table()  # results as before


def test_a_handler_writing_a_column_the_table_lacks_crashes_at_its_yield(tmp_path):
    table = parse_table((TABLES / "case_coalesce_check.sql").read_text(), "t.sql")
    with pytest.raises(ValueError, match="may not set column 'owner_id'"):
        MemoryTracker(table).execute("a", Insert("j", {"owner_id": "x"}), T0)


@pytest.mark.postgres
@pytest.mark.parametrize("table_file", ["enum_cancelled_status.sql", "extra_not_null_defaults.sql", "case_coalesce_check.sql"])
def test_model_and_postgres_agree_on_every_bundled_scenario_against_a_users_table(table_file):
    path = TABLES / table_file
    from tracker.table_sql import load_table

    table = load_table(path)
    items = [
        SweepItem(scenarios.load(name).with_table(table, str(path)), load_strategy(strategy), 0)
        for name in scenarios.bundled_names()
        for strategy in BUILTIN
    ]
    rows = list(execute(items, BackendSpec("both", choose_server().dsn)))
    assert all(r["error"] == "" for r in rows), [r["error"] for r in rows if r["error"]][:1]
    assert [r["first_disagreement"] for r in rows if r["disagreements"]] == []


# --- random CHECK expressions: the model's verdict against PostgreSQL's -----------------------

COLUMNS = {"a": "integer", "b": "bigint", "s": "text", "e": "st", "f": "boolean", "t": "timestamptz"}
ENUM = ("lo", "mid", "hi")
VALUES = {
    "a": st.one_of(st.none(), st.integers(-3, 3)),
    "b": st.one_of(st.none(), st.integers(-3, 3)),
    "s": st.one_of(st.none(), st.sampled_from(["x", "y", "3"])),
    "e": st.one_of(st.none(), st.sampled_from(ENUM)),
    "f": st.one_of(st.none(), st.booleans()),
    "t": st.one_of(st.none(), st.integers(T0 - 2, T0 + 2)),
}


def _ints() -> st.SearchStrategy[str]:
    leaf = st.one_of(st.sampled_from(["a", "b", "NULL::int"]), st.integers(-3, 3).map(str))
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3).map(lambda xs: f"COALESCE({', '.join(xs)})"),
            st.tuples(st.sampled_from(["GREATEST", "LEAST"]), st.lists(inner, min_size=1, max_size=3)).map(
                lambda p: f"{p[0]}({', '.join(p[1])})"
            ),
            st.tuples(_conds_leaf(), inner, inner).map(lambda p: f"CASE WHEN {p[0]} THEN {p[1]} ELSE {p[2]} END"),
        ),
        max_leaves=4,
    )


def _conds_leaf() -> st.SearchStrategy[str]:
    ops = st.sampled_from(["=", "<>", "<", "<=", ">", ">="])
    return st.one_of(
        st.tuples(st.sampled_from(["a", "b"]), ops, st.integers(-3, 3)).map(lambda p: f"{p[0]} {p[1]} {p[2]}"),
        st.tuples(ops, st.sampled_from(ENUM)).map(lambda p: f"e {p[0]} '{p[1]}'"),
        st.tuples(st.sampled_from(["=", "<>"]), st.sampled_from(["x", "y", "lo", "3"])).map(lambda p: f"s {p[0]} '{p[1]}'"),
        st.tuples(st.sampled_from(["a", "b", "s", "e", "f", "t"]), st.booleans()).map(
            lambda p: f"{p[0]} IS {'NOT ' if p[1] else ''}NULL"
        ),
        st.sampled_from(["f", "NOT f", "f IS TRUE", "f IS NOT FALSE", "t >= now()", "t < CURRENT_TIMESTAMP",
                         "e::text = s", "a::text = s", "e IN ('lo', 'hi')", "a NOT IN (1, 2)", "b = ANY (ARRAY[1, 2])",
                         "a BETWEEN -1 AND 1", "a IS DISTINCT FROM b", "CASE e WHEN 'lo' THEN f ELSE NOT f END"]),
    )


def _conditions() -> st.SearchStrategy[str]:
    return st.recursive(
        st.one_of(_conds_leaf(), st.tuples(_ints(), st.sampled_from(["=", "<", ">="]), _ints()).map(" ".join)),
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(lambda p: f"({p[0]} {p[1]} {p[2]})"),
            inner.map(lambda c: f"NOT ({c})"),
        ),
        max_leaves=5,
    )


@pytest.fixture(scope="module")
def scratch():
    conn = psycopg.connect(choose_server().dsn, autocommit=True)
    schema = "racetrack_checks_property"
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("SET search_path TO {}, pg_catalog").format(sql.Identifier(schema)))
    conn.execute("SET TimeZone TO 'UTC'")
    conn.execute(
        sql.SQL("CREATE FUNCTION {}.now() RETURNS timestamptz LANGUAGE sql STABLE AS $$ SELECT 'epoch'::timestamptz + interval '1 microsecond' * {} $$").format(
            sql.Identifier(schema), sql.Literal(T0)
        )
    )
    conn.execute("CREATE TYPE st AS ENUM ('lo', 'mid', 'hi')")
    yield conn
    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    conn.close()


@pytest.mark.postgres
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(condition=_conditions(), row=st.fixed_dictionaries(VALUES))
def test_the_models_verdict_on_a_random_check_is_postgres_verdict(scratch, condition, row):
    ddl = (
        "CREATE TYPE st AS ENUM ('lo', 'mid', 'hi');\nCREATE TABLE c (id text PRIMARY KEY, "
        + ", ".join(f"{n} {t}" for n, t in COLUMNS.items())
        + f", CONSTRAINT probe CHECK ({for_postgres(condition)}));"
    )
    table = parse_table(ddl, "probe.sql")
    assert table.unmodelled is None, table.unmodelled
    full = {"id": "j", **row}
    error = check_row(full, table, T0)
    model = None if error is None else error.constraint
    with scratch.transaction(force_rollback=True):
        scratch.execute(ddl.split(";\n", 1)[1])
        columns = ", ".join(full)
        values = ", ".join(f"%s::{COLUMNS.get(n, 'text')}" for n in full)
        params = [None if v is None else (_ts(v) if n == "t" else v) for n, v in full.items()]
        try:
            with scratch.transaction():
                scratch.execute(f"INSERT INTO c ({columns}) VALUES ({values})", params)
            postgres = None
        except psycopg.errors.CheckViolation as exc:
            postgres = exc.diag.constraint_name
    assert model == postgres, (condition, row)


def _ts(us: int) -> str:
    from tracker.postgres import micros_to_text

    return micros_to_text(us)


@settings(max_examples=200, deadline=None)
@given(condition=_conditions(), row=st.fixed_dictionaries(VALUES))
def test_a_compiled_check_gives_what_walking_its_expression_gives(condition, row):
    # The model checks rows with compiled CHECKs; the tree-walking evaluator is the reference.
    ddl = (
        "CREATE TYPE st AS ENUM ('lo', 'mid', 'hi');\nCREATE TABLE c (id text PRIMARY KEY, "
        + ", ".join(f"{n} {t}" for n, t in COLUMNS.items())
        + f", CONSTRAINT probe CHECK ({for_postgres(condition)}));"
    )
    (check,) = parse_table(ddl, "probe.sql").checks
    full = {"id": "j", **row}
    assert compile_expr(check.expr)(full, T0) == evaluate(check.expr, full, T0)


#: Any value in any column, and columns missing: the compiled code must also fail as walking does.
_ANY = st.one_of(st.none(), st.integers(-3, 3), st.sampled_from(["x", "3", *ENUM]), st.booleans(), st.floats(-3, 3))


def _outcome(compute):
    try:
        return ("value", compute())
    except Exception as exc:  # the exception's class and arguments are part of what must agree
        return (type(exc), exc.args)


@settings(max_examples=300, deadline=None)
@given(
    conditions=st.lists(_conditions(), min_size=1, max_size=3),
    not_null=st.lists(st.sampled_from(list(COLUMNS)), unique=True, max_size=3),
    row=st.one_of(st.fixed_dictionaries(dict.fromkeys(COLUMNS, _ANY)), st.dictionaries(st.sampled_from(list(COLUMNS)), _ANY)),
)
def test_compiled_rules_fail_where_walking_fails_and_name_the_same_rule_on_any_row(conditions, not_null, row):
    ddl = (
        "CREATE TYPE st AS ENUM ('lo', 'mid', 'hi');\nCREATE TABLE c (id text PRIMARY KEY, "
        + ", ".join(f"{n} {t}" for n, t in COLUMNS.items())
        + "".join(f", CONSTRAINT probe{i} CHECK ({for_postgres(c)})" for i, c in enumerate(conditions))
        + ");"
    )
    checks = tuple(c.expr for c in parse_table(ddl, "probe.sql").checks)
    full = {"id": "j", **row}

    def walking():
        for i, column in enumerate(not_null):
            if full[column] is None:
                return i
        for i, check in enumerate(checks, len(not_null)):
            if evaluate(check, full, T0) is False:
                return i
        return None

    assert _outcome(lambda: compile_rules(tuple(not_null), checks)(full, T0)) == _outcome(walking)
    for check in checks:
        compiled = compile_expr(check)
        assert _outcome(lambda: compiled(full, T0)) == _outcome(lambda: evaluate(check, full, T0))  # noqa: B023 - called at once


@pytest.mark.parametrize("table_file", ["enum_cancelled_status.sql", "extra_not_null_defaults.sql", "case_coalesce_check.sql"])
def test_compiled_defaults_are_the_walked_defaults_in_column_order(table_file):
    table = parse_table((TABLES / table_file).read_text(), table_file)
    for t in (bundled_table(), table):
        walked = {c.name: None if c.default is None else evaluate(c.default, {}, T0) for c in t.columns}
        compiled = compile_defaults(t.columns)(T0)
        assert list(compiled.items()) == list(walked.items())
        assert compiled is not compile_defaults(t.columns)(T0)
