/*
 * net_signal.h -- POSIX signals as readable bytes on a pipe.
 *
 * A signal handler may do almost nothing safely; this one writes the
 * signal number to a nonblocking pipe (the self-pipe pattern), and the loop
 * watches the pipe's read end like any socket.  Signals are caught with
 * sigaction and never blocked, so child processes (which inherit the mask,
 * not handlers) still die of SIGTERM as usual.
 *
 * The pipe and the set of caught signals are process-wide, as signals are:
 * the first net_signal_open makes the pipe, later calls share it.
 *
 * Windows has no such signals; its console control events come instead,
 * under the C library's numbers: Ctrl+C is SIGINT, Ctrl+Break SIGBREAK,
 * closing the console window SIGTERM (Windows then ends the process about
 * 5 seconds later whatever the handler does).  Other numbers give EINVAL.
 */
#ifndef MOONWS_NET_SIGNAL_H
#define MOONWS_NET_SIGNAL_H

#include <stdbool.h>

/* The pipe's read end (made on first use), or -1 with *err set. */
int net_signal_open(int *err);

/* Start catching signo (its previous action is kept for net_signal_release).
 * 0 or an errno. */
int net_signal_catch(int signo);

/* Restore signo's previous action.  0 or an errno. */
int net_signal_release(int signo);

/* Take one caught signal number from the pipe; false when none waits. */
bool net_signal_next(int *signo);

#endif
