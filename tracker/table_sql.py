"""A user's migration SQL as a :class:`~tracker.table.Table`, read with PostgreSQL's own parser.

``load_table(path)`` parses the file with ``pglast`` (libpg_query: the server's grammar) and
derives, from the same parse tree, what the memory model needs: columns and types, NOT NULL,
DEFAULTs, CHECK constraints translated into ``tracker.table``'s expressions (with the names
PostgreSQL gives unnamed ones), enum types, the primary key, and an ``updated_at``-style
trigger. The PostgreSQL backend runs the file itself, with ``CURRENT_TIMESTAMP`` spelled
``now()`` so that it reads the simulated clock.

What the model cannot reproduce exactly is never approximated: the table records one line naming
the construct and its line (``Table.unmodelled``), and the memory model refuses the table with it,
pointing at ``--backend postgres``. SQL that is wrong for any backend (a syntax error, no table,
no one-column primary key) raises :class:`TableSqlError`.

Imports ``tracker`` and ``pglast``.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pglast import ast, parse_sql, parser
from pglast.enums import A_Expr_Kind, BoolExprType, ConstrType, NullTestType, ObjectType, SQLValueFunctionOp

from tracker.errors import UserError
from tracker.table import (
    INT_RANGES,
    Check,
    Choose,
    Column,
    Compare,
    Convert,
    Expr,
    Lit,
    Logic,
    Member,
    Negate,
    Now,
    NullTest,
    Pick,
    Ref,
    Table,
)

ADVICE = "use --backend postgres for this table"
_TYPES = {
    "text": ("text", "text"), "varchar": ("text", "text"), "bool": ("boolean", "boolean"),
    "int2": ("int2", "smallint"), "int4": ("int4", "integer"), "int8": ("int8", "bigint"),
    "timestamptz": ("timestamptz", "timestamptz"), "jsonb": ("jsonb", "jsonb"),
}
_INTS = ("int2", "int4", "int8")
_TRIGGER_BEFORE, _TRIGGER_INSERT, _TRIGGER_UPDATE = 2, 4, 16


class TableSqlError(UserError):
    """A table SQL file racetrack cannot use with any backend; ``str()`` is the one line."""


class Unmodelled(Exception):
    """A construct the memory model cannot reproduce exactly: (what, location)."""

    def __init__(self, what: str, location: int | None) -> None:
        super().__init__(what)
        self.what = what
        self.location = location


class _Source:
    """The file's text, for turning parser locations into line numbers."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.data = text.encode()

    def line(self, location: int | None) -> int | None:
        if location is None or location < 0:
            return None
        return self.data[:location].count(b"\n") + 1

    def at(self, location: int | None) -> str:
        line = self.line(location)
        return f"{self.name}: line {line}: " if line else f"{self.name}: "


def _names(names: Any) -> list[str]:
    return [n.sval for n in names or ()]


def _loc(node: Any) -> int | None:
    location = getattr(node, "location", None)
    return location if isinstance(location, int) and location >= 0 else None


# --- types and constants -----------------------------------------------------------------------


def _type(type_name: ast.TypeName, enums: dict[str, tuple[str, ...]]) -> tuple[str, str, tuple[str, ...]]:
    """(kind, SQL type, enum labels) of a column type; kind ``other`` for what only PostgreSQL does."""
    names = _names(type_name.names)
    base = names[-1]
    shown = ".".join(names[1:] if names[0] == "pg_catalog" else names)
    if type_name.arrayBounds or type_name.setof or type_name.pct_type:
        return "other", shown + "[]" * len(type_name.arrayBounds or ()), ()
    if len(names) == 1 and base in enums:
        return "enum", '"' + base.replace('"', '""') + '"', enums[base]
    if base in _TYPES and not type_name.typmods and (len(names) == 1 or names[0] == "pg_catalog"):
        kind, sql_type = _TYPES[base]
        return kind, sql_type, ()
    mods = "(" + ", ".join(str(m.val.ival) for m in type_name.typmods if isinstance(m, ast.A_Const)) + ")" if type_name.typmods else ""
    return "other", shown + mods, ()


def _coerce(value: Any, kind: str, labels: tuple[str, ...], location: int | None) -> Any:
    """A literal as a value of ``kind``, as PostgreSQL's input function reads it (exact cases only)."""
    if value is None:
        return None
    if kind in _INTS:
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise Unmodelled(f"the constant {value!r} as {kind}", location)
        low, high = INT_RANGES[kind]
        if not low <= value <= high:
            raise Unmodelled(f"the constant {value!r} out of range for {kind}", location)
        return value
    if kind == "text":
        if not isinstance(value, str):
            raise Unmodelled(f"the constant {value!r} as text", location)
        return value
    if kind == "enum":
        if value not in labels:
            raise Unmodelled(f"{value!r}, which is not a label of the enum ({', '.join(labels)})", location)
        return value
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        words = {"true": True, "t": True, "yes": True, "on": True, "1": True,
                 "false": False, "f": False, "no": False, "off": False, "0": False}
        if isinstance(value, str) and value.strip().lower() in words:
            return words[value.strip().lower()]
        raise Unmodelled(f"the constant {value!r} as boolean", location)
    if kind == "jsonb" and isinstance(value, str):
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            raise Unmodelled(f"the constant {value!r} as jsonb", location) from None
    raise Unmodelled(f"a constant {value!r} of type {kind}", location)


