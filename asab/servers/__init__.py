"""Per-device HTTP servers (FastAPI) on one bench, served together by ``asab serve``.

* :mod:`~asab.servers.pumps` (pumps and valves), :mod:`~asab.servers.balance`,
  :mod:`~asab.servers.densimeter` and :mod:`~asab.servers.actions` — one app each, built on
  one :class:`~asab.servers.common.ServerContext` (bench + job manager + token);
* :mod:`~asab.servers.jobs` — long operations in worker threads, device claims (409),
  cancellation and the emergency stop;
* :mod:`~asab.servers.errors` — the one exception → HTTP status mapping;
* :mod:`~asab.servers.run` — every app on its own port in one process and one event loop;
* :mod:`~asab.servers.client` — the typed httpx client.

Layer 3: servers call actions, never the reverse.
"""
