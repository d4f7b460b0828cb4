"""The one error type the user sees: :class:`UserError`.

Every error that means "bad input from the user, or an environment racetrack cannot use"
subclasses it, wherever it is raised, and the command line catches it once (``sim.cli.main``):
one line ``racetrack: <message>`` on stderr, exit 2, never a traceback. It lives in ``tracker``
because that is the bottom layer, which every other layer may import.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user or an unusable environment; its message is the one line the user
    sees; exit 2."""
