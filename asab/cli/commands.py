"""Imports every command module so its commands register on :data:`asab.cli.app.app`.

One line per module; add yours here (e.g. ``from asab.cli import cmd_serve``).
"""

from __future__ import annotations
