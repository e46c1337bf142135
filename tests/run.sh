#!/usr/bin/env bash
# The test command (README, .ci/run): a venv with pypilot and its test tools, lint, types, tests.
# PYPILOT_TEST_ARGS adds pytest arguments (e.g. "-m slow" for the long storm and soak forms).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check pypilot tests benchmarks csrc
.venv/bin/mypy
.venv/bin/python -m pytest -m "not slow and not image" ${PYPILOT_TEST_ARGS:-}
# the container image, built and run with podman, and the benchmark suite's smoke test (it installs the
# peers and checks every measure runs; it asserts nothing about speed): where root can use apt-get
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    .venv/bin/python -m pytest -m image tests/image
    .venv/bin/python -m benchmarks --quick --no-chart
fi
