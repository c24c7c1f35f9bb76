"""Page tokens: fleet's byte format, its checks and messages, and its slicing quirk."""

from __future__ import annotations

import pytest

from flotte.api.pagination import PageToken, decode_token, find_page_token, paginate
from flotte.api.wire import HttpError


def test_token_bytes_match_fleet() -> None:
    assert PageToken(100, 2).encode() == "ZAACAA=="
    assert PageToken(2, 2).encode() == "AgACAA=="
    assert decode_token("ZAACAA==") == PageToken(100, 2)


def test_extra_bytes_ignored_like_binary_read() -> None:
    assert decode_token("ZAACAAAA") == PageToken(100, 2)


def _err(values: list[str], limit: int = 100) -> str:
    with pytest.raises(HttpError) as e:
        find_page_token(values, limit)
    assert e.value.status == 400
    return e.value.message


def test_token_errors() -> None:
    assert _err(["EwBMLg=="]) == "token limit must be 100"
    assert _err([PageToken(100, 0).encode()]) == "token page must be greater than zero"
    assert _err(["ZAACAA==", "ZAACAA=="]) == "too many values for page token"
    assert "not URL-safe base64" in _err(["ZA+CAA=="])
    assert "invalid nextPageToken" in _err(["ZAACAA="])  # bad padding
    assert "0 bytes" in _err([""])
    assert "2 bytes" in _err(["ZAA="])
    assert _err([PageToken(2, 1).encode()], limit=3) == "token limit must be 3"


def test_default_token() -> None:
    assert find_page_token([]) == PageToken(100, 1)
    assert find_page_token([], 5) == PageToken(5, 1)


def test_paginate_like_fleet() -> None:
    items = list(range(5))
    assert paginate(items, PageToken(2, 1)) == ([0, 1], PageToken(2, 2))
    assert paginate(items, PageToken(2, 3)) == ([4], None)
    assert paginate(items, PageToken(2, 4)) == ([], None)
    # a page ending exactly at the end still points at an (empty) next page
    assert paginate(items[:4], PageToken(2, 2)) == ([2, 3], PageToken(2, 3))
    assert paginate([], PageToken(100, 1)) == ([], None)


def test_page_counter_exhausted() -> None:
    assert PageToken(1, 0xFFFF).next() is None
