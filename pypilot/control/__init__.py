"""The control plane: ContainerPilot 3's HTTP API on a unix socket, and pypilot's additions.

``plane`` is PID 1's side (bind and listen, start the worker on the first connection, answer the
worker's requests through the Supervisor API); ``worker`` and ``app`` are the control worker's side
(waitress and the Falcon app, forwarding to PID 1); ``client`` is the CLI's side (``-reload``,
``-ping``, ``pypilot status`` …); ``openapi.json`` documents the whole API.

Nothing here is imported by PID 1 at start-up except ``plane``, which imports only the stdlib.
"""
