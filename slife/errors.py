"""The one exception type for a user's mistake or bad input.

Raised anywhere in slife with a message that names the file and the problem, e.g.
``SlifeError(f"{path}: pose 17 is not a rotation (det 0.2)")``. The CLI turns it into one line
on stderr and exit code 2 (``--debug`` shows the traceback). Everything else is a bug.
Counts in messages are worded with `plural` ("1 frame", "3 frames").
"""


class SlifeError(Exception):
    """Bad input or a user's mistake; the message is shown to the user as one line."""


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """'1 frame', '3 frames' (`nouns` for irregular plurals: plural(2, "entry", "entries"))."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"
