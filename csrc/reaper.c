/*
 * reaper.c - the PID-1 hot path of pypilot, exposed to Python through cffi.
 *
 * It owns the four things Python cannot do safely or fast enough as PID 1:
 *   signals  block every asynchronous signal and hand them over as a signalfd;
 *   reaping  peek at each exit with waitid(WNOWAIT), signal a held group while its
 *            leader is still a zombie, then reap exactly that PID; drain until none left;
 *   spawning posix_spawn into a new process group with a clean signal mask and
 *            default dispositions, chosen stdio, env and cwd;
 *   groups   killpg, or pidfd_send_signal(PIDFD_SIGNAL_PROCESS_GROUP) where the kernel has it.
 *
 * Every function returns 0 (or a count / fd) on success and -errno on failure; the Python
 * wrapper turns that into OSError. Nothing here allocates on the reap path.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reaper.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef PIDFD_SIGNAL_PROCESS_GROUP
#define PIDFD_SIGNAL_PROCESS_GROUP (1U << 2)
#endif

/* The signals that must keep their default (fatal, core-dumping) action: blocking a
 * synchronous fault makes the kernel kill us anyway, and queueing it would lose the core. */
static const int synchronous_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};

static void handled_set(sigset_t *set)
{
    sigfillset(set); /* glibc leaves out its own internal signals (SIGCANCEL, SIGSETXID) */
    for (size_t i = 0; i < sizeof synchronous_signals / sizeof synchronous_signals[0]; i++)
        sigdelset(set, synchronous_signals[i]);
}

int pp_signals_setup(void)
{
    sigset_t set;
    handled_set(&set);
    /* Called before any thread exists, so the mask is inherited by every thread created later:
     * a signal can then only be consumed through the signalfd, never by a stray thread. */
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -errno;
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int pp_signals_read(int fd, int *signos, int *senders, int max)
{
    struct signalfd_siginfo buf[64];
    int n = 0;
    while (n < max) {
        int want = max - n < 64 ? max - n : 64;
        ssize_t r = read(fd, buf, sizeof buf[0] * (size_t)want);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return n ? n : -errno;
        }
        int got = (int)(r / (ssize_t)sizeof buf[0]);
        for (int i = 0; i < got; i++) {
            signos[n] = (int)buf[i].ssi_signo;
            senders[n] = (int)buf[i].ssi_pid;
            n++;
        }
        if (got < want)
            break;
    }
    return n;
}

/* Leaders whose process group gets a signal at the moment they exit, before they are reaped:
 * while the zombie leader exists its PGID cannot be reused, so the signal cannot hit a stranger. */
#define HELD_MAX 4096
static struct {
    pid_t pid;
    int sig;
} held[HELD_MAX];
static int held_count;

static int held_find(pid_t pid)
{
    for (int i = 0; i < held_count; i++)
        if (held[i].pid == pid)
            return i;
    return -1;
}

int pp_hold(int pid, int sig)
{
    int i = held_find(pid);
    if (i < 0) {
        if (held_count == HELD_MAX)
            return -ENOSPC;
        i = held_count++;
    }
    held[i].pid = pid;
    held[i].sig = sig;
    return 0;
}

int pp_release(int pid)
{
    int i = held_find(pid);
    if (i >= 0)
        held[i] = held[--held_count];
    return 0;
}

int pp_reap(int *pids, int *statuses, int max)
{
    int n = 0;
    while (n < max) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ECHILD)
                break;
            return n ? n : -errno;
        }
        pid_t pid = info.si_pid;
        if (pid == 0)
            break; /* children exist, none has exited */
        int h = held_find(pid);
        if (h >= 0) {
            kill(-pid, held[h].sig); /* ESRCH: the group is already empty */
            held[h] = held[--held_count];
        }
        int status = 0;
        pid_t r;
        do
            r = waitpid(pid, &status, WNOHANG);
        while (r < 0 && errno == EINTR);
        if (r == pid) {
            pids[n] = pid;
            statuses[n] = status;
            n++;
        }
    }
    return n;
}

int pp_spawn(const char *file, char *const argv[], char *const envp[], const char *cwd, int fd_in,
             int fd_out, int fd_err, int new_group, int *pid_out)
{
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    sigset_t empty, all;
    int err;

    if ((err = posix_spawn_file_actions_init(&actions)))
        return -err;
    if ((err = posix_spawnattr_init(&attr))) {
        posix_spawn_file_actions_destroy(&actions);
        return -err;
    }
    const int fds[3] = {fd_in, fd_out, fd_err};
    for (int target = 0; target < 3 && !err; target++)
        if (fds[target] >= 0)
            err = posix_spawn_file_actions_adddup2(&actions, fds[target], target);
    if (!err && cwd && *cwd)
        err = posix_spawn_file_actions_addchdir_np(&actions, cwd);

    /* PID 1 runs with every signal blocked and Python ignores SIGPIPE/SIGXFSZ: a child that
     * inherited either could not be stopped, so it gets an empty mask and default actions. */
    sigemptyset(&empty);
    sigfillset(&all);
    /* glibc's sigfillset leaves out its internal signals (32, 33) and posix_spawn then sets them to
     * SIG_IGN in the child, which exec keeps: name them in the set by hand so they get SIG_DFL. */
    for (int sig = 32; sig <= 33; sig++)
        ((unsigned long *)&all)[(sig - 1) / (8 * sizeof(unsigned long))] |=
            1UL << ((sig - 1) % (8 * sizeof(unsigned long)));
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (new_group)
        flags |= POSIX_SPAWN_SETPGROUP;
    if (!err)
        err = posix_spawnattr_setflags(&attr, flags);
    if (!err)
        err = posix_spawnattr_setsigmask(&attr, &empty);
    if (!err)
        err = posix_spawnattr_setsigdefault(&attr, &all);
    if (!err && new_group)
        err = posix_spawnattr_setpgroup(&attr, 0);

    if (!err) {
        pid_t pid;
        /* glibc spawns with clone(CLONE_VFORK): safe with threads, and an exec failure
         * comes back here as its errno instead of as a child that exits 127. */
        err = posix_spawnp(&pid, file, &actions, &attr, argv, envp);
        if (!err)
            *pid_out = pid;
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    return -err;
}

int pp_pidfd_open(int pid)
{
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : (int)fd;
}

int pp_kill_group(int pgid, int sig, int pidfd)
{
    if (pidfd >= 0) {
        /* Race-free: the pidfd pins the group's struct pid, so a recycled number is never hit. */
        if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, PIDFD_SIGNAL_PROCESS_GROUP) == 0)
            return 0;
        if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
            return -errno;
        /* kernel older than 6.9: fall back to the number */
    }
    return killpg(pgid, sig) < 0 ? -errno : 0;
}

int pp_kill(int pid, int sig)
{
    return kill(pid, sig) < 0 ? -errno : 0;
}

int pp_has_children(void)
{
    siginfo_t info;
    memset(&info, 0, sizeof info);
    /* WNOWAIT: only look; the next pp_reap still gets whoever has exited */
    while (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0) {
        if (errno == ECHILD)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
    return 1;
}

int pp_set_subreaper(void)
{
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0 ? -errno : 0;
}
