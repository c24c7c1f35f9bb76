"""The lexer of Go's ``text/template`` (``text/template/parse/lex.go``).

A faithful port, because token positions and line numbers end up in error
messages (``template: x.tmpl:3: unexpected EOF``, ``...:3:12: executing``).
Details that surprise people and are kept:

* trim markers need white space next to the dash: ``{{- x -}}`` trims,
  ``{{-3}}`` is the number -3; the white space may be a newline;
* trimming removes *all* adjacent white space, newlines included;
* ``break`` and ``continue`` are keywords only when no function has that name;
* ``.a.b`` is lexed as two field tokens, so the parser places a field chain at
  its *last* element (which shows in error columns).

Positions are character offsets into the template text (the engine converts
them to Go's byte columns when it formats an error).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, NamedTuple, TypeAlias

from .gostrconv import format_unicode_point, is_digit, is_letter, is_print, quote

# item types, in Go's order (keywords after T_KEYWORD)
T_ERROR: Final = 0
T_BOOL: Final = 1
T_CHAR: Final = 2
T_CHARCONST: Final = 3
T_COMMENT: Final = 4
T_COMPLEX: Final = 5
T_ASSIGN: Final = 6
T_DECLARE: Final = 7
T_EOF: Final = 8
T_FIELD: Final = 9
T_IDENT: Final = 10
T_LDELIM: Final = 11
T_LPAREN: Final = 12
T_NUMBER: Final = 13
T_PIPE: Final = 14
T_RAWSTRING: Final = 15
T_RDELIM: Final = 16
T_RPAREN: Final = 17
T_SPACE: Final = 18
T_STRING: Final = 19
T_TEXT: Final = 20
T_VARIABLE: Final = 21
T_KEYWORD: Final = 22
T_BLOCK: Final = 23
T_BREAK: Final = 24
T_CONTINUE: Final = 25
T_DOT: Final = 26
T_DEFINE: Final = 27
T_ELSE: Final = 28
T_END: Final = 29
T_IF: Final = 30
T_NIL: Final = 31
T_RANGE: Final = 32
T_TEMPLATE: Final = 33
T_WITH: Final = 34

KEYWORDS: Final = {
    ".": T_DOT,
    "block": T_BLOCK,
    "break": T_BREAK,
    "continue": T_CONTINUE,
    "define": T_DEFINE,
    "else": T_ELSE,
    "end": T_END,
    "if": T_IF,
    "range": T_RANGE,
    "nil": T_NIL,
    "template": T_TEMPLATE,
    "with": T_WITH,
}

LEFT_DELIM: Final = "{{"
RIGHT_DELIM: Final = "}}"
LEFT_COMMENT: Final = "/*"
RIGHT_COMMENT: Final = "*/"
SPACE_CHARS: Final = " \t\r\n"
EOF: Final = ""


class Item(NamedTuple):
    """A token: type, character position, text, line of its start."""

    typ: int
    pos: int
    val: str
    line: int

    def __str__(self) -> str:
        if self.typ == T_EOF:
            return "EOF"
        if self.typ == T_ERROR:
            return self.val
        if self.typ > T_KEYWORD:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return quote(self.val[:10]) + "..."
        return quote(self.val)


def _is_space(c: str) -> bool:
    return c != EOF and c in SPACE_CHARS


def is_alnum(c: str) -> bool:
    """Go's ``isAlphaNumeric``: underscore, letter or decimal digit."""
    return c != EOF and (c == "_" or is_letter(c) or is_digit(c))


def _has_left_trim(s: str, i: int) -> bool:
    return len(s) - i >= 2 and s[i] == "-" and s[i + 1] in SPACE_CHARS


def _has_right_trim(s: str, i: int) -> bool:
    return len(s) - i >= 2 and s[i] in SPACE_CHARS and s[i + 1] == "-"


def _left_trim_length(s: str, i: int) -> int:
    j = i
    n = len(s)
    while j < n and s[j] in SPACE_CHARS:
        j += 1
    return j - i


StateFn: TypeAlias = Callable[[], "StateFn | None"]


