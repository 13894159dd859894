/* Leaves signals pending while blocked: SIGUSR1 for the thread (raise), SIGUSR2 and SIGRTMIN+1
 * with value 4242 for the process (kill, sigqueue). Then sleeps until its stop file exists,
 * unblocks them and checks each handler ran once (and the value arrived). PASS or FAIL. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, usr2, rt, rtval;

static void h(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    if (sig == SIGUSR1) usr1++;
    if (sig == SIGUSR2) usr2++;
    if (sig == SIGRTMIN + 1) { rt++; rtval = si->si_value.sival_int; }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = h;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGRTMIN + 1, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    raise(SIGUSR1);
    kill(getpid(), SIGUSR2);
    union sigval v = {.sival_int = 4242};
    sigqueue(getpid(), SIGRTMIN + 1, v);
    printf("READY\n");
    fflush(stdout);
    while (access(argv[1], F_OK) != 0) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        if (nanosleep(&ts, NULL)) { printf("FAIL nanosleep\n"); return 1; }
    }
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    if (usr1 != 1 || usr2 != 1 || rt != 1 || rtval != 4242) {
        printf("FAIL usr1 %d usr2 %d rt %d val %d\n", usr1, usr2, rt, rtval);
        return 1;
    }
    printf("PASS\n");
    return 0;
}
