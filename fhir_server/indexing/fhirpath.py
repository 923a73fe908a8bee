"""A compiler for the subset of FHIRPath that the R4 SearchParameter expressions use.

Generic FHIRPath evaluation costs milliseconds per resource, so each expression is parsed once and
compiled into closures over plain JSON (dicts and lists), with every step's JSON keys resolved at
compile time from the element types of the official StructureDefinitions (choice types included:
`Observation.value.as(Quantity)` reads the key `valueQuantity`). https://hl7.org/fhirpath/N1/

Supported: dotted paths through arrays, `|`, `[n]`, `as`/`is` (operators and functions),
`ofType()`, `where()`, `exists()`, `extension('url')`, `hasExtension('url')`, `resolve()` (only as
`resolve() is Type`, decided by the reference's type), `=`, `!=`, `and`, `or`, `not()`, string,
number and boolean literals, `%resource` and `$this`. Anything else raises CompileError.

Nodes are `(value, type)` pairs: the JSON value and its FHIR type name ("CodeableConcept",
"Observation.component" for a backbone element, "code|<system>" for a code with an implicit system).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

Node = tuple[Any, str]
Eval = Callable[[list[Node], Node], list[Node]]  # (input nodes, root node) -> output nodes
Ast = tuple[Any, ...]

RESOURCE = "Resource"
RESOLVED = "@resolved"  # the type of resolve()'s placeholder nodes: only `is T` may follow


class CompileError(ValueError):
    """The expression uses a form this compiler does not support, or names no such element."""


# ---------------------------------------------------------------------------------------------
# Element types


@cache
def _type_table() -> Mapping[str, Mapping[str, list[str]]]:
    text = resources.files("fhir_server.indexing").joinpath("data/element_types.json").read_text()
    table: Mapping[str, Mapping[str, list[str]]] = json.loads(text)
    return table


@cache
def resource_types() -> frozenset[str]:
    """Every concrete resource type the StructureDefinitions define (each has a `meta` element)."""
    abstract = {"DomainResource"}  # Resource itself is not in the table
    return frozenset(t for t, els in _type_table().items() if "." not in t and "meta" in els) - abstract


def base_type(t: str) -> str:
    """`code|http://...` -> `code`: the FHIR type name without our implicit-system suffix."""
    return t.split("|", 1)[0]


@cache
def children(owner: str, name: str) -> tuple[tuple[str, str], ...]:
    """(JSON key, type) pairs for element `name` of `owner`; several for a choice element."""
    table = _type_table()
    elements = table.get("DomainResource" if owner == RESOURCE else owner)
    if elements is None:
        return ()  # primitives, resolve() placeholders and unknown types have no children
    if name in elements:
        return tuple((name, t) for t in elements[name])
    choices = elements.get(name + "[x]")
    if choices is None:
        return ()
    return tuple((name + base_type(t)[0].upper() + base_type(t)[1:], t) for t in choices)


def runtime_type(value: Any, declared: str) -> str:
    """A contained/inline resource is typed by its resourceType, everything else as declared."""
    if declared == RESOURCE and isinstance(value, dict):
        return str(value.get("resourceType", RESOURCE))
    return declared


# ---------------------------------------------------------------------------------------------
# Parsing

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)|(?P<op>!=|[.()\[\]|=,])"
    r"|(?P<var>[%$][A-Za-z_]\w*)|(?P<id>[A-Za-z_]\w*|`[^`]+`))"
)
_BINARY_LEVELS: tuple[frozenset[str], ...] = (
    frozenset({"or", "xor", "implies"}),
    frozenset({"and"}),
    frozenset({"=", "!="}),
    frozenset({"|"}),
)


def tokenize(src: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(src):
        if src[pos:].strip() == "":
            break
        match = _TOKEN.match(src, pos)
        if match is None or match.end() == pos:
            raise CompileError(f"cannot tokenize {src[pos:]!r}")
        tokens.append(match.group(match.lastgroup or "id"))
        pos = match.end()
    return tokens


@dataclass
class _Parser:
    tokens: list[str]
    pos: int = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise CompileError(f"expected {expected or 'a token'}, found {tok!r}")
        self.pos += 1
        return tok

    def binary(self, level: int = 0) -> Ast:
        if level == len(_BINARY_LEVELS):
            return self.type_expr()
        left = self.binary(level + 1)
        while self.peek() in _BINARY_LEVELS[level]:
            op = self.take()
            left = ("binop", op, left, self.binary(level + 1))
        return left

    def type_expr(self) -> Ast:
        expr = self.postfix()
        while self.peek() in ("as", "is"):
            op = self.take()
            expr = ("type", op, expr, self.take())
        return expr

    def postfix(self) -> Ast:
        expr = self.primary()
        while self.peek() in (".", "["):
            if self.take() == "[":
                expr = ("index", expr, int(self.take()))
                self.take("]")
            else:
                expr = ("path", expr, self.invocation())
        return expr

    def primary(self) -> Ast:
        tok = self.peek()
        if tok == "(":
            self.take()
            inner = self.binary()
            self.take(")")
            return inner
        if tok is not None and tok.startswith("'"):
            return ("lit", _unquote(self.take()), "string")
        if tok is not None and tok[0].isdigit():
            return ("lit", float(self.take()), "decimal")
        if tok in ("true", "false"):
            return ("lit", self.take() == "true", "boolean")
        if tok is not None and tok[0] in "%$":
            return ("var", self.take())
        return self.invocation()

    def invocation(self) -> Ast:
        name = self.take().strip("`")
        if self.peek() != "(":
            return ("ident", name)
        self.take("(")
        args: list[Ast] = []
        while self.peek() != ")":
            args.append(self.binary())
            if self.peek() == ",":
                self.take()
        self.take(")")
        return ("call", name, tuple(args))


def _unquote(tok: str) -> str:
    return re.sub(r"\\(.)", r"\1", tok[1:-1])


@cache
def parse(src: str) -> Ast:
    parser = _Parser(tokenize(src))
    ast = parser.binary()
    if parser.peek() is not None:
        raise CompileError(f"unexpected {parser.peek()!r} in {src!r}")
    return ast


def union_branches(ast: Ast) -> list[Ast]:
    """The top-level `|` operands of an expression."""
    if ast[0] == "binop" and ast[1] == "|":
        return union_branches(ast[2]) + union_branches(ast[3])
    return [ast]


# ---------------------------------------------------------------------------------------------
# Compilation


@dataclass(frozen=True)
class Compiled:
    """A compiled expression: `run(nodes, root)` and the types its results may have."""

    run: Eval
    types: frozenset[str]
    empty: bool = False  # statically empty: every branch was about another resource type
    identity: bool = False  # returns its input unchanged (a type-name root), so can be skipped
    # The JSON keys of the input that the first step reads: when the input lacks them all, the
    # result is empty, so extraction can skip the parameter. None when unknown (or when an absent
    # element still gives a value, as `exists()` does).
    first_keys: frozenset[str] | None = None
    steps: tuple[_Step, ...] | None = None  # set when it is a plain path, so paths can be fused


EMPTY = Compiled(lambda nodes, root: [], frozenset(), empty=True, first_keys=frozenset())


@dataclass
class Context:
    """What the compiler knows: the resource type an expression is compiled for."""

    resource_type: str
    all_types: frozenset[str] = field(default_factory=resource_types)


def compile_expression(src: str, resource_type: str, input_types: Iterable[str] | None = None) -> Compiled:
    """Compile `src` for resources of `resource_type` (or relative to `input_types`)."""
    ctx = Context(resource_type)
    start = frozenset(input_types) if input_types is not None else frozenset({resource_type})
    return _compile(parse(src), start, ctx)


def _compile(ast: Ast, types: frozenset[str], ctx: Context) -> Compiled:
    kind = ast[0]
    if kind == "ident":
        return _compile_ident(ast[1], types, ctx)
    if kind == "path":
        return _compile_path(ast[1], ast[2], types, ctx)
    if kind == "call":
        return _compile_call(ast[1], ast[2], types, ctx)
    if kind == "binop":
        return _compile_binop(ast[1], ast[2], ast[3], types, ctx)
    if kind == "type" and ast[1] == "as":
        return _compile_as(ast[2], ast[3], types, ctx)
    if kind == "type":
        return _compile_type_op(ast[1], _compile(ast[2], types, ctx), ast[3])
    if kind == "index":
        return _compile_index(_compile(ast[1], types, ctx), ast[2])
    if kind == "lit":
        return _constant([(ast[1], ast[2])])
    if kind == "var":
        return _compile_var(ast[1], types, ctx)
    raise CompileError(f"unsupported expression form {kind}")


def _constant(nodes: list[Node]) -> Compiled:
    return Compiled(lambda _nodes, _root: list(nodes), frozenset(t for _, t in nodes))


def _compile_var(name: str, types: frozenset[str], ctx: Context) -> Compiled:
    if name == "%resource":
        return Compiled(lambda _nodes, root: [root], frozenset({ctx.resource_type}))
    if name == "$this":
        return Compiled(lambda nodes, _root: nodes, types)
    raise CompileError(f"unsupported variable {name}")


def _compile_ident(name: str, types: frozenset[str], ctx: Context) -> Compiled:
    """An element name, or a type name that selects (or, for another type, drops) the resource."""
    if name[0].isupper():
        if name in (ctx.resource_type, RESOURCE, "DomainResource"):
            return Compiled(lambda nodes, _root: nodes, types, identity=True)
        if name in ctx.all_types:
            return EMPTY
        raise CompileError(f"unknown type {name}")
    return _compile_step(name, types)


def _compile_as(inner: Ast, type_name: str, types: frozenset[str], ctx: Context) -> Compiled:
    """`X.name as T`: when X.name is a choice element, read only the key of type T."""
    if inner[0] == "path" and inner[2][0] == "ident" and not inner[2][1][0].isupper():
        base = _compile(inner[1], types, ctx)
        if base.empty:
            return EMPTY
        step = _compile_step(inner[2][1], base.types, only=type_name)
        return _compile_path_parts(base, step)
    if inner[0] == "ident" and not inner[1][0].isupper():
        return _compile_step(inner[1], types, only=type_name)
    return _filter_type(_compile(inner, types, ctx), type_name)


@dataclass
class _Step:
    """One navigation step: element `name` (only choice type `only`), with pairs per input type."""

    name: str
    only: str | None
    table: dict[str, tuple[tuple[str, str], ...]]

    def pairs(self, t: str) -> tuple[tuple[str, str], ...]:
        found = self.table.get(t)
        if found is None:  # a type known only at run time (a contained resource): resolve once
            found = self.table[t] = _choice(children(t, self.name), self.only)
        return found


def _choice(pairs: tuple[tuple[str, str], ...], only: str | None) -> tuple[tuple[str, str], ...]:
    return pairs if only is None else tuple(p for p in pairs if _type_matches(p[1], only))


def _compile_step(name: str, types: frozenset[str], only: str | None = None) -> Compiled:
    """Child element `name` of each input node, flattening arrays; `only` keeps one choice type."""
    table = {t: _choice(children(t, name), only) for t in types}
    out = frozenset(ct for pairs in table.values() for _, ct in pairs)
    if not out:
        raise CompileError(f"no element {name!r}{f' of type {only}' if only else ''} on {sorted(types)}")
    keys = frozenset(key for pairs in table.values() for key, _ in pairs)
    return _steps((_Step(name, only, table),), out, keys)


def _steps(steps: tuple[_Step, ...], out: frozenset[str], keys: frozenset[str] | None) -> Compiled:
    """Consecutive steps fused into one closure: paths are most of what extraction runs."""

    def run(nodes: list[Node], _root: Node) -> list[Node]:
        for step in steps:
            result: list[Node] = []
            for value, t in nodes:
                if type(value) is dict:
                    _collect(value, step.pairs(t), result)
            if not result:
                return result
            nodes = result
        return nodes

    return Compiled(run, out, first_keys=keys, steps=steps)


def _collect(value: dict[str, Any], pairs: tuple[tuple[str, str], ...], result: list[Node]) -> None:
    for key, ct in pairs:
        child = value.get(key)
        if child is None:
            continue
        if ct == RESOURCE:  # rare: contained and Bundle.entry resources take their own type
            items = child if type(child) is list else [child]
            result.extend((item, runtime_type(item, ct)) for item in items if item is not None)
        elif type(child) is list:
            result.extend((item, ct) for item in child if item is not None)
        else:
            result.append((child, ct))


def _compile_path(base_ast: Ast, member_ast: Ast, types: frozenset[str], ctx: Context) -> Compiled:
    base = _compile(base_ast, types, ctx)
    if base.empty:
        return EMPTY
    if member_ast[0] == "call" and member_ast[1] in ("as", "ofType") and base_ast[0] in ("path", "ident"):
        return _compile_as(base_ast, _type_arg(member_ast[2], member_ast[1]), types, ctx)
    return _compile_path_parts(base, _compile(member_ast, base.types, ctx))


def _compile_path_parts(base: Compiled, member: Compiled) -> Compiled:
    if member.empty:
        return EMPTY
    if base.identity or member.identity:
        return member if base.identity else base
    if base.steps is not None and member.steps is not None:
        return _steps(base.steps + member.steps, member.types, base.first_keys)
    first, second = base.run, member.run
    return Compiled(
        lambda nodes, root: second(first(nodes, root), root), member.types, first_keys=base.first_keys
    )


def _compile_index(base: Compiled, index: int) -> Compiled:
    run = base.run
    return Compiled(
        lambda nodes, root: run(nodes, root)[index : index + 1],
        base.types,
        base.empty,
        first_keys=base.first_keys,
    )


def _compile_type_op(op: str, base: Compiled, type_name: str) -> Compiled:
    if op == "as":
        return _filter_type(base, type_name)
    return _is_type(base, type_name)


def _type_matches(t: str, type_name: str) -> bool:
    # Case-insensitive because the R4 definitions write both `as(dateTime)` and `as(DateTime)`.
    return base_type(t).lower() == type_name.lower()


def _filter_type(base: Compiled, type_name: str) -> Compiled:
    """`as T` / `ofType(T)`: keep the nodes of type T (choice alternatives are already typed)."""
    kept = frozenset(t for t in base.types if _type_matches(t, type_name) or t == RESOURCE)
    if not kept or base.empty:
        return EMPTY if base.empty else _raise(f"no {type_name} among {sorted(base.types)}")
    run = base.run
    if kept == base.types and RESOURCE not in kept:
        return base

    def filtered(nodes: list[Node], root: Node) -> list[Node]:
        return [n for n in run(nodes, root) if _type_matches(n[1], type_name)]

    return Compiled(filtered, kept, first_keys=base.first_keys)


def _is_type(base: Compiled, type_name: str) -> Compiled:
    run = base.run

    def check(nodes: list[Node], root: Node) -> list[Node]:
        found = run(nodes, root)
        if len(found) != 1:
            return []
        return [(_type_matches(found[0][1], type_name), "boolean")]

    return Compiled(check, frozenset({"boolean"}), first_keys=base.first_keys)


def _raise(message: str) -> Compiled:
    raise CompileError(message)


# ---------------------------------------------------------------------------------------------
# Functions


def _string_arg(args: tuple[Ast, ...], fn: str) -> str:
    if len(args) != 1 or args[0][0] != "lit" or not isinstance(args[0][1], str):
        raise CompileError(f"{fn}() needs one string literal")
    return str(args[0][1])


def _type_arg(args: tuple[Ast, ...], fn: str) -> str:
    if len(args) != 1 or args[0][0] != "ident":
        raise CompileError(f"{fn}() needs one type name")
    return str(args[0][1])


def _compile_call(name: str, args: tuple[Ast, ...], types: frozenset[str], ctx: Context) -> Compiled:
    identity = Compiled(lambda nodes, _root: nodes, types)
    if name in ("as", "ofType"):
        return _filter_type(identity, _type_arg(args, name))
    if name == "is":
        return _is_type(identity, _type_arg(args, name))
    if name == "where":
        return _compile_where(args, types, ctx)
    if name == "extension":
        return _compile_extension(_string_arg(args, name), types)
    if name == "hasExtension":
        return _boolean_of(_compile_extension(_string_arg(args, name), types), bool)
    if name == "exists" and not args:
        return _boolean_of(identity, bool)
    if name == "empty" and not args:
        return _boolean_of(identity, lambda nodes: not nodes)
    if name == "not" and not args:
        return _compile_not(identity)
    if name == "resolve" and not args:
        return _compile_resolve(types)
    raise CompileError(f"unsupported function {name}()")


def _boolean_of(base: Compiled, test: Callable[[list[Node]], bool]) -> Compiled:
    run = base.run
    return Compiled(lambda nodes, root: [(test(run(nodes, root)), "boolean")], frozenset({"boolean"}))


def _compile_not(base: Compiled) -> Compiled:
    run = base.run

    def negate(nodes: list[Node], root: Node) -> list[Node]:
        found = run(nodes, root)
        return [(not found[0][0], "boolean")] if len(found) == 1 and isinstance(found[0][0], bool) else []

    return Compiled(negate, frozenset({"boolean"}))


def _compile_extension(url: str, types: frozenset[str]) -> Compiled:
    step = _compile_step("extension", types).run

    def run(nodes: list[Node], root: Node) -> list[Node]:
        return [n for n in step(nodes, root) if type(n[0]) is dict and n[0].get("url") == url]

    return Compiled(run, frozenset({"Extension"}), first_keys=frozenset({"extension"}))


def _compile_where(args: tuple[Ast, ...], types: frozenset[str], ctx: Context) -> Compiled:
    """`where(criteria)`: keep each input node for which the criteria give exactly `true`."""
    if len(args) != 1:
        raise CompileError("where() needs one argument")
    arg = args[0]
    if arg[0] == "type" and arg[1] == "is" and arg[2] == ("call", "resolve", ()):
        return _where_reference_to(arg[3], types)
    criteria = _compile(arg, types, ctx).run

    def run(nodes: list[Node], root: Node) -> list[Node]:
        return [n for n in nodes if criteria([n], root) == [(True, "boolean")]]

    return Compiled(run, types)


def _where_reference_to(type_name: str, types: frozenset[str]) -> Compiled:
    """`where(resolve() is T)` decided by the reference's type, without resolving it."""
    _compile_resolve(types)  # the same static check

    def run(nodes: list[Node], _root: Node) -> list[Node]:
        return [n for n in nodes if reference_type(n[0]) == type_name]

    return Compiled(run, types)


