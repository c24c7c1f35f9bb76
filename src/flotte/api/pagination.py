"""fleet's page tokens (spec: fleet.md §5.3).

A token is the URL-safe base64 (with padding) of two little-endian
``uint16``: ``(Limit, Page)``.  Page 2 at limit 100 is ``ZAACAA==``.  The
server only accepts tokens carrying its own ``token_limit``, so a client
cannot ask for bigger pages than the operator allows, and pages are slices
of a full listing taken per request (no snapshot across pages), as in fleet.

The format is kept byte-for-byte because fleetctl and scripts echo tokens
back verbatim; it is opaque to them, never parsed.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from flotte.api.wire import HttpError

DEFAULT_TOKEN_LIMIT = 100
_UINT16_MAX = 0xFFFF
_URLSAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageToken:
    limit: int
    page: int

    def encode(self) -> str:
        return base64.urlsafe_b64encode(struct.pack("<HH", self.limit, self.page)).decode("ascii")

    def next(self) -> PageToken | None:
        """The following page's token; ``None`` once the uint16 page counter is exhausted."""
        if self.page >= _UINT16_MAX:
            return None
        return PageToken(self.limit, self.page + 1)


def decode_token(value: str) -> PageToken:
    """Decode a token; raises :class:`HttpError` 400 saying what is wrong with it.

    Like Go's ``binary.Read``, bytes after the first four are ignored.
    """
    raw = value.encode("utf-8", "surrogateescape")
    if any(b not in _URLSAFE for b in raw):
        raise HttpError(400, f"invalid nextPageToken {value!r}: not URL-safe base64; "
                             "pass back the nextPageToken of the previous page unchanged")
    try:
        data = base64.urlsafe_b64decode(raw)
    except (binascii.Error, ValueError) as exc:
        raise HttpError(400, f"invalid nextPageToken {value!r}: {exc}; pass back the "
                             "nextPageToken of the previous page unchanged") from None
    if len(data) < 4:
        raise HttpError(400, f"invalid nextPageToken {value!r}: {len(data)} bytes, a token "
                             "holds 4; pass back the nextPageToken of the previous page unchanged")
    limit, page = struct.unpack_from("<HH", data)
    return PageToken(limit, page)


def find_page_token(values: Sequence[str], token_limit: int = DEFAULT_TOKEN_LIMIT) -> PageToken:
    """The token of a listing request (all ``nextPageToken`` query values), or page 1.

    fleet's checks and messages: more than one value, an undecodable token,
    a limit other than the server's, page 0 — all 400.
    """
    if len(values) > 1:
        raise HttpError(400, "too many values for page token")
    if not values:
        return PageToken(token_limit, 1)
    tok = decode_token(values[0])
    if tok.limit != token_limit:
        raise HttpError(400, f"token limit must be {token_limit}")
    if tok.page == 0:
        raise HttpError(400, "token page must be greater than zero")
    return tok


def paginate(items: Sequence[T], tok: PageToken) -> tuple[list[T], PageToken | None]:
    """One page of ``items`` and the next page's token (fleet's ``extract*PageData``).

    Quirk kept from fleet: a page that ends exactly at the last item still
    carries a token, and the page it points to is empty (``{}``).
    """
    total = len(items)
    start = (tok.page - 1) * tok.limit
    stop = tok.page * tok.limit
    if start >= total:
        return [], None
    if stop > total:
        return list(items[start:total]), None
    return list(items[start:stop]), tok.next()
