"""Per-device HTTP servers (FastAPI): not built yet.

The servers for pumps and valves, balance, densimeter/viscometer and actions come with the
HTTP-servers issue; this package only reserves their place in the layers (layer 3: servers
call actions, never the reverse).
"""
