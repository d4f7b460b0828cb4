"""The one error type the user sees: :class:`UserError`.

Every error that means "bad input from the user, or an environment racetrack cannot use"
subclasses it, wherever it is raised, and the command line catches it once (``sim.cli.main``):
one line ``racetrack: <message>`` on stderr, exit 2, never a traceback. It lives in ``tracker``
because that is the bottom layer, which every other layer may import.
"""

from __future__ import annotations

import re


class UserError(Exception):
    """Bad input from the user or an unusable environment; its message is the one line the user
    sees; exit 2."""


#: A word of a message: what stands between blanks and quotes (a URL as typed, or as quoted).
_WORD = re.compile(r"[^\s'\"]+")
#: A URL's scheme, written right (``postgresql://``) or mistyped (``redis:/``, ``redis:``).
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*:(//)?/?", re.IGNORECASE)
#: The value of a ``password=`` parameter (a key=value DSN, a URL's query string).
_PASSWORD_PARAM = re.compile(r"(\bpassword\s*=\s*)([^\s&'\"]+)", re.IGNORECASE)


def _mask_userinfo(match: re.Match[str]) -> str:
    word = match.group(0)
    at = word.rfind("@")
    head = word[:at]
    if at < 0 or ":" not in head:
        return word  # no "user:password@" here (``postgresql://me@host`` names a user only)
    scheme = _SCHEME.match(head)
    start = scheme.end() if scheme else 0
    userinfo = head[start:]
    if ":" in userinfo:  # user:password, the password possibly holding ':' too
        return f"{head[:start]}{userinfo.split(':', 1)[0]}:***{word[at:]}"
    if scheme is not None and scheme.group(1):
        return word  # scheme://user@host: a user name, no password
    return f"{head[:start]}***{word[at:]}"  # user:secret@host with no scheme (or a mistyped one)


def redact(text: str) -> str:
    """``text`` with every password in a connection URL (however mistyped: ``redis:/u:p@h``,
    ``u:p@h``) or a ``password=`` parameter replaced by ``***``. Every line racetrack prints for an
    error goes through it (``sim.cli.main``), whatever raised it."""
    return _PASSWORD_PARAM.sub(r"\1***", _WORD.sub(_mask_userinfo, text))
