"""The ``errorflow`` command."""

from cli.main import main

__all__ = ["main"]
