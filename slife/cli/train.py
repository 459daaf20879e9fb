"""Commands: train (filled in by its stage)."""

from slife.cli.app import app  # noqa: F401