# --- expressions -------------------------------------------------------------------------------


class _Translator:
    """Parse-tree expressions -> ``tracker.table`` expressions, each with its kind (None: an
    untyped string literal, typed by what it meets)."""

    def __init__(self, columns: dict[str, Column], enums: dict[str, tuple[str, ...]]) -> None:
        self.columns = columns
        self.enums = enums
        self.used: set[str] = set()

    def boolean(self, node: Any) -> Expr:
        expr, kind, labels = self.expr(node)
        if kind is None:
            return Lit(_coerce(expr.value, "boolean", (), _loc(node)), "boolean")  # type: ignore[union-attr]
        if kind != "boolean":
            raise Unmodelled(f"a condition of type {kind}", _loc(node))
        return expr

    def typed(self, node: Any, kind: str | None, labels: tuple[str, ...]) -> tuple[Expr, str | None, tuple[str, ...]]:
        expr, got, got_labels = self.expr(node)
        if got is None and kind is not None:
            return Lit(_coerce(expr.value, kind, labels, _loc(node)), kind), kind, labels  # type: ignore[union-attr]
        return expr, got, got_labels

    def unify(self, nodes: list[Any], location: int | None, what: str) -> tuple[list[Expr], str | None, tuple[str, ...]]:
        """Translate expressions that must share one type (comparison sides, IN lists, CASE
        results, COALESCE arguments); untyped literals take the type of the others."""
        first = [self.expr(n) for n in nodes]
        kinds = {k for _, k, _ in first if k is not None}
        if {"int2", "int4", "int8"} >= kinds and len(kinds) > 1:
            kinds = {"int8"}  # integers of different widths compare as the wider
        if len(kinds) > 1:
            raise Unmodelled(f"{what} mixing types {', '.join(sorted(kinds))}", location)
        kind = kinds.pop() if kinds else None
        labels = next((lb for _, k, lb in first if k == kind and lb), ())
        if kind is None:
            kind = "text"  # PostgreSQL resolves untyped literals alone as text
        exprs = []
        for node, (expr, got, _) in zip(nodes, first, strict=True):
            if got is None:
                expr = Lit(_coerce(expr.value, kind, labels, _loc(node)), kind)  # type: ignore[union-attr]
            exprs.append(expr)
        return exprs, kind, labels

    def compare(self, op: str, left: Any, right: Any, location: int | None) -> Expr:
        (a, b), kind, labels = self.unify([left, right], location, f"a comparison {op}")
        self._orderable(op, kind, location)
        return Compare(op, a, b, labels if kind == "enum" else ())

    def _orderable(self, op: str, kind: str | None, location: int | None) -> None:
        if op in ("=", "<>"):
            if kind in ("jsonb", "other"):
                raise Unmodelled(f"{op} on {kind}", location)
            return
        if kind in ("text", "jsonb", "boolean", "other"):
            # text order depends on the server's collation; jsonb's and boolean's are not modelled
            raise Unmodelled(f"ordering ({op}) on {kind}", location)

    def member(self, arg: Any, items: list[Any], negated: bool, location: int | None) -> Expr:
        exprs, kind, labels = self.unify([arg, *items], location, "IN")
        self._orderable("=", kind, location)
        return Member(exprs[0], tuple(exprs[1:]), negated, labels if kind == "enum" else ())

    def expr(self, node: Any) -> tuple[Expr, str | None, tuple[str, ...]]:
        loc = _loc(node)
        if isinstance(node, ast.A_Const):
            if node.isnull:
                return Lit(None, "null"), None, ()
            val = node.val
            if isinstance(val, ast.Integer):
                return Lit(val.ival, "int4"), "int4", ()
            if isinstance(val, ast.Boolean):
                return Lit(bool(val.boolval), "boolean"), "boolean", ()
            if isinstance(val, ast.String):
                return Lit(val.sval, "unknown"), None, ()
            raise Unmodelled(f"the constant {getattr(val, 'fval', val)!s} (numeric)", loc)
        if isinstance(node, ast.ColumnRef):
            names = [f.sval for f in node.fields if isinstance(f, ast.String)]
            if len(names) != 1 or len(node.fields) != 1:
                raise Unmodelled("a qualified column reference", loc)
            column = self.columns.get(names[0])
            if column is None:
                raise TableSqlError(f"column {names[0]!r} does not exist")
            if column.kind == "other":
                raise Unmodelled(f"column {column.name} of type {column.sql_type}", loc)
            self.used.add(column.name)
            return Ref(column.name), column.kind, column.labels
        if isinstance(node, ast.SQLValueFunction):
            if node.op == SQLValueFunctionOp.SVFOP_CURRENT_TIMESTAMP:
                return Now(), "timestamptz", ()
            raise Unmodelled(f"{node.op.name.removeprefix('SVFOP_')}", loc)
        if isinstance(node, ast.FuncCall):
            name = ".".join(_names(node.funcname)).lower()
            if name == "now" and not node.args:
                return Now(), "timestamptz", ()
            if name in ("coalesce", "greatest", "least"):  # only in the grammar's own nodes below
                pass
            raise Unmodelled(f"the function {name}()", loc)
        if isinstance(node, ast.CoalesceExpr):
            exprs, kind, labels = self.unify(list(node.args), loc, "COALESCE")
            return Pick("coalesce", tuple(exprs)), kind, labels
        if isinstance(node, ast.MinMaxExpr):
            fn = "greatest" if node.op.name == "IS_GREATEST" else "least"
            exprs, kind, labels = self.unify(list(node.args), loc, fn.upper())
            self._orderable("<", kind, loc)
            return Pick(fn, tuple(exprs)), kind, labels
        if isinstance(node, ast.BoolExpr):
            args = tuple(self.boolean(a) for a in node.args)
            if node.boolop == BoolExprType.NOT_EXPR:
                return Negate(args[0]), "boolean", ()
            return Logic("and" if node.boolop == BoolExprType.AND_EXPR else "or", args), "boolean", ()
        if isinstance(node, ast.NullTest):
            if node.argisrow:
                raise Unmodelled("a row IS NULL test", loc)
            arg, _, _ = self.expr(node.arg)
            return NullTest(arg, node.nulltesttype == NullTestType.IS_NOT_NULL), "boolean", ()
        if isinstance(node, ast.A_Expr):
            return self.a_expr(node)
        if isinstance(node, ast.BooleanTest):
            arg = self.boolean(node.arg)
            test = node.booltesttype.name.removeprefix("IS_")
            truth = {"TRUE": True, "NOT_TRUE": True, "FALSE": False, "NOT_FALSE": False}.get(test)
            if truth is None:  # IS [NOT] UNKNOWN
                return NullTest(arg, test == "NOT_UNKNOWN"), "boolean", ()
            exact = Logic("and", (NullTest(arg, True), Compare("=", arg, Lit(truth, "boolean"))))
            return (Negate(exact) if test.startswith("NOT_") else exact), "boolean", ()
        if isinstance(node, ast.CaseExpr):
            if node.arg is not None:  # CASE x WHEN v THEN ...: each WHEN is x = v
                conditions = [self.compare("=", node.arg, w.expr, _loc(w)) for w in node.args]
            else:
                conditions = [self.boolean(w.expr) for w in node.args]
            results = [w.result for w in node.args]
            default = node.defresult if node.defresult is not None else ast.A_Const(isnull=True)
            exprs, kind, labels = self.unify([*results, default], loc, "CASE results")
            return Choose(tuple(zip(conditions, exprs[:-1], strict=True)), exprs[-1]), kind, labels
        if isinstance(node, ast.TypeCast):
            return self.cast(node)
        raise Unmodelled(type(node).__name__, loc)

    def a_expr(self, node: ast.A_Expr) -> tuple[Expr, str | None, tuple[str, ...]]:
        loc = _loc(node)
        op = ".".join(_names(node.name))
        if op == "!=":
            op = "<>"
        kind = node.kind
        if kind == A_Expr_Kind.AEXPR_OP and op in ("=", "<>", "<", "<=", ">", ">=") and node.lexpr is not None:
            return self.compare(op, node.lexpr, node.rexpr, loc), "boolean", ()
        if kind == A_Expr_Kind.AEXPR_IN:
            return self.member(node.lexpr, list(node.rexpr), op == "<>", loc), "boolean", ()
        if kind in (A_Expr_Kind.AEXPR_OP_ANY, A_Expr_Kind.AEXPR_OP_ALL) and isinstance(node.rexpr, ast.A_ArrayExpr):
            any_ = kind == A_Expr_Kind.AEXPR_OP_ANY
            if (op, any_) in (("=", True), ("<>", False)):
                return self.member(node.lexpr, list(node.rexpr.elements or ()), not any_, loc), "boolean", ()
        if kind == A_Expr_Kind.AEXPR_BETWEEN:
            low, high = node.rexpr
            (a, lo, hi), k, labels = self.unify([node.lexpr, low, high], loc, "BETWEEN")
            self._orderable("<", k, loc)
            lb = labels if k == "enum" else ()
            return Logic("and", (Compare(">=", a, lo, lb), Compare("<=", a, hi, lb))), "boolean", ()
        if kind == A_Expr_Kind.AEXPR_DISTINCT or kind == A_Expr_Kind.AEXPR_NOT_DISTINCT:
            (a, b), k, labels = self.unify([node.lexpr, node.rexpr], loc, "IS DISTINCT FROM")
            self._orderable("=", k, loc)
            same = Logic("or", (Logic("and", (NullTest(a, False), NullTest(b, False))),
                                Logic("and", (NullTest(a, True), NullTest(b, True), Compare("=", a, b, labels)))))
            # IS [NOT] DISTINCT FROM is never NULL: the OR above is true or false for every input
            return (same if kind == A_Expr_Kind.AEXPR_NOT_DISTINCT else Negate(same)), "boolean", ()
        raise Unmodelled(f"the operator {op or kind.name}", loc)

    def cast(self, node: ast.TypeCast) -> tuple[Expr, str | None, tuple[str, ...]]:
        loc = _loc(node)
        kind, _sql_type, labels = _type(node.typeName, self.enums)
        if kind == "other":
            raise Unmodelled(f"a cast to {_sql_type}", loc)
        inner, got, _ = self.expr(node.arg)
        if got is None:  # 'literal'::type is that type's input function on the literal
            return Lit(_coerce(inner.value, kind, labels, loc), kind), kind, labels  # type: ignore[union-attr]
        if got == kind or (got in _INTS and kind in _INTS and _INTS.index(got) <= _INTS.index(kind)):
            return inner, kind, labels
        if kind == "text" and got in ("enum", "boolean", *_INTS):
            return Convert(inner, "text"), "text", ()
        raise Unmodelled(f"a cast from {got} to {kind}", loc)


