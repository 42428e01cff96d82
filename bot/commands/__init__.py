"""Sub-commands of ``lightbox``: one module each, with ``register(subparsers)``.

A module's ``register`` adds its parser and sets ``handler`` to a function
``(args, settings) -> int``. Raise :class:`CommandError` for a clear one-line
failure; never let a traceback reach the user.
"""

from __future__ import annotations


class CommandError(Exception):
    """A command failed for a reason the user can act on; the message is shown as is."""

    def __init__(self, message: str, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status
