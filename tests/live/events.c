/* An event loop across the checkpoint: one epoll instance watching an edge-triggered eventfd in
 * semaphore mode (counter 7), a timerfd ticking every 20 ms, a signalfd for SIGUSR1 and a
 * one-shot registration that fired before the capture. After the restore the timer ticks on
 * with its period, SIGUSR1 (sent by the harness after the restore) arrives through the
 * signalfd, the one-shot stays disarmed, the edge-triggered eventfd reports a new write once
 * (and, being ready when re-registered, at most once more before it), and its counter still
 * gives seven reads of 1. */
#include "common.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

enum { EV = 0x1111, TF = 0x2222, SF = 0x3333, ONE = 0x4444 };

static int ep, ev, tf, sf, one;
static int oneshot_seen, ev_seen, usr1_seen;
static uint64_t ticks;

/* Waits up to `ms` for events and handles them. */
static void loop_once(int ms) {
    struct epoll_event evs[8];
    int n = epoll_wait(ep, evs, 8, ms);
    for (int i = 0; i < n; i++) {
        switch (evs[i].data.u64) {
        case TF: {
            uint64_t t;
            if (read(tf, &t, sizeof t) == sizeof t) ticks += t;
            break;
        }
        case SF: {
            struct signalfd_siginfo si;
            while (read(sf, &si, sizeof si) == sizeof si)
                if (si.ssi_signo == SIGUSR1) usr1_seen++;
            break;
        }
        case ONE: oneshot_seen++; break;
        case EV: ev_seen++; break;
        default: fail("epoll reported unknown data %llx", (unsigned long long)evs[i].data.u64);
        }
    }
}

static void add(int fd, uint32_t events, uint64_t data) {
    struct epoll_event e = {.events = events, .data.u64 = data};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e)) fail("epoll_ctl: %s", strerror(errno));
}

int main(void) {
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigprocmask(SIG_BLOCK, &m, NULL);
    ep = epoll_create1(EPOLL_CLOEXEC);
    ev = eventfd(7, EFD_NONBLOCK | EFD_SEMAPHORE);
    tf = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    sf = signalfd(-1, &m, SFD_NONBLOCK);
    one = eventfd(1, EFD_NONBLOCK);
    if (ep < 0 || ev < 0 || tf < 0 || sf < 0 || one < 0) fail("creating the fds");
    struct itimerspec its = {{0, 20 * 1000 * 1000}, {0, 20 * 1000 * 1000}};
    if (timerfd_settime(tf, 0, &its, NULL)) fail("timerfd_settime");
    add(ev, EPOLLIN | EPOLLET, EV);
    add(tf, EPOLLIN, TF);
    add(sf, EPOLLIN, SF);
    add(one, EPOLLIN | EPOLLONESHOT, ONE);
    for (int i = 0; i < 10; i++) loop_once(20);
    if (oneshot_seen != 1 || ev_seen != 1) fail("before: one-shot %d, eventfd %d", oneshot_seen, ev_seen);
    if (ticks < 3) fail("the timer ticked %llu times in 200 ms", (unsigned long long)ticks);
    ready();
    while (!go) loop_once(20);

    /* Over 600 ms, about 30 ticks. */
    double t0 = now_mono();
    uint64_t before = ticks;
    while (now_mono() - t0 < 0.6) loop_once(20);
    uint64_t got = ticks - before;
    if (got < 20 || got > 40) fail("the timer ticked %llu times in 600 ms (period 20 ms)", (unsigned long long)got);
    if (usr1_seen != 1) fail("SIGUSR1 came through the signalfd %d times", usr1_seen);
    if (oneshot_seen != 1) fail("the one-shot registration fired %d times", oneshot_seen);
    /* Registering an edge-triggered fd that is ready reports it once: after a restore the
     * eventfd (still readable) may be reported one more time, never more. */
    int seen = ev_seen;
    if (seen < 1 || seen > 2) fail("the edge-triggered eventfd was reported %d times without a write", seen);
    uint64_t one_more = 1;
    if (write(ev, &one_more, sizeof one_more) != sizeof one_more) fail("write eventfd");
    for (int i = 0; i < 5; i++) loop_once(10);
    if (ev_seen != seen + 1) fail("a write to the eventfd was reported %d times", ev_seen - seen);
    if (!(fcntl(ev, F_GETFL) & O_NONBLOCK)) fail("the eventfd lost O_NONBLOCK");
    int reads = 0;
    uint64_t v;
    while (read(ev, &v, sizeof v) == sizeof v) {
        if (v != 1) fail("semaphore read gave %llu", (unsigned long long)v);
        reads++;
    }
    if (reads != 8) fail("the eventfd semaphore gave %d reads, expected 7 + 1", reads);
    pass();
}
