/* Threads across the checkpoint: 8 workers each incrementing their own counter and a shared one
 * under a mutex (every counter goes on, the shared one stays the sum); a thread waiting on a
 * condition variable, signalled after restore; a thread in nanosleep (it sleeps only what was
 * left); a thread with its own alternate signal stack, blocked mask, rseq registration,
 * clear_child_tid, a name, a robust mutex it still holds when it exits (its robust futex list
 * must hand the mutex on with EOWNERDEAD) and a signal queued to it alone (pthread_sigqueue,
 * with its value). Every thread keeps its TID, and pthread_join (which waits on
 * clear_child_tid) works. */
#include "common.h"
#include <dirent.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>

#define WORKERS 8
#define SLEEP_S 3

static volatile unsigned long counters[WORKERS];
static unsigned long shared;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int released, cond_woke; /* under mu */
static volatile pid_t tids[WORKERS + 3];
static volatile int stop, tid_changed;

static void *worker(void *arg) {
    long i = (long)arg;
    tids[i] = gettid();
    while (!stop) {
        pthread_mutex_lock(&mu);
        shared++;
        counters[i]++;
        pthread_mutex_unlock(&mu);
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
        if (gettid() != tids[i]) tid_changed = 1;
    }
    return NULL;
}

static void *waiter(void *arg) {
    (void)arg;
    tids[WORKERS] = gettid();
    pthread_mutex_lock(&mu);
    while (!released) pthread_cond_wait(&cv, &mu);
    cond_woke = 1;
    pthread_mutex_unlock(&mu);
    return NULL;
}

static double slept;
static void *sleeper(void *arg) {
    (void)arg;
    tids[WORKERS + 1] = gettid();
    double t0 = now_mono();
    struct timespec ts = {SLEEP_S, 0};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
    slept = now_mono() - t0;
    return NULL;
}

static char altstack[65536];
static pthread_mutex_t robust;
static volatile int special_ready, special_go;
static char special_err[256];

static void *special(void *arg) {
    (void)arg;
    tids[WORKERS + 2] = gettid();
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    if (sigaltstack(&ss, NULL)) snprintf(special_err, sizeof special_err, "sigaltstack");
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &m, NULL);
    int *ctid_before = NULL;
    prctl(PR_GET_TID_ADDRESS, &ctid_before);
    long rseq_before = rseq_probe();
    pthread_setname_np(pthread_self(), "special-th");
    if (pthread_mutex_lock(&robust)) snprintf(special_err, sizeof special_err, "robust mutex lock");
    special_ready = 1;
    while (!special_go) {
        struct timespec t = {0, 1000 * 1000};
        nanosleep(&t, NULL);
    }
    stack_t now;
    sigaltstack(NULL, &now);
    char name[17] = {0};
    int *ctid_after = NULL;
    prctl(PR_GET_TID_ADDRESS, &ctid_after);
    sigset_t cur, pend;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    sigpending(&pend);
    if (now.ss_sp != altstack || now.ss_size != sizeof altstack)
        snprintf(special_err, sizeof special_err, "alternate stack %p+%zu", now.ss_sp, now.ss_size);
    else if (ctid_after != ctid_before)
        snprintf(special_err, sizeof special_err, "clear_child_tid %p, was %p", (void *)ctid_after, (void *)ctid_before);
    else if (rseq_probe() != rseq_before)
        snprintf(special_err, sizeof special_err, "rseq probe %ld, was %ld", rseq_probe(), rseq_before);
    else if (!sigismember(&cur, SIGHUP) || !sigismember(&cur, SIGUSR1) || sigismember(&cur, SIGTERM))
        snprintf(special_err, sizeof special_err, "blocked mask changed");
    else if (!sigismember(&pend, SIGUSR1))
        snprintf(special_err, sizeof special_err, "the SIGUSR1 queued to this thread is gone");
    else if (prctl(PR_GET_NAME, name) || strcmp(name, "special-th"))
        snprintf(special_err, sizeof special_err, "thread name '%s'", name);
    else if (gettid() != tids[WORKERS + 2])
        snprintf(special_err, sizeof special_err, "tid %d, was %d", gettid(), tids[WORKERS + 2]);
    else {
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, SIGUSR1);
        siginfo_t si;
        struct timespec zero = {0, 0};
        int s = sigtimedwait(&one, &si, &zero);
        if (s != SIGUSR1 || si.si_code != SI_QUEUE || si.si_value.sival_int != 77)
            snprintf(special_err, sizeof special_err, "sigtimedwait gave %d code %d value %d", s, si.si_code,
                     si.si_value.sival_int);
    }
    /* Ends holding the robust mutex: the kernel walks this thread's robust list. */
    return NULL;
}

