"""Post latency of the tenant against the number of results the broker holds.

Run:  python benchmarks/bench_tenant_post.py [--sizes 1000 10000 100000] [--posts 20]

The fake FINALES2 broker of the test suite (tests/fake_finales.py, in-process transport,
results indexed by request as a database would) is filled with N results of other requests.
For each size the table gives the median wall time of

* a first post, as the tenant makes it (``GET /requests/{id}`` for retraction, then
  ``POST /results/``: the journal decides no look-up is needed);
* a re-post after a restart or a network error (the same plus
  ``GET /results_requested/{id}``, the request's own result);
* for comparison, the look-up the tenant made before (``GET /results_requested/?quantity&method``,
  every result of the capability), whose cost grows with N.

Needs the test extra (the fake broker): ``python -m pip install -c constraints.txt -e ".[test]"``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asab.broker import BrokerSettings, FinalesClient  # noqa: E402
from tests.fake_finales import TENANT_UUID, make_fake_finales  # noqa: E402

DENSITY = "vibrating_tube_densimetry"
FORMULATION = [{"chemical": {"SMILES": "C1COC(=O)O1", "InChIKey": "KMTRUCKVAXMQHI-UHFFFAOYSA-N"},
                "fraction": 1.0, "fraction_type": "molPerMol"}]
PARAMS = {"formulation": FORMULATION, "temperature": 298.15}


def result(request_id: str, ref: str) -> dict:
    meta = {"success": True, "rating": 5}
    return {"data": {"run_info": {"formulation": FORMULATION, "internal_reference": ref},
                     "density": {"values": [1.2], "temperature": 298.15, "meta": meta},
                     "viscosity": None},
            "quantity": "density", "method": [DENSITY], "parameters": {DENSITY: PARAMS},
            "tenant_uuid": TENANT_UUID, "request_uuid": request_id}


def median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def measure(size: int, posts: int, compare: bool) -> tuple[float, float, float | None]:
    fake = make_fake_finales()
    for i in range(size):
        fake.store_result(result(f"other-{i}", f"ref-{i}"))
    settings = BrokerSettings(url="http://finales.test", username="asab",
                              password="asab-password", tenant_uuid=TENANT_UUID)
    with FinalesClient(settings, transport=fake.transport()) as client:
        client.login()

        def first() -> None:
            rid = fake.add_request(PARAMS)
            client.get_request(rid)
            client.post_result(result(rid, "asab-new"))

        def again() -> None:
            rid = fake.add_request(PARAMS)
            client.get_request(rid)
            client.result_for_request(rid)
            client.post_result(result(rid, "asab-new"))

        def old_lookup() -> None:
            client.results_requested("density", DENSITY)

        old = median_ms(old_lookup, 3) if compare else None
        return median_ms(first, posts), median_ms(again, posts), old


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--posts", type=int, default=20)
    args = parser.parse_args()
    print(f"{'stored results':>15} | {'first post ms':>13} | {'re-post ms':>10} | "
          f"{'old look-up (whole list) ms':>27}")
    print("-" * 75)
    for size in args.sizes:
        first, again, old = measure(size, args.posts, compare=size <= 100000)
        old_text = f"{old:27.1f}" if old is not None else f"{'-':>27}"
        print(f"{size:>15,} | {first:13.2f} | {again:10.2f} | {old_text}")


if __name__ == "__main__":
    main()
