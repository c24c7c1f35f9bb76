"""The evaluator: parse trees compiled to Python closures.

Each node becomes a closure built once at compile time, so rendering does no
tree walking, no dispatch on node types and no attribute lookups on nodes.
The closures mirror Go's ``text/template/exec.go`` function by function,
including its bookkeeping of "the node being evaluated" (``s.at(node)``):
Go reports an error at whatever node it touched last, which is why a type
error deep in ``join (jsonArray (getv "/j")) ","`` is reported
``at <"/j">``.  Every ``st.node = ...`` below is one of Go's ``s.at`` calls.

Signatures of the compiled closures:

* statement: ``(state, dot) -> None`` (writes to ``state.out``);
* pipeline:  ``(state, dot) -> value``;
* command:   ``(state, dot, final) -> value`` where ``final`` is the previous
  pipeline stage's value or :data:`MISSING`;
* argument:  ``(state, dot, gotype) -> value`` (Go's ``evalArg``: literals
  are converted according to the parameter type).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Final, NoReturn

from .errors import TemplateExecError
from .gofmt import format_value, sorted_map_keys
from .gostrconv import byte_len, quote
from .nodes import (
    N_ACTION,
    N_BOOL,
    N_BREAK,
    N_CHAIN,
    N_COMMENT,
    N_CONTINUE,
    N_DOT,
    N_FIELD,
    N_IDENTIFIER,
    N_IF,
    N_NIL,
    N_NUMBER,
    N_PIPE,
    N_RANGE,
    N_STRING,
    N_TEMPLATE,
    N_TEXT,
    N_VARIABLE,
    N_WITH,
    ActionNode,
    BoolNode,
    BranchNode,
    ChainNode,
    CommandNode,
    FieldNode,
    IdentifierNode,
    ListNode,
    Node,
    NumberNode,
    PipeNode,
    StringNode,
    TemplateNode,
    TextNode,
    VariableNode,
)
from .values import (
    IFACE_NIL,
    K_BOOL,
    K_COMPLEX,
    K_FLOAT,
    K_INT,
    K_STRING,
    K_UINT,
    MISSING,
    T_NONE,
    T_VALUE,
    GoError,
    GoFunc,
    GoType,
    KVPair,
    go_type_name,
    is_true,
    struct_fields,
)

#: Go's limit is 100,000; each level costs several Python frames.
MAX_EXEC_DEPTH: Final = 100

Stmt = Callable[["State", Any], None]
Pipe = Callable[["State", Any], Any]
Cmd = Callable[["State", Any, Any], Any]
Arg = Callable[["State", Any, GoType], Any]

_ABSENT: Final = object()
_NO_ARGS: tuple[Arg, ...] = ()


class _Break(Exception):
    """``{{break}}`` unwinding to its ``range``."""


class _Continue(Exception):
    """``{{continue}}`` unwinding to its ``range``."""


class Source:
    """The template text and its file-level name, to locate nodes for errors."""

    __slots__ = ("name", "text")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text

    def locate(self, pos: int) -> tuple[int, int]:
        """(1-based line, Go's 0-based *byte* column) of character ``pos``."""
        text = self.text
        line = text.count("\n", 0, pos) + 1
        start = text.rfind("\n", 0, pos) + 1
        return line, byte_len(text[start:pos])


class Compiled:
    """One compiled template of a set: its name and body."""

    __slots__ = ("body", "name")

    def __init__(self, name: str, body: Stmt) -> None:
        self.name = name
        self.body = body


class State:
    """One execution: output, variable stack, current node, current template."""

    __slots__ = ("ctx", "depth", "funcs", "node", "out", "source", "templates", "tmpl", "vars")

    def __init__(
        self,
        source: Source,
        templates: Mapping[str, Compiled],
        tmpl: Compiled,
        funcs: Mapping[str, GoFunc],
        ctx: Any,
        data: Any,
    ) -> None:
        self.out: list[str] = []
        self.vars: list[list[Any]] = [["$", data]]
        self.node: Node | None = None
        self.tmpl = tmpl
        self.templates = templates
        self.funcs = funcs
        self.ctx = ctx
        self.source = source
        self.depth = 0


def errorf(st: State, msg: str) -> NoReturn:
    """Go's ``state.errorf``: stop with the location of the current node."""
    node = st.node
    name = st.tmpl.name
    source = st.source
    if node is None:
        raise TemplateExecError(
            f"template: {name}: {msg}",
            name=source.name,
            executing=name,
            line=0,
            col=0,
            context="",
            reason=msg,
        )
    line, col = source.locate(node.pos)
    context = str(node)
    raise TemplateExecError(
        f"template: {source.name}:{line}:{col}: executing {quote(name)} at <{context}>: {msg}",
        name=source.name,
        executing=name,
        line=line,
        col=col,
        context=context,
        reason=msg,
    )


# --------------------------------------------------------------------------
# runtime helpers (Go's state methods)


def var_value(st: State, name: str) -> Any:
    vars_ = st.vars
    for i in range(len(vars_) - 1, -1, -1):
        if vars_[i][0] == name:
            return vars_[i][1]
    errorf(st, f"undefined variable: {name}")


def set_var(st: State, name: str, value: Any) -> None:
    vars_ = st.vars
    for i in range(len(vars_) - 1, -1, -1):
        if vars_[i][0] == name:
            vars_[i][1] = value
            return
    errorf(st, f"undefined variable: {name}")


def validate(st: State, value: Any, typ: GoType) -> Any:
    """Go's ``validateType``: is ``value`` assignable to a parameter of ``typ``?"""
    if value is None:
        zero = typ.zero
        if zero is not None:
            return zero()
        errorf(st, f"invalid value; expected {typ.name}")
    if typ.any:
        return None if value is IFACE_NIL else value
    if value is IFACE_NIL:
        errorf(st, f"wrong type for value; expected {typ.name}; got interface {{}}")
    check = typ.check
    if check is not None and check(value):
        return value
    errorf(st, f"wrong type for value; expected {typ.name}; got {go_type_name(value)}")


def ideal_value(n: NumberNode) -> tuple[bool, Any]:
    """A number literal where no type is expected: the syntax decides.

    Returns ``(ok, value)``; not ok means Go's ``overflows int`` error.  Go
    quirk kept: ``0x1.8`` (a hex float without exponent) is neither float nor
    int here and evaluates to nothing.
    """
    text = n.text
    if n.is_complex:
        return True, n.complex128
    is_hex_int = (
        len(text) > 2 and text[0] == "0" and text[1] in "xX" and not any(c in text for c in "pP")
    )
    if n.is_float and not is_hex_int and text[0] != "'" and any(c in text for c in ".eEpP"):
        return True, n.float64
    if n.is_int:
        return True, n.int64
    if n.is_uint:
        return False, None
    return True, None


def ideal_constant(st: State, n: NumberNode) -> Any:
    st.node = n
    ok, value = ideal_value(n)
    if not ok:
        errorf(st, f"{n.text} overflows int")
    return value


def _literal_mismatch(st: State, n: Node, typ: GoType) -> NoReturn:
    k = typ.kind
    if k == K_BOOL:
        errorf(st, f"expected bool; found {n}")
    if k == K_COMPLEX:
        errorf(st, f"expected complex; found {n}")
    if k == K_FLOAT:
        errorf(st, f"expected float; found {n}")
    if k == K_INT:
        errorf(st, f"expected integer; found {n}")
    if k == K_STRING:
        errorf(st, f"expected string; found {n}")
    if k == K_UINT:
        errorf(st, f"expected unsigned integer; found {n}")
    errorf(st, f"can't handle {n} for arg of type {typ.name}")


def call(
    st: State,
    dot: Any,
    f: GoFunc,
    node: Node,
    name: str,
    args: tuple[Arg, ...],
    final: Any,
) -> Any:
    """Go's ``evalCall``: check the arity, evaluate and type the arguments, call."""
    nargs = len(args)
    num_in = nargs if final is MISSING else nargs + 1
    params = f.params
    nfixed = len(params)
    variadic = f.variadic
    if variadic is not None:
        if num_in < nfixed:
            errorf(st, f"wrong number of args for {name}: want at least {nfixed} got {nargs}")
    elif num_in != nfixed:
        errorf(st, f"wrong number of args for {name}: want {nfixed} got {num_in}")
    special = f.special
    if special == "and" or special == "or":
        want = special == "or"
        v: Any = None
        for a in args:
            v = a(st, dot, T_VALUE)
            if is_true(v) == want:
                return v
        if final is not MISSING:
            v = validate(st, final, T_VALUE)
        return v
    if nargs == 1 and final is MISSING and nfixed == 1:
        argv = [args[0](st, dot, params[0])]
    else:
        argv = []
        i = 0
        while i < nfixed and i < nargs:
            argv.append(args[i](st, dot, params[i]))
            i += 1
        if variadic is not None:
            while i < nargs:
                argv.append(args[i](st, dot, variadic))
                i += 1
        if final is not MISSING:
            if variadic is not None:
                t = params[num_in - 1] if num_in - 1 < nfixed else variadic
            else:
                t = params[nfixed - 1]
            argv.append(validate(st, final, t))
    try:
        if f.ctx:
            return f.fn(st.ctx, *argv)
        if special == "call":
            return call_value(argv[0], argv[1:])
        return f.fn(*argv)
    except Exception as e:
        call_failed(st, node, name, e)


def call_failed(st: State, node: Node, name: str, e: Exception) -> NoReturn:
    """A function returned an error (or raised: Go's ``safeCall`` turns a
    panic into the call's error too)."""
    if isinstance(e, TemplateExecError | RecursionError):
        raise e
    st.node = node
    errorf(st, f"error calling {name}: {e}")


def fast_call(f: GoFunc, node: Node, name: str, args: tuple[Arg, ...]) -> Pipe | None:
    """A specialised :func:`call` for one call site and one function.

    Used when the call site has no piped-in value and the arity is right,
    which is most calls; anything unusual goes through :func:`call`.
    """
    nargs = len(args)
    params = f.params
    nfixed = len(params)
    if f.special is not None:
        return None
    if f.variadic is None:
        if nargs != nfixed:
            return None
        types = params
    else:
        if nargs < nfixed:
            return None
        types = params + (f.variadic,) * (nargs - nfixed)
    fn = f.fn
    if nargs == 0:
        if f.ctx:

            def call0c(st: State, dot: Any) -> Any:
                try:
                    return fn(st.ctx)
                except Exception as e:
                    call_failed(st, node, name, e)

            return call0c

        def call0(st: State, dot: Any) -> Any:
            try:
                return fn()
            except Exception as e:
                call_failed(st, node, name, e)

        return call0
    if nargs == 1:
        a0, t0 = args[0], types[0]
        if f.ctx:

            def call1c(st: State, dot: Any) -> Any:
                x0 = a0(st, dot, t0)
                try:
                    return fn(st.ctx, x0)
                except Exception as e:
                    call_failed(st, node, name, e)

            return call1c

        def call1(st: State, dot: Any) -> Any:
            x0 = a0(st, dot, t0)
            try:
                return fn(x0)
            except Exception as e:
                call_failed(st, node, name, e)

        return call1
    if nargs == 2 and not f.ctx:
        b0, u0, b1, u1 = args[0], types[0], args[1], types[1]

        def call2(st: State, dot: Any) -> Any:
            x0 = b0(st, dot, u0)
            x1 = b1(st, dot, u1)
            try:
                return fn(x0, x1)
            except Exception as e:
                call_failed(st, node, name, e)

        return call2
    pairs = tuple(zip(args, types, strict=True))
    with_ctx = f.ctx

    def calln(st: State, dot: Any) -> Any:
        argv = [a(st, dot, t) for a, t in pairs]
        try:
            if with_ctx:
                return fn(st.ctx, *argv)
            return fn(*argv)
        except Exception as e:
            call_failed(st, node, name, e)

    return calln


def call_value(fn: Any, args: list[Any]) -> Any:
    """The ``call`` builtin: call a function value found in the data."""
    if fn is None:
        raise GoError("call of nil")
    if isinstance(fn, GoFunc):
        params, variadic = fn.params, fn.variadic
        if variadic is None and len(args) != len(params):
            raise GoError(f"wrong number of args: got {len(args)} want {len(params)}")
        if variadic is not None and len(args) < len(params):
            raise GoError(f"wrong number of args: got {len(args)} want at least {len(params)}")
        for i, a in enumerate(args):
            t = params[i] if i < len(params) else variadic
            assert t is not None
            if a is None:
                if t.zero is None:
                    raise GoError(f"arg {i}: value is nil; should be of type {t.name}")
                continue
            if not t.any and not (t.check is not None and t.check(a)):
                raise GoError(f"arg {i}: value has type {go_type_name(a)}; should be {t.name}")
        if fn.ctx:
            raise GoError("non-function of type context function")
        return fn.fn(*args)
    if not callable(fn) or isinstance(fn, type):
        raise GoError(f"non-function of type {go_type_name(fn)}")
    return fn(*args)


def eval_field(
    st: State,
    dot: Any,
    name: str,
    node: Node,
    args: tuple[Arg, ...],
    final: Any,
    recv: Any,
    iface: bool = False,
) -> Any:
    """Go's ``evalField``: a method call, a map element or a struct field.

    ``iface`` says the receiver came out of a ``map[string]interface{}``, so
    its static Go type (in error messages) is ``interface {}``.
    """
    if recv is None:
        return None
    if recv is IFACE_NIL:
        errorf(st, f"nil pointer evaluating interface {{}}.{name}")
    has_args = len(args) > 0 or final is not MISSING
    if isinstance(recv, Mapping):
        if has_args:
            errorf(st, f"{name} is not a method but has arguments")
        v = recv.get(name, _ABSENT)
        if v is _ABSENT:
            return None
        return IFACE_NIL if v is None else v
    methods: dict[str, GoFunc] | None = getattr(type(recv), "go_methods", None)
    if methods is not None:
        m = methods.get(name)
        if m is not None:
            return call(st, dot, m.bind(recv), node, name, args, final)
    fields = struct_fields(recv)
    if fields is not None and name in fields:
        if has_args:
            errorf(st, f"{name} has arguments but cannot be invoked as function")
        return getattr(recv, name)
    typ = "interface {}" if iface else go_type_name(recv)
    errorf(st, f"can't evaluate field {name} in type {typ}")


def eval_field_chain(
    st: State,
    dot: Any,
    recv: Any,
    node: Node,
    idents: list[str],
    args: tuple[Arg, ...],
    final: Any,
) -> Any:
    """``.X.Y.Z`` (possibly followed by arguments for a final method)."""
    iface = False
    for ident in idents[:-1]:
        nxt = eval_field(st, dot, ident, node, _NO_ARGS, MISSING, recv, iface)
        iface = isinstance(recv, Mapping)
        recv = nxt
    return eval_field(st, dot, idents[-1], node, args, final, recv, iface)


def not_a_function(st: State, args: list[Node], final: Any) -> None:
    if len(args) > 1 or final is not MISSING:
        errorf(st, f"can't give argument to non-function {args[0]}")


def print_value(st: State, node: Node, v: Any) -> str:
    """How an action prints its value (Go's ``printValue``)."""
    if v is None or v is IFACE_NIL:
        return "<no value>"
    if isinstance(v, GoFunc) or inspect.isroutine(v):
        st.node = node
        errorf(st, f"can't print {node} of type {go_type_name(v)}")
    return format_value(v)


# --------------------------------------------------------------------------
# the compiler


class Compiler:
    """Compiles the trees of one template set into closures.

    ``funcs`` is the function table known at compile time: call sites are
    specialised for it (and fall back to the generic path when a render
    supplies a different implementation).
    """

    def __init__(self, funcs: Mapping[str, GoFunc]) -> None:
        self.funcs = funcs

    def compile_list(self, lst: ListNode | None) -> Stmt:
        if lst is None:
            return _noop
        fns: list[Stmt] = []
        for n in lst.nodes:
            f = self.compile_node(n)
            if f is not None:
                fns.append(f)
        if not fns:
            return _noop
        if len(fns) == 1:
            return fns[0]
        if len(fns) == 2:
            f0, f1 = fns

            def run2(st: State, dot: Any) -> None:
                f0(st, dot)
                f1(st, dot)

            return run2
        if len(fns) == 3:
            g0, g1, g2 = fns

            def run3(st: State, dot: Any) -> None:
                g0(st, dot)
                g1(st, dot)
                g2(st, dot)

            return run3
        seq = tuple(fns)

        def run(st: State, dot: Any) -> None:
            for f in seq:
                f(st, dot)

        return run

    def compile_node(self, n: Node) -> Stmt | None:
        t = n.type
        if t == N_TEXT:
            assert isinstance(n, TextNode)
            text = n.text

            def emit(st: State, dot: Any) -> None:
                st.out.append(text)

            return emit
        if t == N_ACTION:
            assert isinstance(n, ActionNode)
            return self.compile_action(n)
        if t in (N_IF, N_WITH):
            assert isinstance(n, BranchNode)
            return self.compile_if(n, t == N_WITH)
        if t == N_RANGE:
            assert isinstance(n, BranchNode)
            return self.compile_range(n)
        if t == N_TEMPLATE:
            assert isinstance(n, TemplateNode)
            return self.compile_template(n)
        if t == N_BREAK:
            return _break
        if t == N_CONTINUE:
            return _continue
        if t == N_COMMENT:
            return None
        raise AssertionError(f"unknown node {n!r}")

    # -- statements --------------------------------------------------------

    def compile_action(self, node: ActionNode) -> Stmt:
        pipe = self.compile_pipe(node.pipe)
        if node.pipe.decl:

            def declare(st: State, dot: Any) -> None:
                st.node = node
                pipe(st, dot)

            return declare

        def action(st: State, dot: Any) -> None:
            st.node = node
            v = pipe(st, dot)
            if type(v) is str:
                st.out.append(v)
            else:
                st.out.append(print_value(st, node, v))

        return action

    def compile_if(self, node: BranchNode, is_with: bool) -> Stmt:
        pipe = self.compile_pipe(node.pipe)
        body = self.compile_list(node.list)
        else_body = self.compile_list(node.else_list) if node.else_list is not None else None

        def if_(st: State, dot: Any) -> None:
            vars_ = st.vars
            mark = len(vars_)
            val = pipe(st, dot)
            if is_true(val):
                body(st, val if is_with else dot)
            elif else_body is not None:
                else_body(st, dot)
            if len(vars_) > mark:
                del vars_[mark:]

        return if_

    def compile_range(self, node: BranchNode) -> Stmt:
        pipe = self.compile_pipe(node.pipe)
        body = self.compile_list(node.list)
        else_body = self.compile_list(node.else_list) if node.else_list is not None else None
        decl = [v.ident[0] for v in node.pipe.decl]
        ndecl = len(decl)
        is_assign = node.pipe.is_assign

        def set_vars(st: State, mark: int, index: Any, elem: Any) -> None:
            if is_assign:
                if ndecl > 1:
                    set_var(st, decl[0], index)
                    set_var(st, decl[1], elem)
                else:
                    set_var(st, decl[0], elem)
            else:
                st.vars[mark - 1][1] = elem
                if ndecl > 1:
                    st.vars[mark - 2][1] = index

        def range_(st: State, dot: Any) -> None:
            st.node = node
            vars_ = st.vars
            mark0 = len(vars_)
            val = pipe(st, dot)
            mark = len(vars_)
            if val is None:
                pass
            elif isinstance(val, list | tuple):
                if val:
                    plain = type(val) is list or type(val) is tuple
                    for i, elem in enumerate(val):
                        if plain and elem is None:
                            elem = IFACE_NIL
                        if ndecl:
                            set_vars(st, mark, i, elem)
                        try:
                            body(st, elem)
                        except _Continue:
                            pass
                        except _Break:
                            break
                        finally:
                            if len(vars_) > mark:
                                del vars_[mark:]
                    del vars_[mark0:]
                    return
            elif isinstance(val, Mapping):
                if val:
                    for key in sorted_map_keys(val if type(val) is dict else dict(val)):
                        elem = val[key]
                        if elem is None:
                            elem = IFACE_NIL
                        if ndecl:
                            set_vars(st, mark, key, elem)
                        try:
                            body(st, elem)
                        except _Continue:
                            pass
                        except _Break:
                            break
                        finally:
                            if len(vars_) > mark:
                                del vars_[mark:]
                    del vars_[mark0:]
                    return
            else:
                errorf(st, f"range can't iterate over {format_value(val)}")
            if else_body is not None:
                else_body(st, dot)
            del vars_[mark0:]

        return range_

    def compile_template(self, node: TemplateNode) -> Stmt:
        name = node.name
        pipe = self.compile_pipe(node.pipe) if node.pipe is not None else None

        def template(st: State, dot: Any) -> None:
            st.node = node
            tmpl = st.templates.get(name)
            if tmpl is None:
                errorf(st, f"template {quote(name)} not defined")
            if st.depth >= MAX_EXEC_DEPTH:
                errorf(st, f"exceeded maximum template depth ({MAX_EXEC_DEPTH})")
            new_dot = pipe(st, dot) if pipe is not None else None
            saved_vars, saved_tmpl = st.vars, st.tmpl
            st.vars = [["$", new_dot]]
            st.tmpl = tmpl
            st.depth += 1
            tmpl.body(st, new_dot)
            st.depth -= 1
            st.vars, st.tmpl = saved_vars, saved_tmpl

        return template

    # -- pipelines and commands -------------------------------------------

    def compile_pipe(self, pipe: PipeNode) -> Pipe:
        cmds = tuple(self.compile_cmd(c) for c in pipe.cmds)
        decl = [v.ident[0] for v in pipe.decl]
        is_assign = pipe.is_assign
        if len(cmds) == 1 and not decl:
            c0 = cmds[0]

            def pipe1(st: State, dot: Any) -> Any:
                st.node = pipe
                v = c0(st, dot, MISSING)
                return None if v is IFACE_NIL else v

            return pipe1

        def pipeline(st: State, dot: Any) -> Any:
            st.node = pipe
            v: Any = MISSING
            for c in cmds:
                v = c(st, dot, v)
                if v is IFACE_NIL:
                    v = None
            for name in decl:
                if is_assign:
                    set_var(st, name, v)
                else:
                    st.vars.append([name, v])
            return v

        return pipeline

    def compile_cmd(self, cmd: CommandNode) -> Cmd:
        first = cmd.args[0]
        rest = cmd.args[1:]
        t = first.type
        if t == N_FIELD:
            assert isinstance(first, FieldNode)
            return self.field_cmd(first, rest)
        if t == N_CHAIN:
            assert isinstance(first, ChainNode)
            return self.chain_cmd(first, rest)
        if t == N_IDENTIFIER:
            assert isinstance(first, IdentifierNode)
            return self.function_cmd(first, cmd, rest)
        if t == N_VARIABLE:
            assert isinstance(first, VariableNode)
            return self.variable_cmd(first, rest)
        args = cmd.args
        if t == N_PIPE:
            assert isinstance(first, PipeNode)
            inner = self.compile_pipe(first)

            def paren(st: State, dot: Any, final: Any) -> Any:
                not_a_function(st, args, final)
                return inner(st, dot)

            return paren
        if t == N_DOT:

            def dot_cmd(st: State, dot: Any, final: Any) -> Any:
                st.node = first
                if final is not MISSING or len(args) > 1:
                    not_a_function(st, args, final)
                return dot

            return dot_cmd
        if t == N_NIL:

            def nil_cmd(st: State, dot: Any, final: Any) -> Any:
                st.node = first
                not_a_function(st, args, final)
                errorf(st, "nil is not a command")

            return nil_cmd
        if t == N_NUMBER:
            assert isinstance(first, NumberNode)
            num = first

            def number_cmd(st: State, dot: Any, final: Any) -> Any:
                st.node = num
                not_a_function(st, args, final)
                return ideal_constant(st, num)

            return number_cmd
        if t in (N_STRING, N_BOOL):
            assert isinstance(first, StringNode | BoolNode)
            const = first.text if isinstance(first, StringNode) else first.true

            def const_cmd(st: State, dot: Any, final: Any) -> Any:
                st.node = first
                not_a_function(st, args, final)
                return const

            return const_cmd
        raise AssertionError(f"can't evaluate command {first}")

    def field_cmd(self, field: FieldNode, rest: list[Node]) -> Cmd:
        args = tuple(self.compile_arg(a) for a in rest)
        idents = field.ident
        if len(idents) == 1 and not args:
            name = idents[0]

            def field1(st: State, dot: Any, final: Any) -> Any:
                st.node = field
                if final is MISSING:
                    t = type(dot)
                    if t is dict:
                        v = dot.get(name, _ABSENT)
                        if v is _ABSENT:
                            return None
                        return IFACE_NIL if v is None else v
                    if t is KVPair:
                        if name == "Key":
                            return dot.Key
                        if name == "Value":
                            return dot.Value
                return eval_field(st, dot, name, field, _NO_ARGS, final, dot)

            return field1

        def field_chain(st: State, dot: Any, final: Any) -> Any:
            st.node = field
            return eval_field_chain(st, dot, dot, field, idents, args, final)

        return field_chain

    def chain_cmd(self, chain: ChainNode, rest: list[Node]) -> Cmd:
        args = tuple(self.compile_arg(a) for a in rest)
        receiver = self.compile_arg(chain.node)
        fields = chain.field

        def chain_(st: State, dot: Any, final: Any) -> Any:
            st.node = chain
            if chain.node.type == N_NIL:
                errorf(st, f"indirection through explicit nil in {chain}")
            recv = receiver(st, dot, T_NONE)
            return eval_field_chain(st, dot, recv, chain, fields, args, final)

        return chain_

    def variable_cmd(self, var: VariableNode, rest: list[Node]) -> Cmd:
        args = tuple(self.compile_arg(a) for a in rest)
        name = var.ident[0]
        fields = var.ident[1:]

        def variable(st: State, dot: Any, final: Any) -> Any:
            st.node = var
            value = var_value(st, name)
            if not fields:
                if args or final is not MISSING:
                    errorf(st, f"can't give argument to non-function {var}")
                return value
            return eval_field_chain(st, dot, value, var, fields, args, final)

        return variable

    def function_cmd(self, ident: IdentifierNode, node: Node, rest: list[Node]) -> Cmd:
        args = tuple(self.compile_arg(a) for a in rest)
        name = ident.ident
        f0 = self.funcs.get(name)
        fast = fast_call(f0, node, name, args) if f0 is not None else None

        def function(st: State, dot: Any, final: Any) -> Any:
            st.node = ident
            f = st.funcs.get(name)
            if f is f0 and fast is not None and final is MISSING:
                return fast(st, dot)
            if f is None:
                errorf(st, f"{quote(name)} is not a defined function")
            return call(st, dot, f, node, name, args, final)

        return function

    # -- arguments -----------------------------------------------------------

    def compile_arg(self, n: Node) -> Arg:
        t = n.type
        if t == N_DOT:

            def dot_arg(st: State, dot: Any, typ: GoType) -> Any:
                st.node = n
                return validate(st, dot, typ)

            return dot_arg
        if t == N_NIL:

            def nil_arg(st: State, dot: Any, typ: GoType) -> Any:
                st.node = n
                if typ.zero is not None:
                    return typ.zero()
                errorf(st, f"cannot assign nil to {typ.name}")

            return nil_arg
        cmd: Cmd | None = None
        if t == N_FIELD:
            assert isinstance(n, FieldNode)
            cmd = self.field_cmd(n, [])
        elif t == N_VARIABLE:
            assert isinstance(n, VariableNode)
            cmd = self.variable_cmd(n, [])
        elif t == N_IDENTIFIER:
            assert isinstance(n, IdentifierNode)
            cmd = self.function_cmd(n, n, [])
        elif t == N_CHAIN:
            assert isinstance(n, ChainNode)
            cmd = self.chain_cmd(n, [])
        if cmd is not None:
            c = cmd

            def computed_arg(st: State, dot: Any, typ: GoType) -> Any:
                st.node = n
                v = c(st, dot, MISSING)
                if type(v) is typ.exact:
                    return v
                return validate(st, v, typ)

            return computed_arg
        if t == N_PIPE:
            assert isinstance(n, PipeNode)
            pipe = self.compile_pipe(n)

            def pipe_arg(st: State, dot: Any, typ: GoType) -> Any:
                st.node = n
                v = pipe(st, dot)
                if type(v) is typ.exact:
                    return v
                return validate(st, v, typ)

            return pipe_arg
        if t == N_STRING:
            assert isinstance(n, StringNode)
            text = n.text

            def string_arg(st: State, dot: Any, typ: GoType) -> Any:
                st.node = n
                if typ.kind == K_STRING or typ.any:
                    return text
                _literal_mismatch(st, n, typ)

            return string_arg
        if t == N_BOOL:
            assert isinstance(n, BoolNode)
            truth = n.true

            def bool_arg(st: State, dot: Any, typ: GoType) -> Any:
                st.node = n
                if typ.kind == K_BOOL or typ.any:
                    return truth
                _literal_mismatch(st, n, typ)

            return bool_arg
        if t == N_NUMBER:
            assert isinstance(n, NumberNode)
            num = n
            ideal_ok, ideal = ideal_value(num)

            def number_arg(st: State, dot: Any, typ: GoType) -> Any:
                st.node = num
                k = typ.kind
                if k == K_INT:
                    if num.is_int:
                        return num.int64
                elif typ.any:
                    if ideal_ok:
                        return ideal
                    return ideal_constant(st, num)
                elif k == K_FLOAT:
                    if num.is_float:
                        return num.float64
                elif k == K_UINT:
                    if num.is_uint:
                        return num.uint64
                elif k == K_COMPLEX and num.is_complex:
                    return num.complex128
                _literal_mismatch(st, num, typ)

            return number_arg
        raise AssertionError(f"can't compile argument {n}")


def _noop(st: State, dot: Any) -> None:
    return None


def _break(st: State, dot: Any) -> None:
    raise _Break


def _continue(st: State, dot: Any) -> None:
    raise _Continue
