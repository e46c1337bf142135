/* stamp [RUN_MS] [exit|crash|CODE]
 * Prints "STAMP pid=P mono=NS real=NS" the moment it runs (CLOCK_MONOTONIC / CLOCK_REALTIME).
 * RUN_MS < 0 (default -1): then sleeps forever (an idle job).
 * RUN_MS >= 0: sleeps RUN_MS ms, prints "EXIT pid=P mono=NS real=NS", then exits 0 ("exit"),
 * kills itself with SIGKILL ("crash", no core dump), or exits with the given code. */
#include "common.h"
#include <signal.h>

int main(int argc, char **argv) {
    char buf[160];
    long long mono = clock_ns(CLOCK_MONOTONIC), real = clock_ns(CLOCK_REALTIME);
    argc = env_argv(argc, &argv);
    int pid = (int)getpid();
    say(buf, snprintf(buf, sizeof buf, "STAMP pid=%d mono=%lld real=%lld\n", pid, mono, real));
    long run_ms = argc > 1 ? atol(argv[1]) : -1;
    if (run_ms < 0) {
        for (;;) pause();
    }
    if (run_ms > 0) {
        struct timespec ts = {run_ms / 1000, (run_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) {}
    }
    mono = clock_ns(CLOCK_MONOTONIC);
    real = clock_ns(CLOCK_REALTIME);
    say(buf, snprintf(buf, sizeof buf, "EXIT pid=%d mono=%lld real=%lld\n", pid, mono, real));
    const char *how = argc > 2 ? argv[2] : "exit";
    if (strcmp(how, "crash") == 0) kill(getpid(), SIGKILL);
    if (strcmp(how, "exit") == 0) return 0;
    return atoi(how);
}
