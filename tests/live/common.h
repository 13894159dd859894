/* Shared helpers of the live test programs (ZDTM style): a program sets up its state, calls
 * ready(), is captured, killed and restored, waits for go (SIGUSR2) with wait_go(), checks its
 * own state and reports with pass()/fail(), which write the file "result" in the current
 * directory and exit. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <stddef.h>

static volatile sig_atomic_t go;

static __attribute__((unused)) void on_go(int sig) { (void)sig; go = 1; }

static __attribute__((unused)) void write_file(const char *name, const char *text) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) _exit(3);
    if (write(fd, text, strlen(text)) < 0) _exit(3);
    close(fd);
    rename(tmp, name);
}

/* Installs the SIGUSR2 "go" handler (SA_RESTART) unless the program installed its own, and says
 * READY. */
static __attribute__((unused)) void ready(void) {
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_go;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, NULL, &old);
    if (old.sa_handler == SIG_DFL) sigaction(SIGUSR2, &sa, NULL);
    write_file("ready", "READY\n");
}

/* Waits for SIGUSR2, polling every 10 ms (pause() would lose a signal that arrives between the
 * check and the call). */
static __attribute__((unused)) void wait_go(void) {
    while (!go) {
        struct timespec t = {0, 10 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
}

static __attribute__((unused)) void pass(void) {
    write_file("result", "PASS\n");
    exit(0);
}

static __attribute__((unused)) void fail(const char *fmt, ...) {
    char buf[512] = "FAIL: ";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + 6, sizeof buf - 8, fmt, ap);
    va_end(ap);
    strcat(buf, "\n");
    write_file("result", buf);
    exit(1);
}

static __attribute__((unused)) uint64_t xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static __attribute__((unused)) double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* glibc's rseq registration (2.35+). */
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

/* rseq(area, 32, 0, RSEQ_SIG) on the calling thread's area: -EBUSY when this very area is
 * registered. */
static __attribute__((unused)) long rseq_probe(void) {
    if (!&__rseq_offset || !&__rseq_size || __rseq_size == 0) return 0;
    void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
    long r = syscall(SYS_rseq, area, 32, 0, 0x53053053);
    return r < 0 ? -errno : r;
}
