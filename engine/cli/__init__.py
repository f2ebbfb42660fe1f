"""The `recon` command line."""

from engine.cli.core import main

__all__ = ["main"]