def reference_type(value: Any) -> str | None:
    """The resource type a Reference points at: from `reference` (relative or absolute) or `type`."""
    if type(value) is not dict:
        return None
    ref = value.get("reference")
    if isinstance(ref, str) and not ref.startswith("#"):
        parts = ref.split("/_history/", 1)[0].rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2][:1].isupper():
            return parts[-2]
    declared = value.get("type")
    return declared if isinstance(declared, str) else None


def _compile_resolve(types: frozenset[str]) -> Compiled:
    """resolve() without a database: a placeholder typed by the reference, fit only for `is T`."""
    if "Reference" not in types:
        raise CompileError(f"resolve() on {sorted(types)}")

    def run(nodes: list[Node], _root: Node) -> list[Node]:
        result: list[Node] = []
        for value, _ in nodes:
            target = reference_type(value)
            if target is not None:
                result.append((None, target))
        return result

    return Compiled(run, frozenset({RESOLVED}))


# ---------------------------------------------------------------------------------------------
# Operators


def _compile_binop(op: str, left_ast: Ast, right_ast: Ast, types: frozenset[str], ctx: Context) -> Compiled:
    left = _compile(left_ast, types, ctx)
    right = _compile(right_ast, types, ctx)
    if op == "|":
        return _union(left, right)
    if op in ("=", "!="):
        return _equality(left, right, negate=op == "!=")
    if op in ("and", "or"):
        return _logic(left, right, op)
    raise CompileError(f"unsupported operator {op}")


