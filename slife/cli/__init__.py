"""`slife` command line: the typer app with one module of thin commands per stage.

`main()` is the console script. Importing this package registers every command; each command
module imports its stage lazily so that `slife --help` is fast.
"""

from slife.cli.app import app  # noqa: F401
from slife.cli import synth, lives, mine, train, evaluate, demo  # noqa: F401,E402  (register commands)


def main() -> None:
    app(prog_name="slife")
