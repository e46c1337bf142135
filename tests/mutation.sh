#!/bin/sh
# Mutation testing of the core (#20), not in CI: small deliberate breakages of jobs.py, process.py,
# reaper.py, supervisor.py and loop.py, each run against the tests that should notice it. A mutant
# that survives is a line no test looks at. Takes hours on 2 cores; results stay in $WORK.
#
#   tests/mutation.sh                 # every module above, the core tests
#   MODULES="pypilot/jobs.py" tests/mutation.sh
#   TESTS="tests/test_jobs.py tests/test_jobs_stop.py" tests/mutation.sh
#
# It runs on a copy of HEAD (plus the built pypilot/_reaper extension) so the checkout is untouched,
# and installs mutmut into the project's venv if it is missing. Then `mutmut results` in $WORK lists
# the survivors and `mutmut show NAME` shows one.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
MODULES=${MODULES:-"pypilot/jobs.py pypilot/process.py pypilot/reaper.py pypilot/supervisor.py pypilot/loop.py"}
TESTS=${TESTS:-"tests/test_jobs.py tests/test_jobs_stop.py tests/test_reload.py tests/test_reaper.py tests/test_process.py tests/test_pid1.py tests/test_jobs_e2e.py tests/reliability/test_shutdown.py"}
WORK=${WORK:-$(mktemp -d /tmp/pypilot-mutation-XXXXXX)}

"$PY" -m mutmut --version >/dev/null 2>&1 || "$PY" -m pip install -q mutmut
cd "$ROOT"
git archive HEAD | tar -x -C "$WORK"
cp pypilot/_reaper*.so "$WORK/pypilot/"
cd "$WORK"
{
    echo "[mutmut]"
    printf 'source_paths=\n'
    for m in $MODULES; do printf '    %s\n' "$m"; done
    printf 'pytest_add_cli_args_test_selection=\n'
    for t in $TESTS; do printf '    %s\n' "$t"; done
    printf 'also_copy=\n    pypilot/\n    tests/\n    csrc/\n'
    printf 'pytest_add_cli_args=\n    -m\n    not slow and not image\n    -p\n    no:cacheprovider\n'
} > setup.cfg
echo "mutation run in $WORK"
"$PY" -m mutmut run || true
"$PY" -m mutmut results | tee results.txt
echo "survivors: $(grep -c ': survived' results.txt || true) (in $WORK/results.txt)"
