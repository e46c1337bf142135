/* churn [RATE]
 * An exit storm every init has to absorb: RATE times a second (default 1000), fork a child that forks a
 * grandchild and exits at once, so the grandchild exits as an orphan of PID 1. Prints "CHURN rate=R" once, then
 * runs until killed. The schedule is absolute (clock_nanosleep TIMER_ABSTIME), so it does not drift. */
#include "common.h"
#include <sys/wait.h>

int main(int argc, char **argv) {
    char buf[64];
    argc = env_argv(argc, &argv);
    long rate = argc > 1 ? atol(argv[1]) : 1000;
    if (rate <= 0) rate = 1000;
    long step = 1000000000L / rate;
    say(buf, snprintf(buf, sizeof buf, "CHURN rate=%ld\n", rate));
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        pid_t c = fork();
        if (c == 0) {
            if (fork() == 0) _exit(0);
            _exit(0);
        }
        if (c > 0) waitpid(c, NULL, 0);
        next.tv_nsec += step;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
}
