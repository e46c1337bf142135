/*
 * reaper.c - the PID-1 hot path of pypilot, exposed to Python through cffi.
 *
 * It owns the four things Python cannot do safely or fast enough as PID 1:
 *   signals  block every asynchronous signal and hand them over as a signalfd;
 *   reaping  peek at each exit with waitid(WNOWAIT), signal a held group while its
 *            leader is still a zombie, then reap exactly that PID; drain until none left;
 *   spawning posix_spawn into a new process group with a clean signal mask and
 *            default dispositions, chosen stdio, env and cwd; and, only for a job that asks
 *            for more (user, limits, umask, no_new_privs, a terminal, a ppid shim), a
 *            clone(CLONE_VM|CLONE_VFORK) child that applies it before exec (pp_spawn_ex);
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
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <termios.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

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

/* ---- the second spawn path: what posix_spawn cannot do ------------------------------------------
 *
 * posix_spawn cannot setgroups/setuid, set limits or the umask, prctl or make a terminal's foreground
 * group, so a job that asks for any of that is started here instead; plain jobs keep posix_spawnp above
 * (the reap-storm and restart hot path). The child is a clone(CLONE_VM|CLONE_VFORK), as glibc's own
 * posix_spawn: it shares our memory until it execs, so it makes only plain system calls (credentials
 * through raw syscalls: glibc's setuid would try to signal our other threads), never allocates, and
 * reports a failure by writing it into `struct child_args` before it exits. With a ppid shim the job's
 * parent must be a process of its own that outlives the exec, so that one is a real fork (see spawn_shim).
 */
#define PP_STAGE_MAX 80

struct child_args {
    const char *file;
    char *const *argv;
    char *const *envp;
    const char *cwd;
    const struct pp_spawn_ext *ext;
    int fds[3];
    int new_group;
    int tty_fd;
    int pdeathsig;
    volatile int err;
    char stage[PP_STAGE_MAX];
};

static void stage_set(struct child_args *a, const char *what, int num, int err)
{
    size_t i = 0;
    for (; what[i] && i < PP_STAGE_MAX - 16; i++)
        a->stage[i] = what[i];
    if (num >= 0) { /* no snprintf: it is not async-signal-safe */
        char digits[12];
        int n = 0;
        do
            digits[n++] = (char)('0' + num % 10);
        while ((num /= 10) && n < 11);
        a->stage[i++] = ' ';
        while (n)
            a->stage[i++] = digits[--n];
    }
    a->stage[i] = '\0';
    a->err = err ? err : EINVAL;
}

/* setpgid, the terminal and stdio: what the process group leader (the job, or its shim) does first */
static int child_session(struct child_args *a)
{
    if (a->new_group && setpgid(0, 0) < 0) {
        stage_set(a, "setpgid", -1, errno);
        return -1;
    }
    /* Blocked counts as ignored for SIGTTOU, so a background group may take the terminal. A terminal that
     * is not our session's controlling one (ENOTTY) is left alone, as tini does: the job still runs. */
    if (a->tty_fd >= 0)
        (void)tcsetpgrp(a->tty_fd, getpid());
    for (int target = 0; target < 3; target++) {
        int fd = a->fds[target];
        if (fd < 0)
            continue;
        if (fd == target) { /* as posix_spawn's adddup2 onto itself: keep it across exec */
            int fl = fcntl(fd, F_GETFD);
            if (fl < 0 || fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC) < 0) {
                stage_set(a, "dup2", target, errno);
                return -1;
            }
        } else if (dup2(fd, target) < 0) {
            stage_set(a, "dup2", target, errno);
            return -1;
        }
    }
    const struct pp_spawn_ext *x = a->ext;
    if (x->pass_fd >= 0 && x->pass_target >= 0) {
        if (x->pass_fd == x->pass_target) {
            int fl = fcntl(x->pass_fd, F_GETFD);
            if (fl < 0 || fcntl(x->pass_fd, F_SETFD, fl & ~FD_CLOEXEC) < 0) {
                stage_set(a, "dup2", x->pass_target, errno);
                return -1;
            }
        } else if (dup2(x->pass_fd, x->pass_target) < 0) {
            stage_set(a, "dup2", x->pass_target, errno);
            return -1;
        }
    }
    return 0;
}

#if defined(SYS_setresuid32)
#define PP_SYS_SETRESUID SYS_setresuid32
#define PP_SYS_SETRESGID SYS_setresgid32
#define PP_SYS_SETGROUPS SYS_setgroups32
#else
#define PP_SYS_SETRESUID SYS_setresuid
#define PP_SYS_SETRESGID SYS_setresgid
#define PP_SYS_SETGROUPS SYS_setgroups
#endif

/* Limits, umask, credentials, cwd, no_new_privs, signals, exec. Returns only on failure. Limits come
 * before the credentials (raising a hard limit needs CAP_SYS_RESOURCE); cwd after them, so a directory
 * the user may not enter fails the start instead of being entered as root. */
