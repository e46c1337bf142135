/* reaper.h - the C API that pypilot/reaper.py wraps (see reaper.c for what each owns). */
#ifndef PYPILOT_REAPER_H
#define PYPILOT_REAPER_H

int pp_signals_setup(void);
int pp_signals_read(int fd, int *signos, int *senders, int max);
int pp_hold(int pid, int sig);
int pp_release(int pid);
int pp_reap(int *pids, int *statuses, int max);
int pp_spawn(const char *file, char *const argv[], char *const envp[], const char *cwd, int fd_in,
             int fd_out, int fd_err, int new_group, int *pid_out);
/* What posix_spawn cannot do; -1 (or 0 / NULL) leaves each one as it is. Rlimit values < 0 mean
 * unlimited. `stage` is set to the step that failed (e.g. "setuid 1000", "chdir", "exec"). */
struct pp_spawn_ext {
    int uid;
    int gid;
    int ngroups; /* -1: keep the supplementary groups; else setgroups(ngroups, groups) */
    const unsigned int *groups;
    int umask;
    int nrlimits;
    const int *rlimit_res;
    const long long *rlimit_soft;
    const long long *rlimit_hard;
    int no_new_privs;
    int ppid_shim;
    int tty_fd; /* >= 0: the job's group becomes this terminal's foreground group */
    int pass_fd; /* >= 0: dup2'd onto pass_target in the child, after stdio (s6's notification fd) */
    int pass_target;
    char stage[80];
};
int pp_spawn_ex(const char *file, char *const argv[], char *const envp[], const char *cwd, int fd_in,
                int fd_out, int fd_err, int new_group, struct pp_spawn_ext *ext, int *pid_out);
int pp_pidfd_open(int pid);
int pp_kill_group(int pgid, int sig, int pidfd);
int pp_kill(int pid, int sig);
int pp_set_subreaper(void);
int pp_has_children(void);
/* glibc's mallopt for a threaded worker: big buffers straight from mmap (returned when freed), at most
 * `arena_max` arenas. -ENOSYS where the libc has no mallopt. */
int pp_malloc_tune(int mmap_threshold, int arena_max);
/* glibc's malloc_trim(0): free pages inside the heap go back to the kernel. 1 if any did, 0 if none,
 * -ENOSYS where the libc has no malloc_trim. */
int pp_malloc_trim(void);

#endif