def _columns_of(expr: Expr) -> set[str]:
    """The distinct columns an expression reads (PostgreSQL names an unnamed CHECK by them)."""
    if isinstance(expr, Ref):
        return {expr.column}
    found: set[str] = set()
    for value in vars(expr).values():
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            for part in item if isinstance(item, tuple) else (item,):
                if isinstance(part, (Lit, Ref, Now, Compare, Logic, Negate, NullTest, Member, Choose, Pick, Convert)):
                    found |= _columns_of(part)
    return found


# --- statements --------------------------------------------------------------------------------

_STATEMENT_NAMES = {
    "AlterTableStmt": "ALTER TABLE", "CreateSeqStmt": "CREATE SEQUENCE", "CreateExtensionStmt": "CREATE EXTENSION",
    "ViewStmt": "CREATE VIEW", "InsertStmt": "INSERT", "TransactionStmt": "BEGIN/COMMIT", "CreateSchemaStmt": "CREATE SCHEMA",
    "VariableSetStmt": "SET", "DropStmt": "DROP", "CreateDomainStmt": "CREATE DOMAIN", "CompositeTypeStmt": "CREATE TYPE (composite)",
    "CreateRoleStmt": "CREATE ROLE", "AlterRoleStmt": "ALTER ROLE", "GrantStmt": "GRANT", "GrantRoleStmt": "GRANT",
    "SelectStmt": "SELECT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE", "DoStmt": "DO", "CopyStmt": "COPY",
    "AlterSeqStmt": "ALTER SEQUENCE", "AlterEnumStmt": "ALTER TYPE", "TruncateStmt": "TRUNCATE",
    "DefineStmt": "CREATE TYPE/AGGREGATE/OPERATOR", "SecLabelStmt": "SECURITY LABEL", "CreateEventTrigStmt": "CREATE EVENT TRIGGER",
    "CreatePolicyStmt": "CREATE POLICY", "CreateCastStmt": "CREATE CAST", "CreatePublicationStmt": "CREATE PUBLICATION",
    "CreateForeignTableStmt": "CREATE FOREIGN TABLE", "RuleStmt": "CREATE RULE", "AlterDefaultPrivilegesStmt": "ALTER DEFAULT PRIVILEGES",
    "AlterOwnerStmt": "ALTER ... OWNER", "RenameStmt": "ALTER ... RENAME", "AlterFunctionStmt": "ALTER FUNCTION",
    "CreateTableAsStmt": "CREATE TABLE AS", "CallStmt": "CALL", "NotifyStmt": "NOTIFY", "ListenStmt": "LISTEN",
    "LockStmt": "LOCK", "VacuumStmt": "VACUUM", "ExplainStmt": "EXPLAIN", "CreatedbStmt": "CREATE DATABASE",
}
#: Statements that stay inside racetrack's schema but that the model does not reproduce: the
#: PostgreSQL backend runs them, the memory model refuses the table (pointing at the backend).
_SCHEMA_LOCAL = frozenset({"AlterTableStmt", "CreateSeqStmt", "AlterSeqStmt", "CreateDomainStmt", "CompositeTypeStmt",
                           "AlterEnumStmt"})
