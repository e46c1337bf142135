"""pypilot's benchmark suite: pypilot side by side with tini, dumb-init, s6, runit, supervisord and circus.

Run with ``python -m benchmarks`` (as root: every init runs as PID 1 of a fresh PID namespace).
See ``benchmarks/__main__.py`` for the options and each measure's module for what it measures and how.
"""
