"""Go's ``text/tabwriter``, as fleetctl configured it, for byte-identical tables.

fleetctl printed every table through ``tabwriter.NewWriter(os.Stdout, 0, 8,
1, '\\t', 0)``: cells are separated by TABs, a column is as wide as its
widest cell plus one, rounded **up to a multiple of 8**, and the padding is
written as TAB characters (fleet.md §4.3).  Scripts that ``cut -f`` or
``awk -F'\\t'`` fleetctl's output depend on those exact bytes, so this is a
port of Go's algorithm, not an approximation:

* a *column block* is a run of consecutive lines that all have a cell in
  that column; widths are computed per block, so a line with fewer cells
  ends the blocks of the columns it lacks;
* the last cell of a line (the text after its last TAB) belongs to no
  column and is never padded;
* cell width is the number of code points (Go counts UTF-8 runes).

Only what fleetctl used is supported: no ``\\v``/``\\f``, escapes, HTML
filtering or right alignment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["format_table", "tabwriter"]


def _padding(textw: int, cellw: int, tabwidth: int, padchar: str) -> str:
    if padchar == "\t":
        if tabwidth == 0:
            return ""  # tabs have no width: Go cannot pad
        cellw = (cellw + tabwidth - 1) // tabwidth * tabwidth
        n = cellw - textw
        return "\t" * ((n + tabwidth - 1) // tabwidth)
    return padchar * (cellw - textw)


class _Formatter:
    def __init__(self, lines: list[list[str]], minwidth: int, tabwidth: int, padding: int,
                 padchar: str) -> None:
        self.lines = lines
        self.minwidth = minwidth
        self.tabwidth = tabwidth
        self.padding = padding
        self.padchar = padchar
        self.widths: list[int] = []
        self.out: list[str] = []

    def write_lines(self, line0: int, line1: int) -> None:
        last = len(self.lines) - 1
        for i in range(line0, line1):
            for j, cell in enumerate(self.lines[i]):
                self.out.append(cell)
                if j < len(self.widths):
                    self.out.append(_padding(len(cell), self.widths[j], self.tabwidth,
                                             self.padchar))
            if i != last:
                self.out.append("\n")

    def format(self, line0: int, line1: int) -> None:
        column = len(self.widths)
        this = line0
        while this < line1:
            if column >= len(self.lines[this]) - 1:
                this += 1
                continue
            # This line has a cell in this column: a block begins.
            self.write_lines(line0, this)
            line0 = this
            width = self.minwidth
            while this < line1 and column < len(self.lines[this]) - 1:
                width = max(width, len(self.lines[this][column]) + self.padding)
                this += 1
            self.widths.append(width)
            self.format(line0, this)
            self.widths.pop()
            line0 = this
        self.write_lines(line0, line1)


def tabwriter(text: str, *, minwidth: int = 0, tabwidth: int = 8, padding: int = 1,
              padchar: str = "\t") -> str:
    """``text`` (cells ended by TABs, lines by newlines) aligned as Go's tabwriter does.

    The defaults are fleetctl's settings.  ``tabwriter("a\\tb\\nlonger\\tc\\n")``
    is ``"a\\tb\\nlonger\\tc\\n"``, and ``"UNIT\\tMACHINE\\nglobal.service\\tx\\n"``
    becomes ``"UNIT\\t\\tMACHINE\\nglobal.service\\tx\\n"``.
    """
    if len(padchar) != 1:
        raise ValueError(f"padchar must be one character, not {padchar!r}")
    lines = [line.split("\t") for line in text.split("\n")]
    fmt = _Formatter(lines, minwidth, tabwidth, padding, padchar)
    fmt.format(0, len(lines))
    return "".join(fmt.out)


def format_table(rows: Iterable[Sequence[str]]) -> str:
    """Rows of cells → the table fleetctl printed (every line ends with a newline).

    Cells must not contain TABs or newlines (they would split cells or lines);
    such characters are replaced by a space.
    """
    table = [[_clean(c) for c in row] for row in rows]
    ncols = len(table[0]) if table else 0
    if ncols and all(len(row) == ncols for row in table):
        return _uniform(table, ncols)
    return tabwriter("".join("\t".join(row) + "\n" for row in table))


def _uniform(table: list[list[str]], ncols: int, tabwidth: int = 8, padding: int = 1) -> str:
    """The common case, every row with the same cells: one block per column.

    Equal to :func:`tabwriter` for such tables (tested), without the general
    recursion: ``list-units`` of 10,000 units is formatted in a few ms.
    """
    widths = [max(len(row[j]) for row in table) + padding for j in range(ncols - 1)]
    pads = [{} for _ in widths]  # type: list[dict[int, str]]
    out: list[str] = []
    for row in table:
        for j, width in enumerate(widths):
            cell = row[j]
            pad = pads[j].get(len(cell))
            if pad is None:
                pad = pads[j][len(cell)] = _padding(len(cell), width, tabwidth, "\t")
            out.append(cell)
            out.append(pad)
        out.append(row[-1])
        out.append("\n")
    return "".join(out)


def _clean(cell: str) -> str:
    if "\t" in cell or "\n" in cell or "\r" in cell:
        return cell.replace("\t", " ").replace("\r", " ").replace("\n", " ")
    return cell