class Lexer:
    """Turns template text into a list of :class:`Item` (ends with EOF or an error)."""

    def __init__(self, text: str, break_ok: bool = True, continue_ok: bool = True) -> None:
        self.input = text
        self.break_ok = break_ok
        self.continue_ok = continue_ok
        self.pos = 0
        self.start = 0
        self.width = 0
        self.line = 1
        self.start_line = 1
        self.paren_depth = 0
        self.items: list[Item] = []

    # -- primitives ------------------------------------------------------

    def next(self) -> str:
        if self.pos >= len(self.input):
            self.width = 0
            return EOF
        c = self.input[self.pos]
        self.width = 1
        self.pos += 1
        if c == "\n":
            self.line += 1
        return c

    def peek(self) -> str:
        c = self.next()
        self.backup()
        return c

    def backup(self) -> None:
        self.pos -= self.width
        if self.width == 1 and self.input[self.pos] == "\n":
            self.line -= 1

    def emit(self, typ: int) -> None:
        self.items.append(Item(typ, self.start, self.input[self.start : self.pos], self.start_line))
        self.start = self.pos
        self.start_line = self.line

    def ignore(self) -> None:
        self.line += self.input.count("\n", self.start, self.pos)
        self.start = self.pos
        self.start_line = self.line

    def accept(self, valid: str) -> bool:
        c = self.next()
        if c != EOF and c in valid:
            return True
        self.backup()
        return False

    def accept_run(self, valid: str) -> None:
        while True:
            c = self.next()
            if c == EOF or c not in valid:
                break
        self.backup()

    def errorf(self, msg: str) -> StateFn | None:
        self.items.append(Item(T_ERROR, self.start, msg, self.start_line))
        self.items.append(Item(T_EOF, self.pos, "", self.line))
        return None

    # -- driver ----------------------------------------------------------

    def run(self) -> list[Item]:
        state: StateFn | None = self.lex_text
        while state is not None:
            state = state()
        return self.items

    # -- states (each returns the next state, or None to stop) -----------

    def lex_text(self) -> StateFn | None:
        self.width = 0
        inp = self.input
        x = inp.find(LEFT_DELIM, self.pos)
        if x >= 0:
            self.pos = x
            trim = 0
            if _has_left_trim(inp, x + len(LEFT_DELIM)):
                seg = inp[self.start : self.pos]
                trim = len(seg) - len(seg.rstrip(SPACE_CHARS))
            self.pos -= trim
            if self.pos > self.start:
                self.line += inp.count("\n", self.start, self.pos)
                self.emit(T_TEXT)
            self.pos += trim
            self.ignore()
            return self.lex_left_delim
        self.pos = len(inp)
        if self.pos > self.start:
            self.line += inp.count("\n", self.start, self.pos)
            self.emit(T_TEXT)
        self.emit(T_EOF)
        return None

    def at_right_delim(self) -> tuple[bool, bool]:
        inp = self.input
        if _has_right_trim(inp, self.pos) and inp.startswith(RIGHT_DELIM, self.pos + 2):
            return True, True
        if inp.startswith(RIGHT_DELIM, self.pos):
            return True, False
        return False, False

    def lex_left_delim(self) -> StateFn | None:
        self.pos += len(LEFT_DELIM)
        trim = _has_left_trim(self.input, self.pos)
        after = 2 if trim else 0
        if self.input.startswith(LEFT_COMMENT, self.pos + after):
            self.pos += after
            self.ignore()
            return self.lex_comment
        self.emit(T_LDELIM)
        self.pos += after
        self.ignore()
        self.paren_depth = 0
        return self.lex_inside_action

    def lex_comment(self) -> StateFn | None:
        self.pos += len(LEFT_COMMENT)
        i = self.input.find(RIGHT_COMMENT, self.pos)
        if i < 0:
            return self.errorf("unclosed comment")
        self.pos = i + len(RIGHT_COMMENT)
        delim, trim = self.at_right_delim()
        if not delim:
            return self.errorf("comment ends before closing delimiter")
        if trim:
            self.pos += 2
        self.pos += len(RIGHT_DELIM)
        if trim:
            self.pos += _left_trim_length(self.input, self.pos)
        self.ignore()
        return self.lex_text

    def lex_right_delim(self) -> StateFn | None:
        trim = _has_right_trim(self.input, self.pos)
        if trim:
            self.pos += 2
            self.ignore()
        self.pos += len(RIGHT_DELIM)
        self.emit(T_RDELIM)
        if trim:
            self.pos += _left_trim_length(self.input, self.pos)
            self.ignore()
        return self.lex_text

    def lex_inside_action(self) -> StateFn | None:
        delim, _ = self.at_right_delim()
        if delim:
            if self.paren_depth == 0:
                return self.lex_right_delim
            return self.errorf("unclosed left paren")
        c = self.next()
        if c == EOF:
            return self.errorf("unclosed action")
        if c in SPACE_CHARS:
            self.backup()
            return self.lex_space
        if c == "=":
            self.emit(T_ASSIGN)
        elif c == ":":
            if self.next() != "=":
                return self.errorf("expected :=")
            self.emit(T_DECLARE)
        elif c == "|":
            self.emit(T_PIPE)
        elif c == '"':
            return self.lex_quote
        elif c == "`":
            return self.lex_raw_quote
        elif c == "$":
            return self.lex_variable
        elif c == "'":
            return self.lex_char
        elif c == ".":
            if self.pos < len(self.input):
                r = self.input[self.pos]
                if r < "0" or r > "9":
                    return self.lex_field
            self.backup()
            return self.lex_number
        elif c in "+-" or "0" <= c <= "9":
            self.backup()
            return self.lex_number
        elif is_alnum(c):
            self.backup()
            return self.lex_identifier
        elif c == "(":
            self.emit(T_LPAREN)
            self.paren_depth += 1
        elif c == ")":
            self.emit(T_RPAREN)
            self.paren_depth -= 1
            if self.paren_depth < 0:
                return self.errorf(f"unexpected right paren {format_unicode_point(c)}")
        elif ord(c) < 0x80 and is_print(c):
            self.emit(T_CHAR)
        else:
            return self.errorf(f"unrecognized character in action: {format_unicode_point(c)}")
        return self.lex_inside_action

    def lex_space(self) -> StateFn | None:
        num = 0
        while True:
            c = self.peek()
            if not _is_space(c):
                break
            self.next()
            num += 1
        inp = self.input
        if _has_right_trim(inp, self.pos - 1) and inp.startswith(RIGHT_DELIM, self.pos + 1):
            self.backup()
            if num == 1:
                return self.lex_right_delim
        self.emit(T_SPACE)
        return self.lex_inside_action

    def lex_identifier(self) -> StateFn | None:
        while True:
            c = self.next()
            if is_alnum(c):
                continue
            self.backup()
            word = self.input[self.start : self.pos]
            if not self.at_terminator():
                return self.errorf(f"bad character {format_unicode_point(c)}")
            kw = KEYWORDS.get(word, 0)
            if kw > T_KEYWORD:
                if (kw == T_BREAK and not self.break_ok) or (
                    kw == T_CONTINUE and not self.continue_ok
                ):
                    self.emit(T_IDENT)
                else:
                    self.emit(kw)
            elif word[0] == ".":
                self.emit(T_FIELD)
            elif word in ("true", "false"):
                self.emit(T_BOOL)
            else:
                self.emit(T_IDENT)
            return self.lex_inside_action

    def lex_field(self) -> StateFn | None:
        return self.lex_field_or_variable(T_FIELD)

    def lex_variable(self) -> StateFn | None:
        if self.at_terminator():
            self.emit(T_VARIABLE)
            return self.lex_inside_action
        return self.lex_field_or_variable(T_VARIABLE)

    def lex_field_or_variable(self, typ: int) -> StateFn | None:
        if self.at_terminator():
            self.emit(T_VARIABLE if typ == T_VARIABLE else T_DOT)
            return self.lex_inside_action
        while True:
            c = self.next()
            if not is_alnum(c):
                self.backup()
                break
        if not self.at_terminator():
            return self.errorf(f"bad character {format_unicode_point(c)}")
        self.emit(typ)
        return self.lex_inside_action

    def at_terminator(self) -> bool:
        c = self.peek()
        if c == EOF or c in SPACE_CHARS:
            return True
        return c in ".,|:)(" or c == RIGHT_DELIM[0]

    def lex_char(self) -> StateFn | None:
        while True:
            c = self.next()
            if c == "\\":
                r = self.next()
                if r != EOF and r != "\n":
                    continue
                return self.errorf("unterminated character constant")
            if c == EOF or c == "\n":
                return self.errorf("unterminated character constant")
            if c == "'":
                break
        self.emit(T_CHARCONST)
        return self.lex_inside_action

    def lex_number(self) -> StateFn | None:
        if not self.scan_number():
            return self.errorf(f"bad number syntax: {quote(self.input[self.start : self.pos])}")
        sign = self.peek()
        if sign != EOF and sign in "+-":
            if not self.scan_number() or self.input[self.pos - 1] != "i":
                return self.errorf(
                    f"bad number syntax: {quote(self.input[self.start : self.pos])}"
                )
            self.emit(T_COMPLEX)
        else:
            self.emit(T_NUMBER)
        return self.lex_inside_action

    def scan_number(self) -> bool:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        if is_alnum(self.peek()):
            self.next()
            return False
        return True

    def lex_quote(self) -> StateFn | None:
        while True:
            c = self.next()
            if c == "\\":
                r = self.next()
                if r != EOF and r != "\n":
                    continue
                return self.errorf("unterminated quoted string")
            if c == EOF or c == "\n":
                return self.errorf("unterminated quoted string")
            if c == '"':
                break
        self.emit(T_STRING)
        return self.lex_inside_action

    def lex_raw_quote(self) -> StateFn | None:
        while True:
            c = self.next()
            if c == EOF:
                return self.errorf("unterminated raw quoted string")
            if c == "`":
                break
        self.emit(T_RAWSTRING)
        return self.lex_inside_action


def lex(text: str, break_ok: bool = True, continue_ok: bool = True) -> list[Item]:
    """All tokens of ``text``; the list ends with EOF (after an error token, if any)."""
    return Lexer(text, break_ok, continue_ok).run()