#: What a table SQL file may hold, said when it holds something else.
_ALLOWED = ("CREATE TABLE, CREATE TYPE, CREATE FUNCTION, CREATE TRIGGER, CREATE INDEX, COMMENT ON, ALTER TABLE, "
            "CREATE SEQUENCE, CREATE DOMAIN")


#: What a COMMENT ON may name (the table and what it is made of, in racetrack's schema), with how
#: many names the object has unqualified (``COLUMN t.c``: two).
_COMMENTABLE = {ObjectType.OBJECT_TABLE: 1, ObjectType.OBJECT_COLUMN: 2, ObjectType.OBJECT_TABCONSTRAINT: 2,
                ObjectType.OBJECT_TRIGGER: 2, ObjectType.OBJECT_INDEX: 1, ObjectType.OBJECT_TYPE: 1,
                ObjectType.OBJECT_FUNCTION: 1, ObjectType.OBJECT_SEQUENCE: 1, ObjectType.OBJECT_DOMAIN: 1}


def _comment_beyond_schema(stmt: ast.CommentStmt) -> str | None:
    """What a ``COMMENT ON`` names when that lies beyond racetrack's schema (a database, a role,
    another schema, a qualified name), else None."""
    kind = ObjectType(stmt.objtype)
    what = kind.name.removeprefix("OBJECT_").replace("TABCONSTRAINT", "CONSTRAINT")
    if kind not in _COMMENTABLE:
        return what
    target = stmt.object
    if isinstance(target, ast.ObjectWithArgs):
        target = target.objname
    elif isinstance(target, ast.TypeName):
        target = target.names
    names: list[str] = [n.sval for n in target if isinstance(n, ast.String)] if isinstance(target, tuple) else []
    return f"{what} {'.'.join(names)}" if len(names) > _COMMENTABLE[kind] else None


