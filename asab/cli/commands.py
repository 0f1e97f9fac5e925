"""Imports every command module so its commands register on :data:`asab.cli.app.app`.

One line per module; add yours here (e.g. ``from asab.cli import cmd_serve``).
"""

from __future__ import annotations

from asab.cli import (
    cmd_bench,  # noqa: E402,F401  (asab plan, asab bench ...)
    cmd_draw,  # noqa: E402,F401  (asab draw)
    cmd_estop,  # noqa: E402,F401  (asab estop)
    cmd_import,  # noqa: E402,F401  (asab import-legacy)
    cmd_results,  # noqa: E402,F401  (asab results, asab export)
    cmd_serve,  # noqa: E402,F401  (asab serve)
    cmd_simulate,  # noqa: E402,F401  (asab simulate)
    cmd_tenant,  # noqa: E402,F401  (asab tenant, asab journal)
)
