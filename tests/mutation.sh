#!/bin/sh
# Mutation testing of the core (#20), not in CI: small deliberate breakages (mutmut 3) of jobs.py,
# process.py, reaper.py, supervisor.py and loop.py, each run against the tests that should notice it.
# A mutant that survives is a line no test looks at (or an equivalent one: see README, Testing).
#
#   nice -n 19 tests/mutation.sh                       # every module below, one after another
#   MODULES="pypilot/jobs.py" nice -n 19 tests/mutation.sh
#   TESTS="tests/test_jobs.py" MODULES="pypilot/jobs.py" tests/mutation.sh   # other tests
#   RECHECK=1 WORK=/tmp/pypilot-mutation-XXXXXX tests/mutation.sh  # survivors (and "no tests") again,
#                                                                   # with HEAD's tests
#
# Each module runs in its own copy of HEAD (plus the built pypilot/_reaper extension) under
# $WORK/<module>, so the checkout is untouched, against its own test set (tests_for below): the unit
# tests of that module and a few end-to-end ones of a second or less. mutmut runs, per mutant, only the
# tests that reached the mutated function. The end-to-end tests reach it in a pypilot child (PID 1
# under unshare), which mutmut cannot see, so a sitecustomize in $WORK/hooks makes those children
# write the functions they reach to a file, and a pytest plugin hands them to mutmut per test.
# PYTHONPATH puts the mutated copy first for children that run from elsewhere (the reaper probe); the
# pypilot ones run from it anyway (tests/pid1.py's cwd). `mutmut results` / `mutmut show NAME` in
# $WORK/<module> list the survivors and show one (with PYTHONPATH=$WORK/hooks). sh reads this file as
# it goes: do not edit it while a run is under way (a run broke off with a syntax error that way).
set -eu
# Its own PID namespace (this script its PID 1): a mutant can make a pypilot that is not PID 1 (the
# subreaper tests) take itself for one and kill(-1) as root, which outside would reach every process
# on the machine. Inside, it reaches only this run. Ending the run: kill the unshare (--kill-child).
if [ -z "${MUTATION_NS:-}" ]; then
    export MUTATION_NS=1
    exec unshare -fp --mount-proc --kill-child "$0" "$@"
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
MODULES=${MODULES:-"pypilot/jobs.py pypilot/process.py pypilot/reaper.py pypilot/supervisor.py pypilot/loop.py"}
WORK=${WORK:-$(mktemp -d /tmp/pypilot-mutation-XXXXXX)}
JOBS=${JOBS:-2}
# A mutant that hangs a test is killed in seconds, not minutes: pytest-timeout fails the test (mutmut
# counts it killed) after TEST_TIMEOUT s, ten times the slowest test here; mutmut's own wall-clock
# timeout, (the mutant's tests' time + 10 s) x 3, catches a hang outside a test (collection, teardown).
TEST_TIMEOUT=${TEST_TIMEOUT:-10}

