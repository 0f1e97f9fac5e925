"""asab: Autonomous Synthesis and Analysis of Battery electrolytes.

Layers (one direction only): ``servers``/``broker``/``cli`` -> ``actions`` ->
``drivers`` + pure planners (``tubing``, ``formulation``) -> ``config``/``errors``/``units``.
"""

__version__ = "0.1.0"
