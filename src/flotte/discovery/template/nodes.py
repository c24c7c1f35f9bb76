"""Parse-tree nodes of Go's ``text/template`` (``text/template/parse/node.go``).

Each node knows its position (a character offset into the template text) and
prints itself exactly as Go's ``Node.String()`` does: execution errors quote
the node being evaluated (``at <getv "/x">``), so the spelling matters.
"""

from __future__ import annotations

from typing import Final

from .gostrconv import quote

N_TEXT: Final = 0
N_ACTION: Final = 1
N_BOOL: Final = 2
N_CHAIN: Final = 3
N_COMMAND: Final = 4
N_DOT: Final = 5
N_ELSE: Final = 6
N_END: Final = 7
N_FIELD: Final = 8
N_IDENTIFIER: Final = 9
N_IF: Final = 10
N_LIST: Final = 11
N_NIL: Final = 12
N_NUMBER: Final = 13
N_PIPE: Final = 14
N_RANGE: Final = 15
N_STRING: Final = 16
N_TEMPLATE: Final = 17
N_VARIABLE: Final = 18
N_WITH: Final = 19
N_COMMENT: Final = 20
N_BREAK: Final = 21
N_CONTINUE: Final = 22


class Node:
    """Base class: a node type and a position."""

    __slots__ = ("pos",)
    type: int = -1

    def __init__(self, pos: int) -> None:
        self.pos = pos


class ListNode(Node):
    __slots__ = ("nodes",)
    type = N_LIST

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.nodes: list[Node] = []

    def append(self, n: Node) -> None:
        self.nodes.append(n)

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


class TextNode(Node):
    __slots__ = ("text",)
    type = N_TEXT

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(pos)
        self.text = text

    def __str__(self) -> str:
        return self.text


class CommentNode(Node):
    __slots__ = ("text",)
    type = N_COMMENT

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(pos)
        self.text = text

    def __str__(self) -> str:
        return "{{" + self.text + "}}"


class VariableNode(Node):
    """``$x`` or ``$x.Field.Field``; ``ident[0]`` includes the dollar."""

    __slots__ = ("ident",)
    type = N_VARIABLE

    def __init__(self, pos: int, ident: str) -> None:
        super().__init__(pos)
        self.ident = ident.split(".")

    def __str__(self) -> str:
        return ".".join(self.ident)


class PipeNode(Node):
    __slots__ = ("cmds", "decl", "is_assign", "line")
    type = N_PIPE

    def __init__(self, pos: int, line: int) -> None:
        super().__init__(pos)
        self.line = line
        self.is_assign = False
        self.decl: list[VariableNode] = []
        self.cmds: list[CommandNode] = []

    def __str__(self) -> str:
        s = ""
        if self.decl:
            s = ", ".join(str(v) for v in self.decl)
            s += " = " if self.is_assign else " := "
        return s + " | ".join(str(c) for c in self.cmds)


class ActionNode(Node):
    __slots__ = ("line", "pipe")
    type = N_ACTION

    def __init__(self, pos: int, line: int, pipe: PipeNode) -> None:
        super().__init__(pos)
        self.line = line
        self.pipe = pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


class CommandNode(Node):
    __slots__ = ("args",)
    type = N_COMMAND

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.args: list[Node] = []

    def __str__(self) -> str:
        parts = []
        for a in self.args:
            if isinstance(a, PipeNode):
                parts.append("(" + str(a) + ")")
            else:
                parts.append(str(a))
        return " ".join(parts)


class IdentifierNode(Node):
    """A function name."""

    __slots__ = ("ident",)
    type = N_IDENTIFIER

    def __init__(self, pos: int, ident: str) -> None:
        super().__init__(pos)
        self.ident = ident

    def __str__(self) -> str:
        return self.ident


class DotNode(Node):
    __slots__ = ()
    type = N_DOT

    def __str__(self) -> str:
        return "."


class NilNode(Node):
    __slots__ = ()
    type = N_NIL

    def __str__(self) -> str:
        return "nil"


class FieldNode(Node):
    """``.Field`` or ``.A.B``; ``ident`` excludes the dots."""

    __slots__ = ("ident",)
    type = N_FIELD

    def __init__(self, pos: int, ident: str) -> None:
        super().__init__(pos)
        self.ident = ident[1:].split(".")

    def __str__(self) -> str:
        return "".join("." + i for i in self.ident)


