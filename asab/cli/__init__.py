"""The ``asab`` command line (typer). The only place, with test fixtures, that wires simulators."""
