"""The share cookie: a share link opened in a browser keeps working for the page's own requests.

A viewer page served by the upstream itself (sideshow's SPA) is opened with
``?share=<token>``, then makes its own requests — posts, comments, the live
feed — without the token, and rewrites its URL without the query. A profile
that names a ``share_cookie`` gets the token back from the browser: a request
served through a share whose token came in the query is answered with
``Set-Cookie: <name>=<token>[.<token>…]`` (the links this browser opened,
most recent first, at most ``MAX_TOKENS``; ``HttpOnly``, ``SameSite=Strict``,
``Path=/``, ``Secure`` behind HTTPS; sideshow does the same for its own
``?key=``, in ``server/app.ts`` ``// --- auth ---``), and a request with no
token of its own presents the cookie's token for the session it targets.

The cookie is ambient, so it never blocks (``Pipeline._ambient``): a token
of it that names another session than the request's is not used; one naming
an unknown, revoked or expired share is dropped from the cookie; when none
fits, the caller acts as themself, as without a token; while the store
cannot be asked the cookie is set aside (kept) — a token the client sent
itself still gets 503. ``SameSite=Strict`` keeps other sites' pages from
riding on it (CSRF).
"""

from __future__ import annotations

from multidict import CIMultiDictProxy

MAX_AGE = 7 * 24 * 3600  # seconds; the tokens are checked on every request, the cookie only carries them
MAX_TOKENS = 8  # share links one browser keeps open at once (most recently opened first)
_SEPARATOR = "."  # not in a token's alphabet (``secrets.token_urlsafe``)


def tokens(headers: CIMultiDictProxy[str], name: str) -> tuple[str, ...]:
    """The tokens in cookie ``name``, most recent first; ``()`` when absent, empty, or sent twice
    with different values."""
    values: set[str] = set()
    for header in headers.getall("Cookie", ()):
        for pair in header.split(";"):
            key, sep, value = pair.strip().partition("=")
            if sep and key.strip() == name:
                values.add(value.strip().strip('"'))
    if len(values) != 1:
        return ()
    found = [t for t in values.pop().split(_SEPARATOR) if t]
    return tuple(dict.fromkeys(found))[:MAX_TOKENS]


def issued(name: str, kept: list[str] | tuple[str, ...], *, secure: bool) -> str:
    """The ``Set-Cookie`` value that hands the browser ``kept`` (most recent first, at most
    ``MAX_TOKENS``); one that removes the cookie when nothing is left."""
    if not kept:
        return cleared(name, secure=secure)
    value = _SEPARATOR.join(list(dict.fromkeys(kept))[:MAX_TOKENS])
    return f"{name}={value}; Path=/; Max-Age={MAX_AGE}; HttpOnly; SameSite=Strict" + (
        "; Secure" if secure else ""
    )


def cleared(name: str, *, secure: bool) -> str:
    """The ``Set-Cookie`` value that removes the cookie (its shares are gone)."""
    return f"{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