class ChainNode(Node):
    """A term followed by field accesses: ``(pipe).Field``, ``func.Method``."""

    __slots__ = ("field", "node")
    type = N_CHAIN

    def __init__(self, pos: int, node: Node) -> None:
        super().__init__(pos)
        self.node = node
        self.field: list[str] = []

    def add(self, field: str) -> None:
        self.field.append(field[1:])

    def __str__(self) -> str:
        s = "(" + str(self.node) + ")" if isinstance(self.node, PipeNode) else str(self.node)
        return s + "".join("." + f for f in self.field)


class BoolNode(Node):
    __slots__ = ("true",)
    type = N_BOOL

    def __init__(self, pos: int, true: bool) -> None:
        super().__init__(pos)
        self.true = true

    def __str__(self) -> str:
        return "true" if self.true else "false"


class NumberNode(Node):
    """A numeric constant, held under every Go type that can represent it.

    This is how Go simulates untyped constants: ``1.0`` is also an integer,
    ``'a'`` is also 97, and the parameter type decides which one is used.
    """

    __slots__ = (
        "complex128",
        "float64",
        "int64",
        "is_complex",
        "is_float",
        "is_int",
        "is_uint",
        "text",
        "uint64",
    )
    type = N_NUMBER

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(pos)
        self.text = text
        self.is_int = self.is_uint = self.is_float = self.is_complex = False
        self.int64 = 0
        self.uint64 = 0
        self.float64 = 0.0
        self.complex128 = 0j

    def __str__(self) -> str:
        return self.text


class StringNode(Node):
    __slots__ = ("quoted", "text")
    type = N_STRING

    def __init__(self, pos: int, quoted: str, text: str) -> None:
        super().__init__(pos)
        self.quoted = quoted
        self.text = text

    def __str__(self) -> str:
        return self.quoted


class EndNode(Node):
    __slots__ = ()
    type = N_END

    def __str__(self) -> str:
        return "{{end}}"


class ElseNode(Node):
    __slots__ = ("line",)
    type = N_ELSE

    def __init__(self, pos: int, line: int) -> None:
        super().__init__(pos)
        self.line = line

    def __str__(self) -> str:
        return "{{else}}"


class BranchNode(Node):
    """``if``, ``range`` and ``with``."""

    __slots__ = ("else_list", "line", "list", "pipe")
    keyword = ""

    def __init__(
        self, pos: int, line: int, pipe: PipeNode, lst: ListNode, else_list: ListNode | None
    ) -> None:
        super().__init__(pos)
        self.line = line
        self.pipe = pipe
        self.list = lst
        self.else_list = else_list

    def __str__(self) -> str:
        s = "{{" + self.keyword + " " + str(self.pipe) + "}}" + str(self.list)
        if self.else_list is not None:
            s += "{{else}}" + str(self.else_list)
        return s + "{{end}}"


class IfNode(BranchNode):
    __slots__ = ()
    type = N_IF
    keyword = "if"


class RangeNode(BranchNode):
    __slots__ = ()
    type = N_RANGE
    keyword = "range"


class WithNode(BranchNode):
    __slots__ = ()
    type = N_WITH
    keyword = "with"


class BreakNode(Node):
    __slots__ = ("line",)
    type = N_BREAK

    def __init__(self, pos: int, line: int) -> None:
        super().__init__(pos)
        self.line = line

    def __str__(self) -> str:
        return "{{break}}"


class ContinueNode(Node):
    __slots__ = ("line",)
    type = N_CONTINUE

    def __init__(self, pos: int, line: int) -> None:
        super().__init__(pos)
        self.line = line

    def __str__(self) -> str:
        return "{{continue}}"


class TemplateNode(Node):
    __slots__ = ("line", "name", "pipe")
    type = N_TEMPLATE

    def __init__(self, pos: int, line: int, name: str, pipe: PipeNode | None) -> None:
        super().__init__(pos)
        self.line = line
        self.name = name
        self.pipe = pipe

    def __str__(self) -> str:
        s = "{{template " + quote(self.name)
        if self.pipe is not None:
            s += " " + str(self.pipe)
        return s + "}}"


_SPACE = " \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def is_empty_tree(n: Node | None) -> bool:
    """Go's ``IsEmptyTree``: nothing but white space and comments."""
    if n is None or isinstance(n, CommentNode):
        return True
    if isinstance(n, ListNode):
        return all(is_empty_tree(x) for x in n.nodes)
    if isinstance(n, TextNode):
        return n.text.strip(_SPACE) == ""
    return False
