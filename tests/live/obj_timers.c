/* Timers across the checkpoint: ITIMER_REAL every 50 ms (SIGALRM), a POSIX timer on
 * CLOCK_MONOTONIC every 30 ms (SIGRTMIN with a value), a second POSIX timer that is disarmed,
 * created after a deleted one so that its id is not the first, and a third that signals a
 * second thread (SIGEV_THREAD_ID) every 40 ms. After the restore the periodic timers keep
 * firing, with the same periods (the thread-directed one at its thread only), the POSIX timers
 * keep their ids (timer_gettime works on the saved timer_t) and signal values, and the
 * disarmed one stays disarmed. */
#include "common.h"
#include <pthread.h>
#include <sys/time.h>

static volatile sig_atomic_t alarms, rt_ticks, bad_value, worker_ticks, wrong_thread;
static volatile pid_t worker_tid;
static pthread_t worker_th;

/* The worker is known by its pthread_t, which a restore under another pid keeps (its tid
 * changes). */
static void on_worker(int s) {
    (void)s;
    if (pthread_equal(pthread_self(), worker_th)) worker_ticks++;
    else wrong_thread++;
}

static void *worker(void *arg) {
    (void)arg;
    worker_tid = gettid();
    for (;;) pause();
    return NULL;
}

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

    struct sigaction wa = {0};
    wa.sa_handler = on_worker;
    wa.sa_flags = SA_RESTART;
    sigaction(SIGRTMIN + 1, &wa, NULL);
    /* Only the worker takes SIGRTMIN+1 (the main thread blocks it). */
    sigset_t w;
    sigemptyset(&w);
    sigaddset(&w, SIGRTMIN + 1);
    if (pthread_create(&worker_th, NULL, worker, NULL)) fail("pthread_create");
    pthread_sigmask(SIG_BLOCK, &w, NULL);
    while (!worker_tid) {
        struct timespec t = {0, 1000000};
        nanosleep(&t, NULL);
    }

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
    struct sigevent tev = {0};
    tev.sigev_notify = SIGEV_THREAD_ID;
    tev.sigev_signo = SIGRTMIN + 1;
    tev._sigev_un._tid = worker_tid;
    timer_t directed;
    if (timer_create(CLOCK_MONOTONIC, &tev, &directed)) fail("timer_create SIGEV_THREAD_ID");
    struct itimerspec dts = {{0, 40000000}, {0, 40000000}};
    if (timer_settime(directed, 0, &dts, NULL)) fail("timer_settime directed");
    while (alarms < 2 || rt_ticks < 2 || worker_ticks < 2) pause();
    ready();
    wait_go();

    int a0 = alarms, r0 = rt_ticks, w0 = worker_ticks;
    /* Generous: only that they still fire. */
    for (int i = 0; i < 500 && (alarms < a0 + 3 || rt_ticks < r0 + 3 || worker_ticks < w0 + 3); i++) {
        struct timespec t = {0, 10 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
    if (alarms < a0 + 3) fail("ITIMER_REAL fired %d times after the restore", alarms - a0);
    if (rt_ticks < r0 + 3) fail("the POSIX timer fired %d times after the restore", rt_ticks - r0);
    if (worker_ticks < w0 + 3) fail("the thread-directed timer fired %d times after the restore", worker_ticks - w0);
    if (wrong_thread) fail("the thread-directed timer signalled another thread %d times", (int)wrong_thread);
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
    if (timer_gettime(directed, &cur) || cur.it_interval.tv_nsec != 40000000)
        fail("the thread-directed timer lost its period");
    pass();
}