def _qualified_target(stmt: Any) -> str | None:
    """``stmt`` with the schema-qualified name it creates or alters (``ALTER TABLE public.t``), or
    None: racetrack runs the file in its own schema, and a qualified name would reach past it."""
    target = getattr(stmt, "relation", None) or getattr(stmt, "sequence", None) or getattr(stmt, "typevar", None)
    if isinstance(target, ast.RangeVar) and target.schemaname:
        return f"{target.schemaname}.{target.relname}"
    names = getattr(stmt, "domainname", None) or (getattr(stmt, "typeName", None) if isinstance(stmt, ast.AlterEnumStmt) else None)
    if names and len(names) > 1:
        return ".".join(n.sval for n in names)
    return None


_BODY = re.compile(r"^\s*(?:DECLARE\s+)?BEGIN\s+(?P<stmts>.*?)\s*END\s*;?\s*$", re.I | re.S)
_STAMP = re.compile(r'^NEW\s*\.\s*("?)(?P<col>[A-Za-z_][A-Za-z0-9_$]*)\1\s*:?=\s*(?:now\s*\(\s*\)|CURRENT_TIMESTAMP)$', re.I)


def _strip_comments(body: str) -> str:
    return re.sub(r"--[^\n]*", "", re.sub(r"/\*.*?\*/", "", body, flags=re.S))


def _stamped_columns(body: str) -> tuple[str, ...] | None:
    """The columns a plpgsql trigger body sets to ``now()`` before ``RETURN NEW``, or None when
    the body does anything else."""
    match = _BODY.match(_strip_comments(body))
    if not match:
        return None
    statements = [s.strip() for s in match.group("stmts").split(";") if s.strip()]
    if not statements or not re.fullmatch(r"RETURN\s+NEW", statements[-1], re.I):
        return None
    columns = []
    for statement in statements[:-1]:
        stamp = _STAMP.match(statement)
        if not stamp:
            return None
        name = stamp.group("col")
        columns.append(name if stamp.group(1) else name.lower())
    return tuple(columns)


def for_postgres(text: str) -> str:
    """The file as the PostgreSQL backend runs it: ``CURRENT_TIMESTAMP`` (which no search_path
    redirects) spelled ``now()``, which resolves to racetrack's simulated clock, in function
    bodies too. Everything else is left exactly as written."""
    data = text.encode()
    out, last = [], 0
    for token in parser.scan(text):
        end = token.end + 1
        piece = data[token.start:end]
        if token.name == "CURRENT_TIMESTAMP":
            out += [data[last:token.start], b"now()"]
            last = end
        elif token.name == "SCONST" and piece.startswith(b"$"):
            tag = piece[: piece.index(b"$", 1) + 1]
            inner = piece[len(tag): len(piece) - len(tag)].decode()
            try:
                rewritten = for_postgres(inner)
            except parser.ParseError:
                continue
            out += [data[last:token.start], tag + rewritten.encode() + tag]
            last = end
    out.append(data[last:])
    return b"".join(out).decode()