static void child_exec(struct child_args *a)
{
    const struct pp_spawn_ext *x = a->ext;
    for (int i = 0; i < x->nrlimits; i++) {
        struct rlimit rl;
        rl.rlim_cur = x->rlimit_soft[i] < 0 ? RLIM_INFINITY : (rlim_t)x->rlimit_soft[i];
        rl.rlim_max = x->rlimit_hard[i] < 0 ? RLIM_INFINITY : (rlim_t)x->rlimit_hard[i];
        if (setrlimit(x->rlimit_res[i], &rl) < 0) {
            stage_set(a, "setrlimit", x->rlimit_res[i], errno);
            return;
        }
    }
    if (x->umask >= 0)
        umask((mode_t)x->umask);
    if (x->ngroups >= 0 && syscall(PP_SYS_SETGROUPS, (long)x->ngroups, x->groups) < 0) {
        stage_set(a, "setgroups", -1, errno);
        return;
    }
    if (x->gid >= 0 && syscall(PP_SYS_SETRESGID, (long)x->gid, (long)x->gid, (long)x->gid) < 0) {
        stage_set(a, "setgid", x->gid, errno);
        return;
    }
    if (x->uid >= 0 && syscall(PP_SYS_SETRESUID, (long)x->uid, (long)x->uid, (long)x->uid) < 0) {
        stage_set(a, "setuid", x->uid, errno);
        return;
    }
    if (a->cwd && *a->cwd && chdir(a->cwd) < 0) {
        stage_set(a, "chdir", -1, errno);
        return;
    }
    if (x->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        stage_set(a, "no_new_privs", -1, errno);
        return;
    }
    /* after the credentials: changing them clears it. If the shim is killed alone, the job goes too */
    if (a->pdeathsig)
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    /* Default dispositions (a handler would run our code in the child; SIG_IGN would survive exec), then
     * the empty mask. glibc's internal signals (32 up to SIGRTMIN) are glibc's and never ignored. */
    int rtmin = SIGRTMIN;
    for (int sig = 1; sig < _NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP || (sig >= 32 && sig < rtmin))
            continue;
        struct sigaction sa;
        if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL) {
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = SIG_DFL;
            (void)sigaction(sig, &sa, NULL);
        }
    }
    sigset_t empty;
    sigemptyset(&empty);
    (void)syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, NULL, (long)(_NSIG / 8));
    execvpe(a->file, a->argv, a->envp);
    stage_set(a, "exec", -1, errno);
}

static int vfork_child(void *arg)
{
    struct child_args *a = arg;
    if (child_session(a) == 0)
        child_exec(a);
    _exit(127);
}

/* clone(CLONE_VM|CLONE_VFORK) `a`'s child with every signal blocked (a handler of ours must not run in
 * it); we resume when it has exec'd or exited. A child that failed is reaped here, as posix_spawn reaps
 * its own failed child: it never was a job, so the reaper never hears of it. */
static int vfork_spawn(struct child_args *a, pid_t *pid_out)
{
    size_t argc = 0;
    while (a->argv[argc])
        argc++;
    size_t size = 65536 + (argc + 2) * sizeof(char *); /* execvpe's script fallback copies argv */
    void *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        return -errno;
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    a->err = 0;
    pid_t pid = clone(vfork_child, (char *)stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, a);
    int clone_err = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    munmap(stack, size);
    if (pid < 0) {
        stage_set(a, "clone", -1, clone_err);
        return -clone_err;
    }
    if (a->err) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return -a->err;
    }
    *pid_out = pid;
    return 0;
}

struct shim_report {
    int err;
    char stage[PP_STAGE_MAX];
};

static void close_from(int first, int keep)
{
    /* close_range(2) (Linux 5.9) or, before it, every fd up to the limit */
    if (syscall(436, (unsigned)first, (unsigned)keep - 1, 0) == 0 &&
        syscall(436, (unsigned)keep + 1, ~0U, 0) == 0)
        return;
    struct rlimit rl;
    int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
    for (int fd = first; fd < max; fd++)
        if (fd != keep)
            close(fd);
}

/* The shim's whole life: wait for the job, pass on what was aimed at the shim alone, end as it ended. */
static void __attribute__((noreturn)) shim_wait(pid_t child)
{
    sigset_t all;
    sigfillset(&all);
    pid_t parent = getppid();
    int status = 0;
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&all, &si);
        if (sig < 0)
            continue;
        if (sig == SIGCHLD) {
            if (waitpid(child, &status, WNOHANG) == child)
                break;
            continue;
        }
        /* The job shares the shim's process group, so a signal to the group (pypilot only ever signals
         * groups) or from the terminal (si_code > 0) already reached it: passing it on would deliver it
         * twice. One sent to the shim's PID by anyone else (`kill PID`) is passed on. */
        if (si.si_code <= 0 && si.si_pid != parent)
            kill(child, sig);
    }
    if (WIFEXITED(status))
        _exit(WEXITSTATUS(status));
    int sig = WTERMSIG(status);
    /* die of the same signal; but no core: that would be a copy of pypilot's image, not the job's */
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    struct rlimit none = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &none);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    (void)sigaction(sig, &sa, NULL);
    kill(getpid(), sig);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    _exit(128 + sig);
}

