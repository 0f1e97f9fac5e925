"""Simulated ASAB bench: one physical world behind protocol-speaking device simulators.

Only the composition root (``asab.cli`` wiring and test fixtures) imports this package;
library code under ``asab/`` never does.
"""
