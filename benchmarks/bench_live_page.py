"""The live bench page: load time and update latency on the simulated bench (real time).

Run:  python benchmarks/bench_live_page.py [--loads 5] [--moves 10] [--speed 1]

Starts ``asab serve`` (simulated hiu_2023 bench, ``--speed`` × real time) as a separate
process and opens the page in headless Chromium (/usr/bin/chromium, /usr/bin/chromedriver,
driven by Selenium; nothing is downloaded). It measures

    page load     navigation start (the URL with the token, a redirect, the page, its
                  script, the tubing graph) → the first snapshot drawn, in the browser's
                  own clock (``performance.now()``); each load in a new page;
    pump start    a pump reported moving by the pumps server (GET /pumps/F0.0, polled
                  every 5 ms in a thread) → the page's pump row shows it moving (polled every
                  5 ms through Selenium); the pump is started with POST /pumps/F0.0/aspirate (0.15 mL at 0.05 mL/s);
    pump stop     the pump reported stopped → the page shows it stopped;
    e-stop        the page's E-STOP button clicked → the pumps server reports no pump moving.

Prints one table (min / median / max in ms). The polling adds up to about 5–10 ms to each
latency; the stream samples the bench every 0.5 s, so update latencies spread over 0–0.5 s
plus rendering.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests._serve_process import AUTH, Serve, free_base_port  # noqa: E402
from tests._servers_support import TOKEN  # noqa: E402
from tests.test_live_page import chrome  # noqa: E402


def poll(check, timeout: float, interval: float = 0.005) -> float:
    """perf_counter() when ``check()`` first holds (AssertionError after ``timeout`` s)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if check():
            return time.perf_counter()
        time.sleep(interval)
    raise AssertionError(f"not within {timeout} s")


def pumping_in_page(driver, pump: str) -> bool:
    return driver.execute_script(
        "const s = window.asabLive && window.asabLive.state;"
        "if (!s) return null;"
        "const row = document.querySelector(`#pumps tr[data-pump='${arguments[0]}']`);"
        "return row ? row.getAttribute('data-pumping') === 'true' : null;", pump)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--moves", type=int, default=10)
    ap.add_argument("--speed", type=float, default=1.0)
    args = ap.parse_args()
    import pytest  # chrome() skips with pytest.skip when no browser: turn it into a message

    with tempfile.TemporaryDirectory(prefix="asab-bench-live-") as tmp:
        work = Path(tmp)
        try:
            driver = chrome(work / "profile")
        except pytest.skip.Exception as exc:
            sys.exit(f"no browser: {exc}")
        serve = Serve(work, free_base_port(), speed=args.speed).start()
        try:
            rows = measure(serve, driver, args)
        finally:
            driver.quit()
            serve.stop()
    print(f"live page on the simulated hiu_2023 bench, ×{args.speed:g} real time "
          f"(headless Chromium, 2-core machine)")
    print(f"{'measure':<14}{'n':>4}{'min/ms':>10}{'median/ms':>11}{'max/ms':>10}")
    for name, values in rows:
        ms = [1000 * v for v in values]
        print(f"{name:<14}{len(ms):>4}{min(ms):>10.0f}{statistics.median(ms):>11.0f}"
              f"{max(ms):>10.0f}")


def measure(serve: Serve, driver, args) -> list[tuple[str, list[float]]]:
    url = f"{serve.actions}/?token={TOKEN}"
    loads = []
    for _ in range(args.loads):
        driver.get("about:blank")
        driver.get(url)
        poll(lambda: driver.execute_script("return window.asabLive && window.asabLive.firstRenderMs"), 20)
        loads.append(driver.execute_script("return window.asabLive.firstRenderMs") / 1000)
    starts, stops = [], []
    pump = "F0.0"

    client = httpx.Client(headers=AUTH, timeout=10)  # one connection: a look costs ~4 ms

    def device_pumping() -> bool:
        return client.get(f"{serve.pumps}/pumps/{pump}").json()["pumping"]

    for i in range(args.moves):
        marks: dict[str, float] = {}

        def watch() -> None:
            marks["start"] = poll(device_pumping, 30)
            marks["stop"] = poll(lambda: not device_pumping(), 60)
        watcher = threading.Thread(target=watch)
        watcher.start()
        body = {"source": "Solvent", "volume": 0.15, "flow": 0.05}  # 3 s; 10 mL syringe
        answer = serve.post(f"{serve.pumps}/pumps/{pump}/aspirate", body)
        assert answer.status_code == 202, answer.text
        job = answer.json()
        page_start = poll(lambda: pumping_in_page(driver, pump) is True, 30)
        page_stop = poll(lambda: pumping_in_page(driver, pump) is False, 60)
        watcher.join(70)
        starts.append(page_start - marks["start"])
        stops.append(page_stop - marks["stop"])
        done = serve.wait_job(job["id"], timeout=60)
        assert done["state"] == "succeeded", done
    # the e-stop button
    job = serve.post(f"{serve.pumps}/pumps/{pump}/aspirate",
                     {"source": "Solvent", "volume": 1.0, "flow": 0.05}).json()
    poll(device_pumping, 30)
    t0 = time.perf_counter()
    driver.find_element("id", "estop-button").click()
    estop = poll(lambda: not any(p["pumping"] for p in client.get(f"{serve.pumps}/pumps").json()),
                 10) - t0
    serve.wait_job(job["id"], timeout=30)
    serve.post(f"{serve.actions}/estop/reset")
    return [("page load", loads), ("pump start", starts), ("pump stop", stops),
            ("e-stop button", [estop])]


if __name__ == "__main__":
    main()