static int task_count(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

int main(void) {
    /* SIGUSR1 stays blocked everywhere (it is queued to one thread); SIGUSR2, the harness's go,
     * is blocked in every thread but this one. */
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &m, NULL);
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&robust, &ma);
    pthread_t w[WORKERS], wt, st, sp;
    for (long i = 0; i < WORKERS; i++) pthread_create(&w[i], NULL, worker, (void *)i);
    pthread_create(&wt, NULL, waiter, NULL);
    pthread_create(&st, NULL, sleeper, NULL);
    pthread_create(&sp, NULL, special, NULL);
    while (!special_ready) usleep(1000);
    union sigval v = {.sival_int = 77};
    if (pthread_sigqueue(sp, SIGUSR1, v)) fail("pthread_sigqueue");
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    pthread_sigmask(SIG_UNBLOCK, &m, NULL);
    /* The sleeper is well into its sleep when the capture comes. */
    usleep(1000 * 1000);
    ready();
    wait_go();

    if (task_count() != WORKERS + 4) fail("%d threads, expected %d", task_count(), WORKERS + 4);
    unsigned long snap[WORKERS];
    for (int i = 0; i < WORKERS; i++) snap[i] = counters[i];
    usleep(300 * 1000);
    for (int i = 0; i < WORKERS; i++)
        if (counters[i] <= snap[i]) fail("worker %d stopped counting at %lu", i, counters[i]);

    pthread_mutex_lock(&mu);
    released = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    if (pthread_timedjoin_np(wt, NULL, &deadline)) fail("the condition-variable waiter did not finish");
    if (!cond_woke) fail("the waiter did not see the signal");

    if (pthread_timedjoin_np(st, NULL, &deadline)) fail("the sleeper did not finish");
    /* Slept from before the capture: SLEEP_S plus the time between capture and restore; a
     * sleep started over would take at least SLEEP_S + 1. */
    if (slept < SLEEP_S - 0.01 || slept > SLEEP_S + 0.9) fail("the thread's nanosleep(%d s) took %.3f s", SLEEP_S, slept);

    special_go = 1;
    if (pthread_timedjoin_np(sp, NULL, &deadline)) fail("the special thread did not finish");
    if (special_err[0]) fail("special thread: %s", special_err);
    int r = pthread_mutex_timedlock(&robust, &deadline);
    if (r != EOWNERDEAD) fail("locking the robust mutex its dead owner held gave %s, not EOWNERDEAD", strerror(r));

    sigset_t pend;
    sigpending(&pend);
    if (sigismember(&pend, SIGUSR1)) fail("SIGUSR1 became pending for the whole process");

    stop = 1;
    for (int i = 0; i < WORKERS; i++)
        if (pthread_timedjoin_np(w[i], NULL, &deadline)) fail("worker %d did not finish", i);
    unsigned long sum = 0;
    for (int i = 0; i < WORKERS; i++) sum += counters[i];
    if (sum != shared) fail("shared counter %lu, sum of the workers' %lu", shared, sum);
    if (tid_changed) fail("a worker's tid changed");
    pass();
}