def parse_table(text: str, source: str) -> Table:
    """The table a migration file creates; :class:`TableSqlError` when no backend could use it."""
    src = _Source(source, text)
    try:
        statements = parse_sql(text)
    except parser.ParseError as exc:
        location = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        raise TableSqlError(f"{src.at(location)}SQL syntax error: {exc.args[0]}") from None
    enums: dict[str, tuple[str, ...]] = {}
    creates: list[tuple[ast.CreateStmt, int]] = []
    functions: dict[str, tuple[str | None, int]] = {}  # name -> (trigger body or None, location)
    triggers: list[tuple[ast.CreateTrigStmt, int]] = []
    unique_indexes: list[tuple[ast.IndexStmt, int]] = []
    refusals: list[tuple[str, int | None]] = []
    for raw in statements:
        stmt, at = raw.stmt, raw.stmt_location
        name = type(stmt).__name__
        if isinstance(stmt, ast.CreateEnumStmt):
            enum = _names(stmt.typeName)
            if len(enum) != 1:
                raise TableSqlError(f"{src.at(at)}CREATE TYPE {'.'.join(enum)}: racetrack creates types in its own schema; drop the schema name")
            enums[enum[0]] = tuple(v.sval for v in stmt.vals or ())
        elif isinstance(stmt, ast.CreateStmt):
            creates.append((stmt, at))
        elif isinstance(stmt, ast.CreateFunctionStmt):
            fname = _names(stmt.funcname)
            if len(fname) != 1:
                raise TableSqlError(f"{src.at(at)}CREATE FUNCTION {'.'.join(fname)}: racetrack creates functions in its own schema; drop the schema name")
            options = {o.defname: o.arg for o in stmt.options or ()}
            language = getattr(options.get("language"), "sval", "")
            body = options.get("as")
            returns = _names(stmt.returnType.names) if stmt.returnType else []
            text_body = body[0].sval if isinstance(body, tuple) and len(body) == 1 else None
            trigger_body = text_body if language == "plpgsql" and returns[-1:] == ["trigger"] else None
            functions[fname[0]] = (trigger_body, at)
        elif isinstance(stmt, ast.CreateTrigStmt):
            triggers.append((stmt, at))
        elif isinstance(stmt, ast.IndexStmt) and not stmt.concurrent:
            if stmt.unique:
                unique_indexes.append((stmt, at))
        elif isinstance(stmt, ast.CommentStmt):  # comments change nothing a run can see, if they stay in the schema
            beyond = _comment_beyond_schema(stmt)
            if beyond:
                raise TableSqlError(f"{src.at(at)}COMMENT ON {beyond}: would outlive the schema racetrack runs a table SQL "
                                    "file in; comment only on the table, its columns, constraints, indexes, triggers, "
                                    "types, functions, sequences and domains, without a schema name")
        elif isinstance(stmt, ast.IndexStmt) and stmt.concurrent:
            raise TableSqlError(f"{src.at(at)}CREATE INDEX CONCURRENTLY: racetrack creates the table and its indexes in "
                                "one transaction, where CONCURRENTLY cannot run; drop CONCURRENTLY")
        elif name in _SCHEMA_LOCAL:
            refusals.append((_STATEMENT_NAMES.get(name, name.removesuffix("Stmt")), at))
        elif isinstance(stmt, ast.TransactionStmt):
            raise TableSqlError(f"{src.at(at)}BEGIN/COMMIT: racetrack runs the file's statements itself; drop it")
        else:  # would act beyond racetrack's schema, or leave something behind it
            what = _STATEMENT_NAMES.get(name, name.removesuffix("Stmt"))
            raise TableSqlError(
                f"{src.at(at)}{what}: would reach past the schema racetrack runs a table SQL file in, or outlive it; "
                f"give only {_ALLOWED}"
            )
        qualified = None if isinstance(stmt, (ast.CreateStmt, ast.CreateTrigStmt)) else _qualified_target(stmt)  # said below
        if qualified is not None:
            raise TableSqlError(f"{src.at(at)}{qualified}: racetrack creates everything in its own schema; drop the schema name")
    if len(creates) != 1:
        raise TableSqlError(f"{source}: needs exactly one CREATE TABLE (found {len(creates)})")
    create, create_at = creates[0]
    relation = create.relation
    if relation.schemaname:
        raise TableSqlError(
            f"{src.at(create_at)}CREATE TABLE {relation.schemaname}.{relation.relname}: racetrack creates the table in its own schema; drop the schema name"
        )
    table_name = relation.relname
    for stmt, at in triggers:
        if stmt.relation.schemaname:
            raise TableSqlError(f"{src.at(at)}CREATE TRIGGER ... ON {stmt.relation.schemaname}.{stmt.relation.relname}: drop the schema name")
    try:
        table = _build(src, create, create_at, table_name, enums, functions, triggers, unique_indexes, refusals)
    except Unmodelled as exc:  # pragma: no cover - _build turns these into Table.unmodelled
        raise TableSqlError(str(exc)) from None
    return table


