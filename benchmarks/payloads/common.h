/* Shared helpers for the benchmark payloads: clocks, raw writes, and argv from $PAYLOAD_ARGS.
 * s6 and runit run `./run` with no arguments, so a payload symlinked as `run` reads its
 * arguments from the environment variable PAYLOAD_ARGS (space separated) instead; when that is set it wins over
 * argv (s6-supervise passes the service name as argv[1]). */
#ifndef PAYLOAD_COMMON_H
#define PAYLOAD_COMMON_H
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void say(const char *buf, int len) {
    while (len > 0) {
        ssize_t n = write(1, buf, (size_t)len);
        if (n <= 0) return;
        buf += n;
        len -= (int)n;
    }
}

static int env_argv(int argc, char ***argv) {
    static char *vec[16];
    const char *env = getenv("PAYLOAD_ARGS");
    if (env == NULL) return argc;
    char *copy = strdup(env);
    int n = 0;
    vec[n++] = (*argv)[0];
    for (char *tok = strtok(copy, " "); tok != NULL && n < 15; tok = strtok(NULL, " ")) vec[n++] = tok;
    vec[n] = NULL;
    *argv = vec;
    return n;
}
#endif
