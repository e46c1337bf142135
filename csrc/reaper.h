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
int pp_pidfd_open(int pid);
int pp_kill_group(int pgid, int sig, int pidfd);
int pp_kill(int pid, int sig);
int pp_set_subreaper(void);
int pp_has_children(void);

#endif
