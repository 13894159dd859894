/* Timers across the checkpoint: ITIMER_REAL every 50 ms (SIGALRM), a POSIX timer on
 * CLOCK_MONOTONIC every 30 ms (SIGRTMIN with a value), and a second POSIX timer that is
 * disarmed, created after a deleted one so that its id is not the first. After the restore
 * both periodic timers keep firing, with the same periods, the POSIX timers keep their ids
 * (timer_gettime works on the saved timer_t) and signal values, and the disarmed one stays
 * disarmed. */
#include "common.h"
#include <sys/time.h>

static volatile sig_atomic_t alarms, rt_ticks, bad_value;

static void on_alarm(int s) { (void)s; alarms++; }
static void on_rt(int s, siginfo_t *si, void *u) {
    (void)s; (void)u;
    if (si->si_code != SI_TIMER || si->si_value.sival_int != 0x5151) bad_value++;
    rt_ticks++;
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct sigaction rt = {0};
    rt.sa_sigaction = on_rt;
    rt.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGRTMIN, &rt, NULL);

    struct itimerval iv = {{0, 50000}, {0, 50000}};
    if (setitimer(ITIMER_REAL, &iv, NULL)) fail("setitimer");
    struct sigevent sev = {0};
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGRTMIN;
    sev.sigev_value.sival_int = 0x5151;
    timer_t first, periodic, idle;
    if (timer_create(CLOCK_MONOTONIC, &sev, &first)) fail("timer_create");
    if (timer_create(CLOCK_MONOTONIC, &sev, &periodic)) fail("timer_create 2");
    if (timer_delete(first)) fail("timer_delete");
    if (timer_create(CLOCK_REALTIME, &sev, &idle)) fail("timer_create 3");
    struct itimerspec its = {{0, 30000000}, {0, 30000000}};
    if (timer_settime(periodic, 0, &its, NULL)) fail("timer_settime");
    while (alarms < 2 || rt_ticks < 2) pause();
    ready();
    wait_go();

    int a0 = alarms, r0 = rt_ticks;
    /* Generous: only that they still fire. */
    for (int i = 0; i < 500 && (alarms < a0 + 3 || rt_ticks < r0 + 3); i++) {
        struct timespec t = {0, 10 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    if (alarms < a0 + 3) fail("ITIMER_REAL fired %d times after the restore", alarms - a0);
    if (rt_ticks < r0 + 3) fail("the POSIX timer fired %d times after the restore", rt_ticks - r0);
    if (bad_value) fail("%d POSIX timer signals without SI_TIMER and the saved value", (int)bad_value);
    struct itimerval now;
    if (getitimer(ITIMER_REAL, &now) || now.it_interval.tv_sec != 0 || now.it_interval.tv_usec != 50000)
        fail("ITIMER_REAL period is %ld.%06ld", (long)now.it_interval.tv_sec, (long)now.it_interval.tv_usec);
    struct itimerspec cur;
    if (timer_gettime(periodic, &cur)) fail("timer_gettime on the saved id: %s", strerror(errno));
    if (cur.it_interval.tv_sec != 0 || cur.it_interval.tv_nsec != 30000000)
        fail("POSIX timer period is %ld.%09ld", (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
    if (timer_gettime(idle, &cur)) fail("timer_gettime on the idle timer: %s", strerror(errno));
    if (cur.it_value.tv_sec || cur.it_value.tv_nsec) fail("the disarmed timer is armed");
    if (timer_gettime(first, &cur) == 0) fail("the deleted timer exists again");
    pass();
}
