"""The share cookie: a share link opened in a browser keeps working for the page's own requests.

A viewer page served by the upstream itself (sideshow's SPA) is opened with
``?share=<token>``, then makes its own requests — posts, comments, the live
feed — without the token, and rewrites its URL without the query. A profile
that names a ``share_cookie`` gets the token back from the browser: a request
served through a share whose token came in the query is answered with
``Set-Cookie: <name>=<token>`` (``HttpOnly``, ``SameSite=Strict``, ``Path=/``,
``Secure`` behind HTTPS; sideshow does the same for its own ``?key=``, in
``server/app.ts`` ``// --- auth ---``), and a request with no token of its own
presents the cookie's.

The cookie is ambient, so it never blocks: a cookie naming an unknown,
revoked or expired share is ignored (the caller acts as themself, as without
a token) and cleared; one naming another session is ignored by the decision
table like any token (row 4); while the store cannot be asked, it is set
aside (kept, not cleared) — a token the client sent itself still gets 503.
``SameSite=Strict`` keeps other sites' pages from riding on it (CSRF). A
browser holds one share cookie: opening another share link replaces it.
"""

from __future__ import annotations

from multidict import CIMultiDictProxy

MAX_AGE = 7 * 24 * 3600  # seconds; the token is checked on every request, the cookie only carries it


def token(headers: CIMultiDictProxy[str], name: str) -> str | None:
    """The token in cookie ``name``; ``None`` when absent, empty, or sent twice with different values."""
    values: set[str] = set()
    for header in headers.getall("Cookie", ()):
        for pair in header.split(";"):
            key, sep, value = pair.strip().partition("=")
            if sep and key.strip() == name:
                values.add(value.strip().strip('"'))
    if len(values) != 1:
        return None
    found = values.pop()
    return found or None


def issued(name: str, share_token: str, *, secure: bool) -> str:
    """The ``Set-Cookie`` value that hands ``share_token`` to the browser."""
    return f"{name}={share_token}; Path=/; Max-Age={MAX_AGE}; HttpOnly; SameSite=Strict" + (
        "; Secure" if secure else ""
    )


def cleared(name: str, *, secure: bool) -> str:
    """The ``Set-Cookie`` value that removes the cookie (its share is gone)."""
    return f"{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
