/* Signal state across the checkpoint: a SIGUSR1 handler installed before and triggered after
 * (with its flags and mask), SIGHUP still blocked, SIGURG and SIGRTMIN+2 (with its value)
 * pending and received after restore, SIGTERM pending and delivered to its handler once
 * unblocked, SIGPIPE ignored, an alternate signal stack; also the
 * clear_child_tid address and the rseq registration (per-task state outside memory). */
#include "common.h"
#include <stddef.h>
#include <sys/prctl.h>

static volatile sig_atomic_t usr1, term;

static void on_term(int sig) { (void)sig; term++; }
static volatile int usr1_on_altstack;
static char altstack[65536];

static void on_usr1(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)si; (void)uc;
    char here;
    usr1_on_altstack = &here >= altstack && &here < altstack + sizeof altstack;
    usr1++;
}

int main(void) {
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    if (sigaltstack(&ss, NULL)) fail("sigaltstack");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    if (sigaction(SIGUSR1, &sa, NULL)) fail("sigaction");
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGURG);
    sigaddset(&block, SIGRTMIN + 2);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, NULL);
    sigdelset(&block, SIGTERM);
    raise(SIGURG);
    raise(SIGTERM);
    union sigval v = {.sival_int = 42};
    if (sigqueue(getpid(), SIGRTMIN + 2, v)) fail("sigqueue");
    int *tid_addr_before = NULL;
    prctl(PR_GET_TID_ADDRESS, &tid_addr_before);
    long rseq_before = rseq_probe();
    ready();
    wait_go();
    /* The harness sent SIGUSR1, then SIGUSR2. */
    int *tid_addr_after = NULL;
    prctl(PR_GET_TID_ADDRESS, &tid_addr_after);
    if (tid_addr_after != tid_addr_before) fail("clear_child_tid %p, was %p", (void *)tid_addr_after, (void *)tid_addr_before);
    long rseq_after = rseq_probe();
    if (rseq_after != rseq_before) fail("rseq probe gives %ld, gave %ld before", rseq_after, rseq_before);
    if (usr1 != 1) fail("SIGUSR1 handler ran %d times", (int)usr1);
    if (!usr1_on_altstack) fail("SIGUSR1 handler did not run on the alternate stack");
    struct sigaction now;
    sigaction(SIGUSR1, NULL, &now);
    if (now.sa_sigaction != on_usr1) fail("SIGUSR1 handler changed");
    if ((now.sa_flags & (SA_SIGINFO | SA_RESTART | SA_ONSTACK)) != (SA_SIGINFO | SA_RESTART | SA_ONSTACK))
        fail("SIGUSR1 flags %#x", now.sa_flags);
    if (!sigismember(&now.sa_mask, SIGINT)) fail("SIGUSR1 mask lost SIGINT");
    sigaction(SIGPIPE, NULL, &now);
    if (now.sa_handler != SIG_IGN) fail("SIGPIPE no longer ignored");
    sigset_t cur, pend;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    if (!sigismember(&cur, SIGHUP)) fail("SIGHUP no longer blocked");
    if (sigismember(&cur, SIGUSR1)) fail("SIGUSR1 blocked");
    sigpending(&pend);
    if (!sigismember(&pend, SIGURG)) fail("SIGURG no longer pending");
    if (!sigismember(&pend, SIGRTMIN + 2)) fail("SIGRTMIN+2 no longer pending");
    siginfo_t si;
    struct timespec zero = {0, 0};
    if (sigtimedwait(&block, &si, &zero) < 0) fail("sigtimedwait: %s", strerror(errno));
    /* Lowest first: SIGURG (23) before SIGRTMIN+2. */
    if (si.si_signo != SIGURG) fail("first pending is %d", si.si_signo);
    if (sigtimedwait(&block, &si, &zero) < 0) fail("sigtimedwait 2: %s", strerror(errno));
    if (si.si_signo != SIGRTMIN + 2 || si.si_value.sival_int != 42 || si.si_code != SI_QUEUE || si.si_pid != getpid())
        fail("queued signal %d value %d code %d", si.si_signo, si.si_value.sival_int, si.si_code);
    /* SIGTERM was pending and blocked across the checkpoint: unblocked now, its handler runs. */
    if (term != 0) fail("SIGTERM handler ran while blocked");
    sigset_t t;
    sigemptyset(&t);
    sigaddset(&t, SIGTERM);
    sigprocmask(SIG_UNBLOCK, &t, NULL);
    if (term != 1) fail("pending SIGTERM not delivered after unblocking (%d)", (int)term);
    stack_t cur_ss;
    sigaltstack(NULL, &cur_ss);
    if (cur_ss.ss_sp != altstack || cur_ss.ss_size != sizeof altstack) fail("sigaltstack changed");
    pass();
}
