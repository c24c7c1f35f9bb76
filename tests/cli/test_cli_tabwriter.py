"""Go's text/tabwriter (fleetctl's settings) against the literal outputs of fleet.md §4.3."""

from __future__ import annotations

import random

import pytest

from flotte.cli.tabwriter import _uniform, format_table, tabwriter

# fleet.md §4.3, captured from the fleetctl binary (TABs written as \t).
LIST_UNITS = (
    "UNIT\t\tMACHINE\t\t\t\tACTIVE\t\tSUB\n"
    "global.service\t113f16a7.../172.17.8.103\tactive\t\trunning\n"
    "global.service\te793afb9...\t\t\tactive\t\trunning\n"
    "goodbye.service\t85c0c595.../172.17.8.102\tactive\t\trunning\n"
    "hello.service\t113f16a7.../172.17.8.103\tinactive\tdead\n"
)
LIST_UNIT_FILES = (
    "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n"
    "goodbye.service\tf5f239d\tlaunched\tlaunched\t85c0c595.../172.17.8.102\n"
    "global.service\t055adf8\tlaunched\t-\t\tglobal\n"
    "hello.service\te55c0ae\tlaunched\tlaunched\t113f16a7.../172.17.8.103\n"
    "idle.service\te55c0ae\tinactive\tinactive\t-\n"
)
LIST_MACHINES = (
    "MACHINE\t\tIP\t\tMETADATA\n"
    "113f16a7...\t172.17.8.103\taz=us-west-1b\n"
    "85c0c595...\t172.17.8.102\taz=us-west-1b,region=us-west\n"
    "e793afb9...\t-\t\t-\n"
)


def cells(text: str) -> list[list[str]]:
    """The rows fleetctl wrote (cells joined by one TAB) before alignment."""
    return [[c for c in line.split("\t") if c] for line in text.splitlines()]


@pytest.mark.parametrize("literal", [LIST_UNITS, LIST_UNIT_FILES, LIST_MACHINES],
                         ids=["list-units", "list-unit-files", "list-machines"])
def test_literal_tables_byte_for_byte(literal: str) -> None:
    assert format_table(cells(literal)) == literal
    # tabwriter() on the unaligned text gives the same bytes
    unaligned = "".join("\t".join(row) + "\n" for row in cells(literal))
    assert tabwriter(unaligned) == literal


def test_columns_round_to_multiples_of_eight() -> None:
    # width = longest cell + padding 1, rounded up to a multiple of 8; padding is TABs
    assert tabwriter("1234567\tx\n") == "1234567\tx\n"          # 8 → one tab
    assert tabwriter("12345678\tx\n") == "12345678\tx\n"        # 9 → 16, one tab
    assert tabwriter("a\tx\n12345678\ty\n") == "a\t\tx\n12345678\ty\n"
    assert tabwriter("a\tx\n" + "b" * 16 + "\ty\n") == "a\t\t\tx\n" + "b" * 16 + "\ty\n"


def test_last_cell_is_not_a_column() -> None:
    # the text after the last TAB is never padded, however long
    assert tabwriter("a\tshort\nb\tmuch longer text\n") == "a\tshort\nb\tmuch longer text\n"


def test_empty_cells_are_padded_with_tabs() -> None:
    assert tabwriter("\tx\nlonger cell\ty\n") == "\t\tx\nlonger cell\ty\n"


def test_a_line_with_fewer_cells_ends_the_column_block() -> None:
    # Go computes widths per block of consecutive lines having the column
    text = "a\tb\nno tabs here at all\nlong first cell\tc\n"
    assert tabwriter(text) == "a\tb\nno tabs here at all\nlong first cell\tc\n"
    text = "a\tb\tc\nxxxxxxxxxxxx\td\nq\tr\ts\n"
    assert tabwriter(text) == "a\t\tb\tc\nxxxxxxxxxxxx\td\nq\t\tr\ts\n"


def test_nested_blocks() -> None:
    # column 1 exists only in lines 1-2: its width ignores line 3
    text = "a\tbbbbbbbbbbbb\tc\nd\te\tf\ngggggggggg\th\n"
    assert tabwriter(text) == ("a\t\tbbbbbbbbbbbb\tc\n"
                               "d\t\te\t\tf\n"
                               "gggggggggg\th\n")


def test_unterminated_last_line_and_empty_input() -> None:
    assert tabwriter("") == ""
    assert tabwriter("a\tb") == "a\tb"
    assert tabwriter("abcdefghij\tb\nc\td") == "abcdefghij\tb\nc\t\td"
    assert format_table([]) == ""


def test_code_points_not_bytes() -> None:
    assert tabwriter("é\tx\n1234567\ty\n") == "é\tx\n1234567\ty\n"


def test_space_padding_like_go() -> None:
    assert tabwriter("a\tb\nccc\td\n", padchar=" ", padding=2) == "a    b\nccc  d\n"
    with pytest.raises(ValueError):
        tabwriter("a", padchar="")


def test_cells_with_tabs_or_newlines_are_flattened() -> None:
    assert format_table([["a\tb", "c\nd"]]) == "a b\tc d\n"


def test_uniform_fast_path_equals_the_general_algorithm() -> None:
    rnd = random.Random(5)
    for _ in range(200):
        ncols = rnd.randint(1, 6)
        table = [["x" * rnd.randint(0, 20) for _ in range(ncols)]
                 for _ in range(rnd.randint(1, 12))]
        assert _uniform(table, ncols) == tabwriter("".join("\t".join(r) + "\n" for r in table))