def _build(
    src: _Source,
    create: ast.CreateStmt,
    create_at: int,
    table_name: str,
    enums: dict[str, tuple[str, ...]],
    functions: dict[str, tuple[str | None, int]],
    triggers: list[tuple[ast.CreateTrigStmt, int]],
    unique_indexes: list[tuple[ast.IndexStmt, int]],
    refusals: list[tuple[str, int | None]],
) -> Table:
    columns: dict[str, Column] = {}
    raw_checks: list[tuple[str | None, Any, int | None]] = []
    key: list[str] | None = None
    key_name: str | None = None
    defaults: dict[str, tuple[Any, int | None]] = {}
    not_null: set[str] = set()
    uniques: list[tuple[list[str], int | None]] = []

    def refuse(what: str, location: int | None) -> None:
        refusals.append((what, location))

    def table_constraint(con: ast.Constraint, column: str | None) -> None:
        nonlocal key, key_name
        loc = _loc(con)
        if con.deferrable or con.initdeferred:
            refuse("a DEFERRABLE constraint", loc)
        if con.contype == ConstrType.CONSTR_NOTNULL:
            if column:
                not_null.add(column)
        elif con.contype == ConstrType.CONSTR_NULL:
            pass
        elif con.contype == ConstrType.CONSTR_DEFAULT:
            if column:
                defaults[column] = (con.raw_expr, loc)
        elif con.contype == ConstrType.CONSTR_CHECK:
            if con.skip_validation or con.is_no_inherit:
                refuse("a CHECK ... NOT VALID / NO INHERIT", loc)
            raw_checks.append((con.conname, con.raw_expr, loc))
        elif con.contype in (ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_UNIQUE):
            keys = [column] if column else [k.sval for k in con.keys or ()]
            primary = con.contype == ConstrType.CONSTR_PRIMARY
            if primary:
                if key is not None:
                    raise TableSqlError(f"{src.at(loc)}multiple primary keys for table {table_name!r}")
                key = keys
                key_name = con.conname or f"{table_name}_pkey"
            else:
                uniques.append((keys, loc))
            if con.including or con.nulls_not_distinct or getattr(con, "without_overlaps", False):
                refuse("INCLUDE / NULLS NOT DISTINCT / WITHOUT OVERLAPS", loc)
        elif con.contype == ConstrType.CONSTR_FOREIGN:
            refuse("a FOREIGN KEY (REFERENCES)", loc)
        else:
            refuse(con.contype.name.removeprefix("CONSTR_").replace("_", " ") + " constraint", loc)

    if create.inhRelations or create.partspec or create.ofTypename or create.options or create.tablespacename:
        refuse("CREATE TABLE with INHERITS / PARTITION / OF / WITH / TABLESPACE", create_at)
    if create.relation.relpersistence == "t":
        refuse("a TEMPORARY table", create_at)
    for element in create.tableElts or ():
        if isinstance(element, ast.ColumnDef):
            kind, sql_type, labels = _type(element.typeName, enums)
            if kind == "other":
                refuse(f"column {element.colname} of type {sql_type}", _loc(element))
            if element.collClause is not None:
                refuse(f"column {element.colname} with COLLATE", _loc(element))
            if element.colname in columns:
                raise TableSqlError(f"{src.at(_loc(element))}column {element.colname!r} specified more than once")
            columns[element.colname] = Column(element.colname, sql_type, kind, labels=labels)
            # PostgreSQL names unnamed constraints in the order it meets them, columns' included
            for con in element.constraints or ():
                table_constraint(con, element.colname)
            if element.identity not in ("", "\x00") or element.generated not in ("", "\x00"):
                refuse(f"column {element.colname} GENERATED / IDENTITY", _loc(element))
        elif isinstance(element, ast.Constraint):
            table_constraint(element, None)
        else:
            refuse(type(element).__name__, _loc(element))
    if key is None or len(key) != 1:
        raise TableSqlError(
            f"{src.at(create_at)}table {table_name} needs a one-column PRIMARY KEY (the job's id, which racetrack's operations address rows by)"
        )
    key_column = key[0]
    if key_column not in columns:
        raise TableSqlError(f"{src.at(create_at)}PRIMARY KEY names column {key_column!r}, which the table does not have")
    if columns[key_column].kind != "text":
        refuse(f"primary key {key_column} of type {columns[key_column].sql_type} (job ids are text)", create_at)
    not_null.add(key_column)
    for keys, loc in uniques:
        if keys != [key_column]:
            refuse(f"UNIQUE ({', '.join(keys)}) (the model keeps only the primary key unique)", loc)
    for index, at in unique_indexes:
        keys = [getattr(p, "name", None) for p in index.indexParams or ()]
        if keys != [key_column] or index.whereClause is not None:
            refuse("CREATE UNIQUE INDEX (the model keeps only the primary key unique)", at)

    translator = _Translator(columns, enums)
    built: dict[str, Column] = {}
    for name, column in columns.items():
        default: Expr | None = None
        if name in defaults:
            node, loc = defaults[name]
            try:
                default = _default(translator, node, column, loc)
            except Unmodelled as exc:
                refuse(f"DEFAULT {exc.what} of column {name}", exc.location or loc)
        built[name] = Column(name, column.sql_type, column.kind, name in not_null, default, column.labels)

    checks: list[Check] = []
    taken: set[str] = {key_name} if key_name else set()
    for conname, node, loc in raw_checks:
        try:
            translator.used = set()
            expr = translator.boolean(node)
            used = translator.used
        except Unmodelled as exc:
            refuse(f"CHECK with {exc.what}", exc.location or loc)
            continue
        except TableSqlError as exc:
            raise TableSqlError(f"{src.at(loc)}CHECK: {exc}") from None
        try:
            name = conname or _choose_name(table_name, sorted(used)[0] if len(used) == 1 else None, "check", taken)
        except Unmodelled as exc:
            refuse(exc.what, loc)
            continue
        taken.add(name)
        checks.append(Check(name, expr))
    if len({c.name for c in checks}) != len(checks):
        raise TableSqlError(f"{src.at(create_at)}two CHECK constraints share a name")

    stamped: list[str] = []
    on_insert = False
    for trigger, at in triggers:
        if trigger.relation.relname != table_name:
            raise TableSqlError(f"{src.at(at)}CREATE TRIGGER {trigger.trigname}: ON {trigger.relation.relname}, not the table {table_name}")
        fname = _names(trigger.funcname)
        body, _ = functions.get(fname[-1], (None, at)) if len(fname) == 1 else (None, at)
        columns_set = _stamped_columns(body) if body is not None else None
        shape_ok = trigger.row and trigger.timing == _TRIGGER_BEFORE and trigger.events in (
            _TRIGGER_UPDATE, _TRIGGER_UPDATE | _TRIGGER_INSERT
        ) and not trigger.columns and trigger.whenClause is None and not trigger.args
        if not shape_ok or columns_set is None:
            refuse(f"trigger {trigger.trigname} (the model knows only BEFORE UPDATE [OR INSERT] FOR EACH ROW setting columns to now())", at)
            continue
        for column_name in columns_set:
            if column_name not in built or built[column_name].kind != "timestamptz":
                refuse(f"trigger {trigger.trigname} setting {column_name}, which is not a timestamptz column", at)
        stamped.extend(c for c in columns_set if c not in stamped)
        on_insert = on_insert or bool(trigger.events & _TRIGGER_INSERT)
    for name, (body, at) in functions.items():
        if body is None:
            refuse(f"function {name} (the model knows only plpgsql trigger functions setting columns to now())", at)

    unmodelled = None
    if refusals:
        what, at = min(refusals, key=lambda r: r[1] if r[1] is not None else -1)
        unmodelled = f"{src.at(at)}the memory model cannot reproduce {what} exactly; {ADVICE}"
    return Table(
        name=table_name,
        columns=tuple(built.values()),
        key=key_column,
        key_constraint=key_name or f"{table_name}_pkey",
        checks=tuple(sorted(checks, key=lambda c: c.name.encode())),  # PostgreSQL checks them in name order
        stamped=tuple(stamped),
        stamped_on_insert=on_insert,
        sql=for_postgres(src.data.decode()),
        functions=tuple(functions),
        source=src.name,
        unmodelled=unmodelled,
    )


