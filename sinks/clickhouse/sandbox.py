"""The SQL sandbox: analyst SQL judged on ClickHouse's own parse tree before it runs.

Embedded chDB has no users or grants and its scalar ``file()`` ignores path checks, so the engine
cannot be trusted to refuse anything. The text reaches the engine first as a string literal:
``formatQuery`` parses exactly one statement (a second one is an error) and prints it back
canonically; only that form is explained (``EXPLAIN AST``), judged and run. The printed tree is rebuilt from its indentation and checked strictly (every
``(children N)`` count must match), then judged against allow-lists: statement roots, node kinds
and, per role, tables. Functions that reach files, URLs, other servers or dictionaries are
refused anywhere, table functions always. What passes runs read-only under resource limits.

String literals are printed escaped (a newline as ``\\n``), so they cannot add lines. Quoted
identifiers and aliases are printed raw; a newline in one adds lines that either break the
indentation or a children count (refused) or hang below the identifier's own line, where they
can only add nodes (judged like any other, never hiding a real one).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.clickhouse.client import QueryResult, Store
from sinks.exceptions import QueryRefused

if TYPE_CHECKING:
    from lineage.settings import SqlSettings

#: Every table and view the migrations create.
LINEAGE_TABLES = frozenset({
    "raw_events", "chain_heads", "nodes", "edges", "inference_lineage", "inference_lineage_anon",
    "inference_lineage_resolved", "inference_lineage_resolved_anon",
    "training_runs", "pipeline_metrics", "alerts", "schema_migrations", "query_audit", "chain_starts", "column_edges",
    "dataset_identity",
})
#: What each role may read. Analysts see no raw records, no pseudonymous subject references and
#: not the audit log.
ROLES: dict[str, frozenset[str]] = {
    "auditor": LINEAGE_TABLES,
    "analyst": LINEAGE_TABLES - {"raw_events", "inference_lineage", "inference_lineage_resolved", "query_audit", "chain_starts"},
}
DEFAULT_ROLE = "auditor"

#: Node kinds a judged statement may contain below its root (all checked with EXPLAIN AST).
_KINDS = frozenset({
    "SelectWithUnionQuery", "SelectIntersectExceptQuery", "SelectQuery", "ExpressionList", "Function",
    "Literal", "Identifier", "Asterisk", "QualifiedAsterisk", "ColumnsRegexpMatcher", "ColumnsListMatcher",
    "TablesInSelectQuery", "TablesInSelectQueryElement", "TableExpression", "TableIdentifier", "TableJoin",
    "ArrayJoin", "Subquery", "WithElement", "OrderByElement", "WindowDefinition", "WindowListElement",
    "SampleRatio",
})
_EXPLAINS = frozenset({"EXPLAIN", "EXPLAIN SYNTAX"})
_FORMAT = "Identifier Native"  # the output format clickhouse-connect appends

#: Functions that read files, URLs, other servers, dictionaries, other tables by name, or the host.
_DENIED_FUNCTIONS = frozenset({
    "url", "urlcluster", "input", "remote", "remotesecure", "cluster", "clusterallreplicas", "jdbc", "odbc",
    "joinget", "joingetornull", "catboostevaluate", "modelevaluate", "naivebayesclassifier", "hascolumnintable",
    "getsetting", "getmacro", "getserverport", "hostname", "fqdn", "serveruuid", "getclienthttpheader",
    "view", "viewifpermitted", "merge", "mergetreeindex", "dictionary", "generaterandom", "executable",
    "sleep", "sleepeachrow",
})
_DENIED_PREFIXES = (
    "file", "dict", "s3", "hdfs", "azure", "iceberg", "hudi", "deltalake", "mysql", "postgresql", "mongodb",
    "redis", "sqlite", "gcs", "oss", "cosn", "executable", "remote", "url", "odbc", "jdbc", "paimon",
)
#: Functions whose right operand may name a table (``x IN raw_events``).
_IN_FUNCTIONS = frozenset({
    "in", "notin", "globalin", "globalnotin", "nullin", "notnullin", "globalnullin", "globalnotnullin",
})

_LINE = re.compile(r"^( *)([A-Za-z]+)(?: (.*))?$")
_CHILDREN = re.compile(r"^(.*?) ?\(children ([1-9][0-9]*)\)$")


@dataclass(slots=True)
class AstNode:
    """One line of ``EXPLAIN AST``: its kind, the rest of the line, its children."""

    kind: str
    text: str
    claimed: int
    children: list[AstNode] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The first word of the text (a function's or identifier's name), alias stripped."""
        return self.text.split(" (alias ", 1)[0]


def parse_tree(lines: list[str]) -> AstNode:
    """The tree ``EXPLAIN AST`` printed; QueryRefused unless every line and count is consistent."""
    if not lines:
        raise QueryRefused("the engine printed no parse tree")
    stack: list[tuple[int, AstNode]] = []
    root: AstNode | None = None
    for line in lines:
        m = _LINE.match(line)
        if m is None:
            raise QueryRefused("unreadable parse tree (a quoted name with a line break?)")
        depth, kind, rest = len(m.group(1)), m.group(2), m.group(3) or ""
        counted = _CHILDREN.match(rest)
        text, claimed = (counted.group(1), int(counted.group(2))) if counted else (rest, 0)
        node = AstNode(kind, text, claimed)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if not stack:
            if root is not None or depth != 0:
                raise QueryRefused("unreadable parse tree (more than one root)")
            root = node
        else:
            if depth != stack[-1][0] + 1:
                raise QueryRefused("unreadable parse tree (bad indentation)")
            stack[-1][1].children.append(node)
        stack.append((depth, node))
    assert root is not None
    _check_counts(root)
    return root


