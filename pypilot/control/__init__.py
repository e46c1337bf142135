"""The control plane: ContainerPilot 3's HTTP API on a unix socket, and pypilot's additions.

``plane`` is PID 1's side (bind and listen through ``socketfile``, start the worker on the first
connection, answer the worker's requests through the Supervisor API); ``worker``, ``server`` and
``app`` are the control worker's side (waitress bounded against hung clients, the Falcon app,
forwarding to PID 1); ``routes`` lists the endpoints once and ``validate`` holds the checks both sides
make; ``client`` is the CLI's side (``-reload``, ``-ping``, ``pypilot status`` …); ``openapi``
documents the whole API.

PID 1 imports only ``socketfile`` before its first spawns, and ``plane`` (stdlib and pypilot only)
after them.
"""