def _default(translator: _Translator, node: Any, column: Column, loc: int | None) -> Expr | None:
    expr, kind, _ = translator.typed(node, column.kind, column.labels)
    if isinstance(expr, Lit) and expr.value is None:
        return None
    if isinstance(expr, Now) and column.kind == "timestamptz":
        return expr
    if isinstance(expr, Lit) and kind == column.kind:
        return expr
    if isinstance(expr, Lit) and kind in _INTS and column.kind in _INTS:
        return Lit(_coerce(expr.value, column.kind, (), loc), column.kind)
    raise Unmodelled(f"{type(expr).__name__.lower()} of type {kind}", loc)


def _choose_name(table: str, column: str | None, label: str, taken: set[str]) -> str:
    """PostgreSQL's ChooseConstraintName for an unnamed constraint: ``<table>_<column>_<label>``
    (the column when the expression reads exactly one), then with 1, 2, ... on the label."""
    base = f"{table}_{column}" if column else table
    name, n = f"{base}_{label}", 0
    while name in taken:
        n += 1
        name = f"{base}_{label}{n}"
    if len(name.encode()) > 63:
        raise Unmodelled(f"an unnamed constraint whose generated name {name!r} PostgreSQL would truncate", None)
    return name


def load_table(path: str | Path, source: str | None = None) -> Table:
    """The table of the SQL file at ``path``; errors name ``source`` (default: the path)."""
    source = source or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TableSqlError(f"{source}: cannot read the table SQL ({one_reason(exc)})") from None
    return parse_table(text, source)


def one_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0]


@cache
def bundled_table() -> Table:
    """``tracker/schema.sql``, the seed's job_status table: the default, through the same path."""
    text = resources.files("tracker").joinpath("schema.sql").read_text()
    return parse_table(text, "tracker/schema.sql")


def _reads_now(expr: Expr) -> bool:
    if isinstance(expr, Now):
        return True
    for value in vars(expr).values():
        for item in value if isinstance(value, tuple) else (value,):
            for part in item if isinstance(item, tuple) else (item,):
                if isinstance(part, (Lit, Ref, Now, Compare, Logic, Negate, NullTest, Member, Choose, Pick, Convert)) and _reads_now(part):
                    return True
    return False


def parse_condition(table: Table, text: str) -> tuple[str, Expr, tuple[str, ...]]:
    """A scenario's row invariant: one SQL boolean expression over ``table``'s columns, as
    PostgreSQL's grammar reads it, translated like a CHECK. Returns (the expression as pglast
    prints it back: what PostgreSQL is asked to evaluate, never the raw text) and its
    translation, and the columns it reads (in table order). :class:`TableSqlError` (one line, without a location prefix) for anything else:
    bad SQL, more than one expression, an unknown column, a construct the model cannot evaluate
    exactly, or ``now()`` (a row invariant is judged after the run, when there is no statement
    clock to read)."""
    from pglast.stream import RawStream

    try:
        statements = parse_sql("SELECT " + text)
    except parser.ParseError as exc:
        raise TableSqlError(f"SQL syntax error: {exc.args[0]}") from None
    stmt = statements[0].stmt if len(statements) == 1 else None
    if (
        not isinstance(stmt, ast.SelectStmt) or len(stmt.targetList or ()) != 1 or stmt.fromClause or stmt.whereClause
        or stmt.groupClause or stmt.havingClause or stmt.sortClause or stmt.limitCount or stmt.distinctClause
        or stmt.targetList[0].name
    ):
        raise TableSqlError("must be one SQL boolean expression over the table's columns")
    node = stmt.targetList[0].val
    columns = {c.name: c for c in table.columns}
    enums = {c.sql_type[1:-1].replace('""', '"'): c.labels for c in table.columns if c.kind == "enum"}
    translator = _Translator(columns, enums)
    try:
        expr = translator.boolean(node)
    except Unmodelled as exc:
        raise TableSqlError(f"the model cannot evaluate {exc.what} exactly; a row invariant may use what a CHECK may (docs/own-table.md)") from None
    if _reads_now(expr):
        raise TableSqlError("now() has no meaning in a row invariant (it is judged after the run); compare columns instead")
    used = _columns_of(expr)
    return RawStream()(node), expr, tuple(c for c in table.names if c in used)
