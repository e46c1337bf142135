/* reapstorm N [self] [TIMEOUT_S]
 * Makes N orphans and times how long the init takes to reap them all.
 * A middle process forks N children that block on read() of a gate pipe, sends their PIDs up and exits, so
 * the children are orphaned (re-parented to PID 1, or to us with "self": PR_SET_CHILD_SUBREAPER, the floor).
 * Once the middle process is reaped, closing the gate's write end releases all N at once.
 * init mode: poll kill(pid, 0) until every PID is ESRCH (a zombie still answers 0, so ESRCH = reaped).
 * self mode: waitpid(-1) until all N are collected (the physical floor: the payload reaps its own).
 * Prints "REAPED n=N release_mono=NS done_mono=NS ms=F" (or "STORMFAIL ..."), then sleeps forever so a
 * restarting supervisor does not start a second storm; the harness kills the namespace. */
#include "common.h"
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
    char buf[200];
    argc = env_argv(argc, &argv);
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    int self = argc > 2 && strcmp(argv[2], "self") == 0;
    long long timeout_ns = (argc > 3 ? atoll(argv[3]) : 150) * 1000000000LL;
    if (n <= 0) n = 1;
    pid_t *pids = calloc((size_t)n, sizeof(pid_t));
    int gate[2], info[2];
    if (!pids || pipe(gate) || pipe(info)) return 2;
    if (self) prctl(PR_SET_CHILD_SUBREAPER, 1);
    pid_t mid = fork();
    if (mid < 0) return 3;
    if (mid == 0) {
        close(info[0]);
        for (int i = 0; i < n; i++) {
            pid_t c = fork();
            if (c == 0) {
                char b;
                close(gate[1]);
                close(info[1]);
                while (read(gate[0], &b, 1) < 0 && errno == EINTR) {}
                _exit(0);
            }
            if (c < 0) _exit(4);
            if (write(info[1], &c, sizeof c) != sizeof c) _exit(5);
        }
        _exit(0);
    }
    close(info[1]);
    close(gate[0]);
    int got = 0;
    while (got < n) {
        ssize_t r = read(info[0], pids + got, sizeof(pid_t));
        if (r == sizeof(pid_t)) got++;
        else if (r < 0 && errno == EINTR) continue;
        else break;
    }
    int st = 0;
    waitpid(mid, &st, 0);
    if (got < n || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        say(buf, snprintf(buf, sizeof buf, "STORMFAIL forked=%d of %d status=%d\n", got, n, st));
        for (;;) pause();
    }
    long long t0 = clock_ns(CLOCK_MONOTONIC);
    close(gate[1]);
    int done = 0;
    if (self) {
        while (done < n) {
            pid_t r = waitpid(-1, NULL, 0);
            if (r > 0) done++;
            else if (errno != EINTR) break;
        }
    } else {
        struct timespec nap = {0, 50000};
        while (done < n && clock_ns(CLOCK_MONOTONIC) - t0 < timeout_ns) {
            if (kill(pids[done], 0) < 0 && errno == ESRCH) done++;
            else nanosleep(&nap, NULL);
        }
    }
    long long t1 = clock_ns(CLOCK_MONOTONIC);
    if (done < n)
        say(buf, snprintf(buf, sizeof buf, "STORMFAIL reaped=%d of %d after %lld ns\n", done, n, t1 - t0));
    else
        say(buf, snprintf(buf, sizeof buf, "REAPED n=%d release_mono=%lld done_mono=%lld ms=%.3f\n", n, t0, t1,
                          (double)(t1 - t0) / 1e6));
    for (;;) pause();
}
