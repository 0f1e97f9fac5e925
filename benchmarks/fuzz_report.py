"""The reliability table of the README: the fuzzers of tests/fuzzing.py over many inputs.

Run:  python benchmarks/fuzz_report.py [--scale 20] [--seed 2]

Prints, per category of outside input, how many inputs were tried and how each ended
(accepted, clean error, traceback, hang, 5xx, data lost). Needs the test extra:
``python -m pip install -c constraints.txt -e ".[test]"``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzzing import FOUND, FUZZERS, OUTCOMES  # noqa: E402
from tests.test_fuzz import SHORT  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=20, help="× the CI pass's input counts")
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()
    print("| category | inputs | " + " | ".join(OUTCOMES) + " | wall s |")
    print("|---|---|" + "---|" * len(OUTCOMES) + "---|")
    for name, fuzz in FUZZERS.items():
        n = SHORT[name] * args.scale
        t0 = time.monotonic()
        counts = fuzz(n, args.seed)
        cells = " | ".join(str(counts.get(k, 0)) for k in OUTCOMES)
        print(f"| {name} | {n} | {cells} | {time.monotonic() - t0:.0f} |", flush=True)
    for text in FOUND[:3]:
        print(text)


if __name__ == "__main__":
    main()
