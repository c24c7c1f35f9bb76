"""The parser of Go's ``text/template`` (``text/template/parse/parse.go``).

A port that keeps Go's token buffer (three-token lookahead) so that error
messages name the same line Go names: ``template: <name>:<line>: <msg>``.
Unknown functions are parse errors (``function "x" not defined``), as are
undefined variables, ``{{break}}`` outside ``{{range}}`` and unclosed
actions (``unexpected EOF``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NoReturn

from . import lexer as lx
from .gostrconv import (
    RangeErr,
    SyntaxErr,
    parse_float,
    parse_int_base0,
    parse_uint_base0,
    quote,
    unquote,
    unquote_char,
)
from .lexer import Item
from .nodes import (
    N_BOOL,
    N_DOT,
    N_ELSE,
    N_END,
    N_FIELD,
    N_NIL,
    N_NUMBER,
    N_STRING,
    N_VARIABLE,
    ActionNode,
    BoolNode,
    BreakNode,
    ChainNode,
    CommandNode,
    CommentNode,
    ContinueNode,
    DotNode,
    ElseNode,
    EndNode,
    FieldNode,
    IdentifierNode,
    IfNode,
    ListNode,
    NilNode,
    Node,
    NumberNode,
    PipeNode,
    RangeNode,
    StringNode,
    TemplateNode,
    TextNode,
    VariableNode,
    WithNode,
    is_empty_tree,
)

#: Go allows 10,000 nested parentheses; Python's stack allows fewer.
MAX_STACK_DEPTH = 100
#: Nesting of control structures (Go has no explicit limit; its stack does).
MAX_NESTING = 100


class ParseError(Exception):
    """A parse error: Go's message plus where it happened (character position)."""

    def __init__(self, message: str, line: int, pos: int, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.pos = pos
        self.reason = reason


class _Tokens:
    """The shared token stream (Go's lexer object, shared by nested trees)."""

    __slots__ = ("i", "items")

    def __init__(self, items: list[Item]) -> None:
        self.items = items
        self.i = 0

    def next_item(self) -> Item:
        item = self.items[self.i]
        if self.i < len(self.items) - 1:
            self.i += 1
        return item


class Tree:
    """One parsed template (the main one or a ``define``/``block``)."""

    def __init__(
        self,
        name: str,
        parse_name: str,
        funcs: Collection[str],
        tokens: _Tokens,
        treeset: dict[str, Tree],
    ) -> None:
        self.name = name
        self.parse_name = parse_name
        self.funcs = funcs
        self.lex = tokens
        self.treeset = treeset
        self.root: ListNode | None = None
        self.token: list[Item] = [Item(lx.T_EOF, 0, "", 1)] * 3
        self.peek_count = 0
        self.vars: list[str] = ["$"]
        self.action_line = 0
        self.range_depth = 0
        self.stack_depth = 0
        self.nesting = 0

    # -- token buffer ----------------------------------------------------

    def next(self) -> Item:
        if self.peek_count > 0:
            self.peek_count -= 1
        else:
            self.token[0] = self.lex.next_item()
        return self.token[self.peek_count]

    def backup(self) -> None:
        self.peek_count += 1

    def backup2(self, t1: Item) -> None:
        self.token[1] = t1
        self.peek_count = 2

    def backup3(self, t2: Item, t1: Item) -> None:
        self.token[1] = t1
        self.token[2] = t2
        self.peek_count = 3

    def peek(self) -> Item:
        if self.peek_count > 0:
            return self.token[self.peek_count - 1]
        self.peek_count = 1
        self.token[0] = self.lex.next_item()
        return self.token[0]

    def next_non_space(self) -> Item:
        while True:
            token = self.next()
            if token.typ != lx.T_SPACE:
                return token

    def peek_non_space(self) -> Item:
        token = self.next_non_space()
        self.backup()
        return token

    # -- errors ----------------------------------------------------------

    def errorf(self, msg: str) -> NoReturn:
        self.root = None
        tok = self.token[0]
        raise ParseError(f"template: {self.parse_name}:{tok.line}: {msg}", tok.line, tok.pos, msg)

    def expect(self, expected: int, context: str) -> Item:
        token = self.next_non_space()
        if token.typ != expected:
            self.unexpected(token, context)
        return token

    def expect_one_of(self, e1: int, e2: int, context: str) -> Item:
        token = self.next_non_space()
        if token.typ != e1 and token.typ != e2:
            self.unexpected(token, context)
        return token

    def unexpected(self, token: Item, context: str) -> NoReturn:
        if token.typ == lx.T_ERROR:
            extra = ""
            if self.action_line != 0 and self.action_line != token.line:
                extra = f" in action started at {self.parse_name}:{self.action_line}"
                if token.val.endswith(" action"):
                    extra = extra[len(" in action") :]
            self.errorf(f"{token}{extra}")
        self.errorf(f"unexpected {token} in {context}")

    # -- top level -------------------------------------------------------

    def parse(self) -> None:
        root = self.root = ListNode(self.peek().pos)
        while self.peek().typ != lx.T_EOF:
            if self.peek().typ == lx.T_LDELIM:
                delim = self.next()
                if self.next_non_space().typ == lx.T_DEFINE:
                    new_t = Tree("definition", self.parse_name, self.funcs, self.lex, self.treeset)
                    new_t.parse_definition()
                    continue
                self.backup2(delim)
            n = self.text_or_action()
            if n.type == N_END or n.type == N_ELSE:
                self.errorf(f"unexpected {n}")
            root.append(n)

    def add(self) -> None:
        tree = self.treeset.get(self.name)
        if tree is None or is_empty_tree(tree.root):
            self.treeset[self.name] = self
            return
        if not is_empty_tree(self.root):
            self.errorf(f"template: multiple definition of template {quote(self.name)}")

    def parse_definition(self) -> None:
        context = "define clause"
        name = self.expect_one_of(lx.T_STRING, lx.T_RAWSTRING, context)
        try:
            self.name = unquote(name.val)
        except SyntaxErr as e:
            self.errorf(str(e))
        self.expect(lx.T_RDELIM, context)
        root, end = self.item_list()
        self.root = root
        if end.type != N_END:
            self.errorf(f"unexpected {end} in {context}")
        self.add()

    def item_list(self) -> tuple[ListNode, Node]:
        lst = ListNode(self.peek_non_space().pos)
        while self.peek_non_space().typ != lx.T_EOF:
            n = self.text_or_action()
            if n.type == N_END or n.type == N_ELSE:
                return lst, n
            lst.append(n)
        self.errorf("unexpected EOF")

    def text_or_action(self) -> Node:
        token = self.next_non_space()
        if token.typ == lx.T_TEXT:
            return TextNode(token.pos, token.val)
        if token.typ == lx.T_LDELIM:
            self.action_line = token.line
            try:
                return self.action()
            finally:
                self.action_line = 0
        if token.typ == lx.T_COMMENT:
            return CommentNode(token.pos, token.val)
        self.unexpected(token, "input")

    def action(self) -> Node:
        token = self.next_non_space()
        typ = token.typ
        if typ == lx.T_BLOCK:
            return self.block_control()
        if typ == lx.T_BREAK:
            return self.break_control(token.pos, token.line)
        if typ == lx.T_CONTINUE:
            return self.continue_control(token.pos, token.line)
        if typ == lx.T_ELSE:
            return self.else_control()
        if typ == lx.T_END:
            return self.end_control()
        if typ == lx.T_IF:
            return IfNode(*self.parse_control("if"))
        if typ == lx.T_RANGE:
            return RangeNode(*self.parse_control("range"))
        if typ == lx.T_TEMPLATE:
            return self.template_control()
        if typ == lx.T_WITH:
            return WithNode(*self.parse_control("with"))
        self.backup()
        token = self.peek()
        return ActionNode(token.pos, token.line, self.pipeline("command", lx.T_RDELIM))

    def break_control(self, pos: int, line: int) -> Node:
        token = self.next_non_space()
        if token.typ != lx.T_RDELIM:
            self.unexpected(token, "{{break}}")
        if self.range_depth == 0:
            self.errorf("{{break}} outside {{range}}")
        return BreakNode(pos, line)

    def continue_control(self, pos: int, line: int) -> Node:
        token = self.next_non_space()
        if token.typ != lx.T_RDELIM:
            self.unexpected(token, "{{continue}}")
        if self.range_depth == 0:
            self.errorf("{{continue}} outside {{range}}")
        return ContinueNode(pos, line)

    # -- pipelines -------------------------------------------------------

    def pipeline(self, context: str, end: int) -> PipeNode:
        token = self.peek_non_space()
        pipe = PipeNode(token.pos, token.line)
        while True:  # Go's "decls:" label
            v = self.peek_non_space()
            if v.typ == lx.T_VARIABLE:
                self.next()
                token_after_variable = self.peek()
                nxt = self.peek_non_space()
                if nxt.typ == lx.T_ASSIGN or nxt.typ == lx.T_DECLARE:
                    pipe.is_assign = nxt.typ == lx.T_ASSIGN
                    self.next_non_space()
                    pipe.decl.append(VariableNode(v.pos, v.val))
                    self.vars.append(v.val)
                elif nxt.typ == lx.T_CHAR and nxt.val == ",":
                    self.next_non_space()
                    pipe.decl.append(VariableNode(v.pos, v.val))
                    self.vars.append(v.val)
                    if context == "range" and len(pipe.decl) < 2:
                        if self.peek_non_space().typ in (lx.T_VARIABLE, lx.T_RDELIM, lx.T_RPAREN):
                            continue
                        self.errorf("range can only initialize variables")
                    self.errorf(f"too many declarations in {context}")
                elif token_after_variable.typ == lx.T_SPACE:
                    self.backup3(v, token_after_variable)
                else:
                    self.backup2(v)
            break
        while True:
            token = self.next_non_space()
            if token.typ == end:
                self.check_pipeline(pipe, context)
                return pipe
            if token.typ in (
                lx.T_BOOL,
                lx.T_CHARCONST,
                lx.T_COMPLEX,
                lx.T_DOT,
                lx.T_FIELD,
                lx.T_IDENT,
                lx.T_NUMBER,
                lx.T_NIL,
                lx.T_RAWSTRING,
                lx.T_STRING,
                lx.T_VARIABLE,
                lx.T_LPAREN,
            ):
                self.backup()
                pipe.cmds.append(self.command())
            else:
                self.unexpected(token, context)

    def check_pipeline(self, pipe: PipeNode, context: str) -> None:
        if not pipe.cmds:
            self.errorf(f"missing value for {context}")
        for i, c in enumerate(pipe.cmds[1:]):
            if c.args[0].type in (N_BOOL, N_DOT, N_NIL, N_NUMBER, N_STRING):
                self.errorf(f"non executable command in pipeline stage {i + 2}")

    def parse_control(
        self, context: str
    ) -> tuple[int, int, PipeNode, ListNode, ListNode | None]:
        nvars = len(self.vars)
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            self.errorf("max nesting depth exceeded")
        try:
            pipe = self.pipeline(context, lx.T_RDELIM)
            if context == "range":
                self.range_depth += 1
            lst, nxt = self.item_list()
            if context == "range":
                self.range_depth -= 1
            else_list: ListNode | None = None
            if nxt.type == N_ELSE:
                if context == "if" and self.peek().typ == lx.T_IF:
                    self.next()
                    else_list = ListNode(nxt.pos)
                    else_list.append(IfNode(*self.parse_control("if")))
                elif context == "with" and self.peek().typ == lx.T_WITH:
                    self.next()
                    else_list = ListNode(nxt.pos)
                    else_list.append(WithNode(*self.parse_control("with")))
                else:
                    else_list, nxt = self.item_list()
                    if nxt.type != N_END:
                        self.errorf(f"expected end; found {nxt}")
            return pipe.pos, pipe.line, pipe, lst, else_list
        finally:
            del self.vars[nvars:]
            self.nesting -= 1

    def end_control(self) -> Node:
        return EndNode(self.expect(lx.T_RDELIM, "end").pos)

    def else_control(self) -> Node:
        peek = self.peek_non_space()
        if peek.typ == lx.T_IF or peek.typ == lx.T_WITH:
            return ElseNode(peek.pos, peek.line)
        token = self.expect(lx.T_RDELIM, "else")
        return ElseNode(token.pos, token.line)

    def block_control(self) -> Node:
        context = "block clause"
        token = self.next_non_space()
        name = self.parse_template_name(token, context)
        pipe = self.pipeline(context, lx.T_RDELIM)
        block = Tree(name, self.parse_name, self.funcs, self.lex, self.treeset)
        root, end = block.item_list()
        block.root = root
        if end.type != N_END:
            self.errorf(f"unexpected {end} in {context}")
        block.add()
        return TemplateNode(token.pos, token.line, name, pipe)

    def template_control(self) -> Node:
        context = "template clause"
        token = self.next_non_space()
        name = self.parse_template_name(token, context)
        pipe: PipeNode | None = None
        if self.next_non_space().typ != lx.T_RDELIM:
            self.backup()
            pipe = self.pipeline(context, lx.T_RDELIM)
        return TemplateNode(token.pos, token.line, name, pipe)

    def parse_template_name(self, token: Item, context: str) -> str:
        if token.typ in (lx.T_STRING, lx.T_RAWSTRING):
            try:
                return unquote(token.val)
            except SyntaxErr as e:
                self.errorf(str(e))
        self.unexpected(token, context)

    # -- commands and operands -------------------------------------------

    def command(self) -> CommandNode:
        cmd = CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            token = self.next()
            if token.typ == lx.T_SPACE:
                continue
            if token.typ in (lx.T_RDELIM, lx.T_RPAREN):
                self.backup()
            elif token.typ != lx.T_PIPE:
                self.unexpected(token, "operand")
            break
        if not cmd.args:
            self.errorf("empty command")
        return cmd

    def operand(self) -> Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().typ == lx.T_FIELD:
            chain = ChainNode(self.peek().pos, node)
            while self.peek().typ == lx.T_FIELD:
                chain.add(self.next().val)
            if node.type == N_FIELD:
                return FieldNode(chain.pos, str(chain))
            if node.type == N_VARIABLE:
                return VariableNode(chain.pos, str(chain))
            if node.type in (N_BOOL, N_STRING, N_NUMBER, N_NIL, N_DOT):
                self.errorf(f"unexpected . after term {quote(str(node))}")
            return chain
        return node

    def term(self) -> Node | None:
        token = self.next_non_space()
        typ = token.typ
        if typ == lx.T_IDENT:
            if token.val not in self.funcs:
                self.errorf(f"function {quote(token.val)} not defined")
            return IdentifierNode(token.pos, token.val)
        if typ == lx.T_DOT:
            return DotNode(token.pos)
        if typ == lx.T_NIL:
            return NilNode(token.pos)
        if typ == lx.T_VARIABLE:
            return self.use_var(token.pos, token.val)
        if typ == lx.T_FIELD:
            return FieldNode(token.pos, token.val)
        if typ == lx.T_BOOL:
            return BoolNode(token.pos, token.val == "true")
        if typ in (lx.T_CHARCONST, lx.T_COMPLEX, lx.T_NUMBER):
            try:
                return new_number(token.pos, token.val, typ)
            except ValueError as e:
                self.errorf(str(e))
        if typ == lx.T_LPAREN:
            if self.stack_depth >= MAX_STACK_DEPTH:
                self.errorf("max expression depth exceeded")
            self.stack_depth += 1
            try:
                return self.pipeline("parenthesized pipeline", lx.T_RPAREN)
            finally:
                self.stack_depth -= 1
        if typ in (lx.T_STRING, lx.T_RAWSTRING):
            try:
                s = unquote(token.val)
            except SyntaxErr as e:
                self.errorf(str(e))
            return StringNode(token.pos, token.val, s)
        self.backup()
        return None

    def use_var(self, pos: int, name: str) -> Node:
        v = VariableNode(pos, name)
        if v.ident[0] in self.vars:
            return v
        self.errorf(f"undefined variable {quote(v.ident[0])}")


def _parse_complex(text: str) -> complex:
    """``fmt.Sscan`` of a Go complex literal such as ``1+2i``."""
    body = text[:-1]
    for k in range(len(body) - 1, 0, -1):
        if body[k] in "+-" and body[k - 1] not in "eEpP":
            return complex(parse_float(body[:k]), parse_float(body[k:]))
    raise SyntaxErr


def new_number(pos: int, text: str, typ: int) -> NumberNode:
    """Go's ``newNumber``: every representation the literal allows."""
    n = NumberNode(pos, text)
    if typ == lx.T_CHARCONST:
        try:
            r, _, tail = unquote_char(text, 1, text[0])
        except SyntaxErr:
            raise ValueError("invalid syntax") from None
        if text[tail:] != "'":
            raise ValueError(f"malformed character constant: {text}")
        n.int64 = n.uint64 = r
        n.float64 = float(r)
        n.is_int = n.is_uint = n.is_float = True
        return n
    if typ == lx.T_COMPLEX:
        try:
            n.complex128 = _parse_complex(text)
        except (SyntaxErr, RangeErr):
            raise ValueError(f"expected integer; found {text}") from None
        n.is_complex = True
        _simplify_complex(n)
        return n
    if text.endswith("i"):
        try:
            f = parse_float(text[:-1])
        except (SyntaxErr, RangeErr):
            pass
        else:
            n.is_complex = True
            n.complex128 = complex(0, f)
            _simplify_complex(n)
            return n
    u = 0
    try:
        u = parse_uint_base0(text)
    except (SyntaxErr, RangeErr):
        pass
    else:
        n.is_uint = True
        n.uint64 = u
    try:
        i = parse_int_base0(text)
    except (SyntaxErr, RangeErr):
        pass
    else:
        n.is_int = True
        n.int64 = i
        if i == 0:
            n.is_uint = True
            n.uint64 = u
    if n.is_int:
        n.is_float = True
        n.float64 = float(n.int64)
    elif n.is_uint:
        n.is_float = True
        n.float64 = float(n.uint64)
    else:
        try:
            f = parse_float(text)
        except (SyntaxErr, RangeErr):
            pass
        else:
            if not any(c in text for c in ".eEpP"):
                raise ValueError(f"integer overflow: {quote(text)}")
            n.is_float = True
            n.float64 = f
            if f == int(f) and -(1 << 63) <= int(f) < 1 << 63:
                n.is_int = True
                n.int64 = int(f)
            if f == int(f) and 0 <= int(f) < 1 << 64:
                n.is_uint = True
                n.uint64 = int(f)
    if not (n.is_int or n.is_uint or n.is_float):
        raise ValueError(f"illegal number syntax: {quote(text)}")
    return n


def _simplify_complex(n: NumberNode) -> None:
    c = n.complex128
    n.is_float = c.imag == 0
    if n.is_float:
        f = c.real
        n.float64 = f
        n.is_int = f == int(f) and -(1 << 63) <= int(f) < 1 << 63
        if n.is_int:
            n.int64 = int(f)
        n.is_uint = f == int(f) and 0 <= int(f) < 1 << 64
        if n.is_uint:
            n.uint64 = int(f)


def parse(text: str, name: str, funcs: Collection[str]) -> dict[str, Tree]:
    """Parse ``text`` into its set of named trees (the main one is ``name``).

    Raises :class:`ParseError`.
    """
    tokens = _Tokens(lx.lex(text, "break" not in funcs, "continue" not in funcs))
    treeset: dict[str, Tree] = {}
    t = Tree(name, name, funcs, tokens, treeset)
    t.parse()
    t.add()
    return treeset


__all__ = ["ParseError", "Tree", "new_number", "parse"]
