"""The bench folders shipped with asab.

This folder stays at the top of the repository, where operators look for bench
configurations, and is installed as the package ``asab.benches`` (``package-dir`` in
pyproject.toml), so that a wheel carries the 2023 bench and its demo requests. Code finds a
bundled bench with :func:`asab.config.benches.bundled_bench`, never by a path relative to
the source tree.
"""