# Per module: its unit tests, then end-to-end tests of a second or less that drive it (no storms: a
# surviving mutant runs every test that reached it, and mutmut's trampolines slow a storm tenfold).
tests_for() {
    case "$1" in
    pypilot/jobs.py) echo "tests/test_jobs.py tests/test_jobs_mutants.py tests/test_job_flow.py
        tests/test_readiness_unit.py tests/test_jobs_stop.py tests/test_jobs_exit_events.py
        tests/test_jobs_e2e.py::test_tasks_cp tests/test_jobs_e2e.py::test_coprocess_cp
        tests/test_jobs_e2e.py::test_sigterm_runs_prestop_and_poststop_cp
        tests/test_jobs_e2e.py::test_per_job_stop_signal
        tests/test_jobs_e2e.py::test_main_job_exit_code_becomes_pypilot_exit_code
        tests/test_pid1.py::test_crash_looping_job_keeps_pid1_up_and_backs_off
        tests/test_pid1.py::test_all_jobs_completed_pypilot_exits_by_itself" ;;
    pypilot/process.py) echo "tests/test_process.py tests/test_process_mutants.py tests/test_spawn_ex.py
        tests/test_jobs_stop.py::test_operator_stop_signals_the_whole_group
        tests/test_jobs_stop.py::test_signal_endpoint_signals_the_whole_group
        tests/test_jobs_stop.py::test_eperm_when_signalling_a_job_that_switched_uid_is_a_log_line_not_an_exit
        tests/test_pid1.py::test_long_output_line_is_logged_whole
        tests/test_pid1.py::test_raw_logging_passes_output_through_untouched
        tests/test_jobs_e2e.py::test_logging_formats_cp
        tests/test_jobs_e2e.py::test_envvars_pid_of_a_running_job_cp" ;;
    pypilot/reaper.py) echo "tests/test_reaper.py tests/test_reaper_mutants.py tests/test_reaper_spawn_messages.py
        tests/test_process.py
        tests/test_process_mutants.py tests/test_spawn_ex.py
        tests/test_pid1.py::test_jobs_start_with_clean_signal_mask_and_dispositions
        tests/test_pid1.py::test_missing_executable_is_a_failed_exit_and_pid1_stays_up" ;;
    pypilot/supervisor.py) echo "tests/test_supervisor_mutants.py
        tests/test_reload.py::test_reload_restarts_every_job_by_default_as_containerpilot_did
        tests/test_reload.py::test_reload_with_a_bad_config_is_rejected_and_keeps_every_job
        tests/test_reload.py::test_diff_reload_restarts_a_job_whose_environment_changed_by_putenv
        tests/test_reload.py::test_shutdown_overrides_a_reload_waiting_for_its_grace_and_exits_at_once
        tests/test_reload.py::test_diff_reload_rolls_back_a_changed_job_that_never_turns_healthy_within_the_grace
        tests/test_reload.py::test_diff_reload_waits_for_a_changed_jobs_readiness_and_rolls_back_without_it
        tests/test_pid1.py::test_shutdown_signal_takes_effect_and_returns_early
        tests/test_pid1.py::test_sighup_does_not_stop_pypilot
        tests/test_pid1.py::test_signal_storm_leaves_pid1_alive_and_working
        tests/test_pid1.py::test_escapee_is_gone_after_shutdown_within_deadline
        tests/test_pid1.py::test_all_jobs_completed_pypilot_exits_by_itself
        tests/test_jobs_e2e.py::test_sigterm_runs_prestop_and_poststop_cp
        tests/test_jobs_e2e.py::test_main_job_killed_by_sigterm_remapped_to_zero
        tests/test_jobs_e2e.py::test_zero_jobs_sigterm_exits_at_once
        tests/test_jobs_e2e.py::test_reopen_log_file_on_sigusr1_cp
        tests/test_jobs_e2e.py::test_sighup_and_sigusr2_fire_their_jobs_cp
        tests/test_jobs_stop.py::test_term_ignoring_job_killed_after_its_stop_timeout_at_shutdown" ;;
    pypilot/loop.py) echo "tests/test_loop_mutants.py
        tests/test_pid1.py::test_sighup_does_not_stop_pypilot
        tests/test_pid1.py::test_all_jobs_completed_pypilot_exits_by_itself
        tests/test_pid1.py::test_job_that_cannot_start_spinning_does_not_starve_the_loop
        tests/test_jobs_e2e.py::test_tasks_cp" ;;
    *) echo "tests/" ;;
    esac
}

"$PY" -m mutmut --version >/dev/null 2>&1 || "$PY" -m pip install -q 'mutmut>=3.8,<4'
mkdir -p "$WORK/hooks"
# In a pypilot child during mutmut's stats run: record each function reached in $MUTATION_HITS.
cat > "$WORK/hooks/sitecustomize.py" <<'EOF'
import os

if os.environ.get("MUTANT_UNDER_TEST") == "stats" and os.environ.get("MUTATION_HITS"):
    import mutmut.mutation.trampoline as _t

    _seen: set[str] = set()

    def _hit(name: str, caller: object = None) -> None:
        if name not in _seen:
            _seen.add(name)
            try:  # a job's child, or a pypilot run as another user (its hits are lost, not its run)
                fd = os.open(os.environ["MUTATION_HITS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            except OSError:
                return
            os.write(fd, (name + "\n").encode())
            os.close(fd)

    _t.record_trampoline_hit = _hit
EOF
# In mutmut's pytest: credit the functions the test's children reached to that test.
cat > "$WORK/hooks/mutation_hits.py" <<'EOF'
import os

import pytest


def _take() -> set[str]:
    path = os.environ.get("MUTATION_HITS", "")
    try:
        with open(path) as f:
            names = set(f.read().split())
        os.unlink(path)
    except OSError:
        return set()
    return names


def pytest_configure(config: object) -> None:
    # each mutant's tests their own process group: a mutant that signals its caller's group (kill(0))
    # ends that mutant's run, not mutmut
    if os.environ.get("MUTANT_UNDER_TEST") not in (None, "", "stats"):
        try:
            os.setpgid(0, 0)
        except OSError:  # a session leader already
            pass


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: object) -> None:
    _take()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: object) -> None:
    names = _take()
    if names and os.environ.get("MUTANT_UNDER_TEST") == "stats":
        from mutmut.state import state

        state()._stats.update(names)
EOF

