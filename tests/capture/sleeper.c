/* A process for capture tests. Sets up state, prints
 * "READY <pattern> <zeros> <pipe-rfd> <pipe-wfd> <file-fd> <guard> <private-file-map> <shared-anon>
 *  <deleted-fd> <null-fd> <fifo-fd>",
 * then sleeps in nanosleep() rounds of 300 ms, checking each call's result and duration.
 * When argv[1] exists it checks its state (memory pattern, pipe contents, file offset) and
 * prints PASS or FAIL <reason>. A capture with --leave-running must be invisible to it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PATTERN_BYTES (8u << 20)
#define ZERO_BYTES (2u << 20)
#define PIPE_BYTES 10000

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned char pat(size_t i) { return (unsigned char)(i * 7 + (i >> 12)); }

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *stop = argv[1];
    unsigned char *p = mmap(NULL, PATTERN_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *z = mmap(NULL, ZERO_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || z == MAP_FAILED) return 2;
    for (size_t i = 0; i < PATTERN_BYTES; i++) p[i] = pat(i);
    /* Touch the zero region so its pages are present but all zero. */
    for (size_t i = 0; i < ZERO_BYTES; i += 4096) { z[i] = 1; z[i] = 0; }
    int fds[2];
    if (pipe(fds)) return 2;
    unsigned char pbuf[PIPE_BYTES];
    for (int i = 0; i < PIPE_BYTES; i++) pbuf[i] = (unsigned char)(i * 13);
    if (write(fds[1], pbuf, PIPE_BYTES) != PIPE_BYTES) return 2;
    int f = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (f < 0 || write(f, "0123456789", 10) != 10 || lseek(f, 3, SEEK_SET) != 3) return 2;
    /* A PROT_NONE page holding data (readable only through /proc/PID/mem). */
    unsigned char *g = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g == MAP_FAILED) return 2;
    memset(g, 0x5a, 4096);
    if (mprotect(g, 4096, PROT_NONE)) return 2;
    /* A private mapping of the data file (4 pages) with one page written (a private copy). */
    if (ftruncate(f, 4 * 4096) || lseek(f, 3, SEEK_SET) != 3) return 2;
    unsigned char *fm = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, f, 0);
    if (fm == MAP_FAILED) return 2;
    volatile unsigned char sink = fm[0] + fm[2 * 4096]; (void)sink; /* file pages, present */
    memset(fm + 4096, 0x77, 4096);
    /* Shared anonymous memory with data. */
    unsigned char *sh = mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) return 2;
    memset(sh, 0x33, 2 * 4096);
    /* A deleted file, still open. */
    char dpath[4096];
    snprintf(dpath, sizeof dpath, "%s.deleted", argv[2]);
    int d = open(dpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (d < 0 || write(d, "gone but open", 13) != 13 || unlink(dpath)) return 2;
    int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
    /* A FIFO opened read-write (does not block), with 5 bytes in it. */
    char fpath[4096];
    snprintf(fpath, sizeof fpath, "%s.fifo", argv[2]);
    if (mkfifo(fpath, 0600)) return 2;
    int ff = open(fpath, O_RDWR);
    if (nul < 0 || ff < 0 || write(ff, "fifo!", 5) != 5) return 2;
    printf("READY %lx %lx %d %d %d %lx %lx %lx %d %d %d\n", (unsigned long)p, (unsigned long)z, fds[0],
           fds[1], f, (unsigned long)g, (unsigned long)fm, (unsigned long)sh, d, nul, ff);
    fflush(stdout);
    for (;;) {
        struct timespec req = {0, 300 * 1000 * 1000}, rem = {0, 0};
        uint64_t t0 = now_ns();
        int r = nanosleep(&req, &rem);
        uint64_t dt = now_ns() - t0;
        if (r != 0) { printf("FAIL nanosleep returned %d errno %d\n", r, errno); return 1; }
        if (dt < 299u * 1000 * 1000) { printf("FAIL nanosleep slept only %llu ns\n", (unsigned long long)dt); return 1; }
        if (access(stop, F_OK) == 0) break;
    }
    for (size_t i = 0; i < PATTERN_BYTES; i++)
        if (p[i] != pat(i)) { printf("FAIL memory at %zu\n", i); return 1; }
    for (size_t i = 0; i < ZERO_BYTES; i++)
        if (z[i]) { printf("FAIL zero memory at %zu\n", i); return 1; }
    unsigned char got[PIPE_BYTES + 1];
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    ssize_t n = read(fds[0], got, sizeof got);
    if (n != PIPE_BYTES || memcmp(got, pbuf, PIPE_BYTES)) { printf("FAIL pipe read %zd\n", n); return 1; }
    if (lseek(f, 0, SEEK_CUR) != 3) { printf("FAIL file offset\n"); return 1; }
    if (mprotect(g, 4096, PROT_READ)) { printf("FAIL mprotect\n"); return 1; }
    for (int i = 0; i < 4096; i++)
        if (g[i] != 0x5a) { printf("FAIL guard page\n"); return 1; }
    for (int i = 0; i < 4096; i++)
        if (fm[4096 + i] != 0x77 || sh[i] != 0x33) { printf("FAIL mappings\n"); return 1; }
    char fb[8];
    if (read(ff, fb, 5) != 5 || memcmp(fb, "fifo!", 5)) { printf("FAIL fifo\n"); return 1; }
    printf("PASS\n");
    return 0;
}