static void __attribute__((noreturn)) shim_main(struct child_args *a, int report_fd)
{
    /* A fork of a process that may have threads: only async-signal-safe calls from here on, forever. */
    struct shim_report rep;
    memset(&rep, 0, sizeof rep);
    pid_t pid = -1;
    if (child_session(a) == 0) {
        close_from(3, report_fd); /* pypilot's pipes and sockets: their readers must see EOF */
        (void)prctl(PR_SET_NAME, "ppid-shim", 0, 0, 0); /* what `ps` shows for it, not "python" */
        struct child_args g = *a;
        g.new_group = 0;
        g.tty_fd = -1;
        g.fds[0] = g.fds[1] = g.fds[2] = -1;
        g.pdeathsig = 1;
        g.err = 0;
        pid_t gpid;
        if (vfork_spawn(&g, &gpid) == 0)
            pid = gpid;
        else
            *a = g;
    }
    if (pid < 0) {
        rep.err = a->err;
        memcpy(rep.stage, a->stage, sizeof rep.stage);
        (void)!write(report_fd, &rep, sizeof rep);
        _exit(127);
    }
    close(report_fd);
    shim_wait(pid);
}

/* fork without the atfork handlers (they may take locks another thread holds): glibc >= 2.34's _Fork,
 * else the system call itself (the shim then makes only plain system calls, never raise()) */
static pid_t plain_fork(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    return _Fork();
#elif defined(SYS_fork)
    return (pid_t)syscall(SYS_fork);
#else
    return (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
#endif
}

/* ppid shim: a real fork (the shim must live on after the job's exec, so it cannot share our memory),
 * leader of the job's group; the job is its clone(CLONE_VFORK) child. We wait on a CLOEXEC pipe until the
 * job has exec'd (EOF) or one of them reports why it could not. */
static int shim_spawn(struct child_args *a, pid_t *pid_out)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -errno;
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t pid = plain_fork();
    if (pid == 0) {
        close(pfd[0]);
        shim_main(a, pfd[1]);
    }
    int fork_err = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(pfd[1]);
    if (pid < 0) {
        close(pfd[0]);
        stage_set(a, "fork", -1, fork_err);
        return -fork_err;
    }
    struct shim_report rep;
    size_t got = 0;
    while (got < sizeof rep) {
        ssize_t n = read(pfd[0], (char *)&rep + got, sizeof rep - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(pfd[0]);
    if (got == sizeof rep && rep.err) {
        memcpy(a->stage, rep.stage, sizeof a->stage);
        a->stage[PP_STAGE_MAX - 1] = '\0';
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return -rep.err;
    }
    *pid_out = pid;
    return 0;
}

int pp_spawn_ex(const char *file, char *const argv[], char *const envp[], const char *cwd, int fd_in,
                int fd_out, int fd_err, int new_group, struct pp_spawn_ext *ext, int *pid_out)
{
    struct child_args a;
    memset(&a, 0, sizeof a);
    a.file = file;
    a.argv = argv;
    a.envp = envp;
    a.cwd = cwd;
    a.ext = ext;
    a.fds[0] = fd_in;
    a.fds[1] = fd_out;
    a.fds[2] = fd_err;
    a.new_group = new_group;
    a.tty_fd = ext->tty_fd;
    ext->stage[0] = '\0';
    pid_t pid = 0;
    int ret = ext->ppid_shim ? shim_spawn(&a, &pid) : vfork_spawn(&a, &pid);
    if (ret < 0)
        memcpy(ext->stage, a.stage, sizeof ext->stage);
    else
        *pid_out = pid;
    return ret;
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

int pp_malloc_tune(int mmap_threshold, int arena_max)
{
#ifdef __GLIBC__
    /* a fixed threshold also stops glibc raising it after each free of a big block, which kept
     * every 1 MiB request body of a flood in the heap, counted in RSS long after it was answered */
    if (mmap_threshold > 0 && !mallopt(M_MMAP_THRESHOLD, mmap_threshold))
        return -EINVAL;
    if (arena_max > 0 && !mallopt(M_ARENA_MAX, arena_max))
        return -EINVAL;
    return 0;
#else
    (void)mmap_threshold;
    (void)arena_max;
    return -ENOSYS;
#endif
}

int pp_malloc_trim(void)
{
#ifdef __GLIBC__
    return malloc_trim(0);
#else
    return -ENOSYS;
#endif
}