def _check_counts(node: AstNode) -> None:
    if len(node.children) != node.claimed:
        raise QueryRefused("unreadable parse tree (a quoted name with a line break?)")
    for child in node.children:
        _check_counts(child)


def _denied_function(name: str) -> bool:
    low = name.lower()
    return low in _DENIED_FUNCTIONS or low.startswith(_DENIED_PREFIXES)


@dataclass(frozen=True, slots=True)
class Judge:
    """Judges one parse tree for one role (pure: no engine)."""

    database: str
    allowed: frozenset[str]
    existing: frozenset[str]  # tables and views in ``database`` (an unknown bare name is a CTE)

    def statement(self, root: AstNode) -> None:
        if not root.children or f"{root.children[-1].kind} {root.children[-1].text}" != _FORMAT \
                or root.children[-1].children:
            raise QueryRefused("FORMAT and INTO OUTFILE clauses are not allowed")
        body = root.children[:-1]
        if root.kind == "SelectWithUnionQuery":
            self._select_with_union(AstNode(root.kind, root.text, len(body), body))
        elif root.kind == "ShowTables":
            if body:
                raise QueryRefused("SHOW TABLES lists the lineage database only")
        elif root.kind == "DescribeQuery":
            if len(body) != 1 or body[0].kind != "TableExpression":
                raise QueryRefused("DESCRIBE takes one table")
            self._nodes(body[0])
        elif root.kind == "Explain" and root.text in _EXPLAINS:
            if len(body) != 1 or body[0].kind != "SelectWithUnionQuery":
                raise QueryRefused("EXPLAIN takes one SELECT and no settings")
            self._nodes(body[0])
        else:
            raise QueryRefused(f"read-only SQL: only SELECT, WITH, SHOW TABLES, DESCRIBE and EXPLAIN are allowed, got {root.kind}")

    def _select_with_union(self, node: AstNode) -> None:
        if [c.kind for c in node.children] != ["ExpressionList"]:
            raise QueryRefused("INTO OUTFILE and FORMAT clauses are not allowed")
        for child in node.children:
            self._nodes(child)

    def _nodes(self, node: AstNode) -> None:
        if node.kind == "Set":
            raise QueryRefused("SETTINGS clauses are not allowed")
        if node.kind not in _KINDS:
            raise QueryRefused(f"{node.kind} is not allowed in analyst SQL")
        if node.kind == "SelectWithUnionQuery":
            self._select_with_union(node)
            return
        if node.kind == "TableExpression":
            for child in node.children:
                if child.kind == "Function":
                    raise QueryRefused(f"table function {child.name.split(' ')[0]}() is not allowed")
                if child.kind == "TableIdentifier":
                    self._table(child.name)
        if node.kind == "Function":
            fname = node.name.split(" ", 1)[0]
            if _denied_function(fname):
                raise QueryRefused(f"function {fname}() is not allowed")
            args = node.children[0].children if node.children and node.children[0].kind == "ExpressionList" else []
            if fname.lower() in _IN_FUNCTIONS and len(args) == 2 and args[1].kind == "Identifier":
                self._table(args[1].name)
        for child in node.children:
            self._nodes(child)

    def _table(self, name: str) -> None:
        db, dot, table = name.partition(".")
        if dot:
            if db != self.database or table not in self.allowed:
                raise QueryRefused(f"table {name} is not readable here")
        elif name not in self.allowed and (name in self.existing or name in LINEAGE_TABLES):
            raise QueryRefused(f"table {name} is not readable with this role")


def sandbox_settings(limits: SqlSettings) -> dict[str, Any]:
    """The engine settings every sandboxed statement runs under."""
    return {
        "readonly": 1,
        "max_execution_time": limits.max_execution_time_s,
        "max_result_rows": limits.max_result_rows,
        "max_result_bytes": limits.max_result_bytes,
        "max_memory_usage": limits.max_memory_usage,
    }


class SqlSandbox:
    """Judges and runs analyst SQL on a :class:`Store`, as a role (see :data:`ROLES`)."""

    def __init__(self, store: Store, limits: SqlSettings) -> None:
        self.store = store
        self.settings = sandbox_settings(limits)

    def check(self, sql: str, role: str = DEFAULT_ROLE, params: Mapping[str, Any] | None = None) -> str:
        """The statement as the engine prints it, if it is one statement `role` may run; else QueryRefused.

        The text is handed to the engine only as a string literal (``formatQuery``), which parses
        exactly one statement; the printed form is what is explained, judged and run. (Statement
        text itself, even behind EXPLAIN, would run every statement after the first.)
        """
        allowed = ROLES.get(role)
        if allowed is None:
            raise QueryRefused(f"unknown role {role!r}")
        if not sql.strip():
            raise QueryRefused("empty SQL")
        try:
            text = self._format(sql)
            if self._format(text) != text:
                raise QueryRefused("the statement does not print back the same")
            lines = [str(r[0]) for r in self.store.query(f"EXPLAIN AST {text}", params).rows]
        except ClickHouseError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise QueryRefused(f"not one statement the engine can parse: {first}") from None
        Judge(self.store.database, allowed, self._existing()).statement(parse_tree(lines))
        return text

    def run(self, sql: str, role: str = DEFAULT_ROLE, params: Mapping[str, Any] | None = None) -> QueryResult:
        """Check `sql`, then run its judged form read-only under the limits (ClickHouseError if it fails)."""
        return self.store.query(self.check(sql, role, params), params, self.settings)

    def _format(self, sql: str) -> str:
        return str(self.store.query("SELECT formatQuery({sql:String})", {"sql": sql}).rows[0][0])

    def _existing(self) -> frozenset[str]:
        res = self.store.query(
            "SELECT name FROM system.tables WHERE database = {db:String}", {"db": self.store.database}
        )
        return frozenset(str(r[0]) for r in res.rows)