def _union(left: Compiled, right: Compiled) -> Compiled:
    if left.empty or right.empty:
        return right if left.empty else left
    run_l, run_r = left.run, right.run

    def run(nodes: list[Node], root: Node) -> list[Node]:
        return run_l(nodes, root) + run_r(nodes, root)  # duplicates are removed with the entries

    keys = None if left.first_keys is None or right.first_keys is None else left.first_keys | right.first_keys
    return Compiled(run, left.types | right.types, first_keys=keys)


def _equality(left: Compiled, right: Compiled, *, negate: bool) -> Compiled:
    run_l, run_r = left.run, right.run

    def run(nodes: list[Node], root: Node) -> list[Node]:
        a, b = run_l(nodes, root), run_r(nodes, root)
        if not a or not b:
            return []
        same = [v for v, _ in a] == [v for v, _ in b]
        return [(same != negate, "boolean")]

    return Compiled(run, frozenset({"boolean"}))


def _truth(nodes: list[Node]) -> bool | None:
    """FHIRPath's three-valued singleton truth: true, false, or empty (None)."""
    if len(nodes) != 1:
        return None
    value = nodes[0][0]
    return value if isinstance(value, bool) else True


def _logic(left: Compiled, right: Compiled, op: str) -> Compiled:
    run_l, run_r = left.run, right.run
    decisive = op == "or"  # the value that settles the result on its own

    def run(nodes: list[Node], root: Node) -> list[Node]:
        a, b = _truth(run_l(nodes, root)), _truth(run_r(nodes, root))
        if a is decisive or b is decisive:
            return [(decisive, "boolean")]
        if a is None or b is None:
            return []
        return [(not decisive, "boolean")]

    return Compiled(run, frozenset({"boolean"}))
