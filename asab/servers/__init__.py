"""Per-device HTTP servers (FastAPI) on one bench, served together by ``asab serve``.

* :mod:`~asab.servers.pumps` (pumps and valves), :mod:`~asab.servers.balance`,
  :mod:`~asab.servers.densimeter` and :mod:`~asab.servers.actions` — one app each, built on
  one :class:`~asab.servers.common.ServerContext` (bench + job manager + token);
* :mod:`~asab.servers.jobs` — long operations in worker threads, device claims (409),
  cancellation and the emergency stop;
* :mod:`~asab.servers.errors` — the one exception → HTTP status mapping;
* :mod:`~asab.servers.run` — every app on its own port in one process and one event loop;
* :mod:`~asab.servers.client` — the typed httpx client.

Every request needs the bearer token (``Authorization: Bearer <token>``), the API
description included. Decision: ``/docs`` and ``/openapi.json`` — and only they — also take
it as ``?token=<token>``, because a browser cannot add a header to a page it opens; the
Swagger UI page then fetches ``/openapi.json`` with the same query token and is served with
``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer``. Query tokens can end up in
browser history and proxy logs: prefer ``curl -H "Authorization: Bearer $TOKEN"
http://127.0.0.1:8101/openapi.json`` where a browser is not needed (uvicorn's access log is
off). ``/redoc`` is not served.

``POST /estop`` (on every server) is never refused once authenticated: it stops every pump
and latches first, then reads its body; a body that is not a valid reason (not JSON, unknown
field, over 200 characters, control characters, ...) only costs the reason (the default is
latched, ``reason_ignored`` says why).

Layer 3: servers call actions, never the reverse.
"""