# A mutant that hangs a test is killed by mutmut's timeout, and the pypilot it started (under unshare,
# in $WORK/<module>/tmp) is left: end those older than any test here may last (TEST_TIMEOUT).
sweep() {
    while sleep 30; do
        ps -eo pid=,etimes=,args= | while read -r pid age args; do
            case "$args" in
            *"-m pypilot -config $WORK/"*) [ "$age" -gt 60 ] && kill -KILL "$pid" 2>/dev/null ;;
            esac
        done
    done
}
sweep &
SWEEPER=$!
trap 'kill $SWEEPER 2>/dev/null' EXIT

echo "mutation run in $WORK"
for m in $MODULES; do
    name=$(basename "$m" .py)
    dir="$WORK/$name"
    tests=${TESTS:-$(tests_for "$m")}
    if [ -n "${RECHECK:-}" ]; then
        # the same test selection (a changed one resets every result), its files and the rest of
        # pypilot as in HEAD now (a rebase); the module itself only if it changed: mutmut then mutates
        # its changed functions afresh (their old results go)
        (cd "$ROOT" && git archive HEAD tests pypilot csrc) | tar -x -C "$dir" --exclude="$m"
        cp "$ROOT"/pypilot/_reaper*.so "$dir/pypilot/"
        if ! (cd "$ROOT" && git show "HEAD:$m") | cmp -s - "$dir/$m"; then
            (cd "$ROOT" && git show "HEAD:$m") >"$dir/$m"
            echo "$m changed since the run: its changed functions are mutated afresh"
        fi
        echo "== $m: survivors (and mutants no test reached) again ($(date -u +%H:%M) UTC)"
        (
            cd "$dir"
            export TMPDIR="$dir/tmp" MUTATION_HITS="$dir/tmp/hits" PYTHONPATH="$WORK/hooks:$dir/mutants"
            survivors=$(grep -E ': (survived|no tests)$' results.txt | sed 's/^ *//; s/: [a-z ]*$//')
            [ -z "$survivors" ] || "$PY" -m mutmut run --max-children "$JOBS" $survivors >"$dir/recheck.log" 2>&1 || true
            "$PY" -m mutmut results >"$dir/results.txt" 2>&1 || true
        )
        echo "$m: $(grep -c ': survived' "$dir/results.txt" || true) survived ($(date -u +%H:%M) UTC)"
        continue
    fi
    rm -rf "$dir"
    mkdir -p "$dir/tmp" "$dir/mutants"  # before Python starts: a path missing then is never looked in
    (cd "$ROOT" && git archive HEAD) | tar -x -C "$dir"
    cp "$ROOT"/pypilot/_reaper*.so "$dir/pypilot/"
    {
        echo "[mutmut]"
        printf 'source_paths=\n    %s\n' "$m"
        printf 'pytest_add_cli_args_test_selection=\n'
        for t in $tests; do [ -e "$dir/${t%%::*}" ] && printf '    %s\n' "$t"; done
        printf 'also_copy=\n    pypilot/\n    tests/\n    csrc/\n'
        printf 'pytest_add_cli_args=\n    -m\n    not slow and not image\n    -p\n    no:cacheprovider\n'
        printf '    -p\n    mutation_hits\n    --timeout=%s\n' "$TEST_TIMEOUT"
        printf 'timeout_multiplier=3.0\ntimeout_constant=10.0\n'
        # Not mutated, the lines where a mutant signals far beyond what the test runs: where pypilot
        # tells PID 1 (kill(-1)) from a subreaper (its descendants), so a pypilot that is not PID 1
        # would kill(-1) as root; a Command's "no process" pid (0; a 1 makes its signal kill(-1)) and
        # the guard that keeps pid 0 from being signalled (killpg(0): the caller's own group, mutmut's).
        printf 'do_not_mutate_patterns=\n'
        printf '    %s\n' 'is_pid1 = os.getpid\(\) == 1' 'if self.is_pid1:' 'self\.pid = 0$' 'if not self\.pid:'
    } > "$dir/setup.cfg"
    echo "== $m ($(date -u +%H:%M) UTC)"
    (
        cd "$dir"
        export TMPDIR="$dir/tmp" MUTATION_HITS="$dir/tmp/hits" PYTHONPATH="$WORK/hooks:$dir/mutants"
        "$PY" -m mutmut run --max-children "$JOBS" >"$dir/run.log" 2>&1 || true
        "$PY" -m mutmut results >"$dir/results.txt" 2>&1 || true
        "$PY" -m mutmut results --all true >"$dir/all.txt" 2>&1 || true
    )
    printf '%s: %s mutants, %s survived, %s no tests, %s timeout (%s UTC)\n' "$m" \
        "$(grep -c '__mutmut_' "$dir/all.txt" || true)" "$(grep -c ': survived' "$dir/results.txt" || true)" \
        "$(grep -c ': no tests' "$dir/results.txt" || true)" "$(grep -c ': timeout' "$dir/results.txt" || true)" \
        "$(date -u +%H:%M)"
done
