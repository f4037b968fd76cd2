"""The error a configuration mistake raises before a node runs.

Start-up code (``run_node``, ``evseg run``) prints it as one line on stderr and exits with status
2 instead of a traceback, so the message has to say everything (file, node, parameter, value,
what is allowed) on that one line; the constructor folds any line breaks of a quoted library
message (a YAML parser's, say) into it.
"""

from __future__ import annotations


def one_line(text: object) -> str:
    """``text`` with its lines joined by single spaces (blank lines dropped)."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


class ConfigError(ValueError):
    """A parameter file or value the node cannot start with; the message is one line."""

    def __init__(self, message: object) -> None:
        super().__init__(one_line(message))
