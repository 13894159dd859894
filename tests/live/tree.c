/* A process tree across the checkpoint: a parent and three children in a pipeline over pipes
 * (parent -> c1 -> c2 -> c3), passing numbered records that every stage checks (nothing lost,
 * duplicated or reordered, whatever was in the pipes at the capture); c3 counts them in an
 * anonymous MAP_SHARED page it shares with the parent; c1 leads a process group that c2 joined,
 * c3 leads its own session. After go, the parent stops producing; the end of file runs down the
 * pipeline, every child exits, and the parent reaps each with waitpid, checks their groups,
 * sessions and exit statuses, and that the shared count equals what it produced. A log file
 * opened once before the forks (no O_APPEND) is written by the parent through two fds and by c3:
 * one shared offset, so no write lands over another. A fourth child exits with status 7 before
 * the capture and stays a zombie until the parent reaps it after the restore. */
#include "common.h"
#include <sys/wait.h>

struct shared {
    volatile uint64_t received; /* records c3 got */
    volatile int bad;           /* stage that saw a wrong record, 0 if none */
    volatile uint64_t bad_got, bad_want;
};

static struct shared *sh;
static int lg = -1;

/* Copies records from `in` to `out` (or counts them when out < 0), checking the sequence. */
static void stage(int id, int in, int out) {
    uint64_t want = 0, x;
    for (;;) {
        ssize_t n = read(in, &x, sizeof x);
        if (n == 0) break;
        if (n < 0 && errno == EINTR) continue;
        if (n != sizeof x) { sh->bad = 100 + id; _exit(3); }
        if (x != want) {
            if (!sh->bad) { sh->bad_got = x; sh->bad_want = want; sh->bad = id; }
            _exit(2);
        }
        want++;
        if (out >= 0) {
            while (write(out, &x, sizeof x) != sizeof x)
                if (errno != EINTR) _exit(4);
        } else {
            sh->received = want;
        }
    }
    if (id == 3 && write(lg, "C", 1) != 1) _exit(5);
    _exit(0);
}

int main(void) {
    sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) fail("mmap");
    lg = open("shared.log", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (lg < 0 || write(lg, "P", 1) != 1) fail("shared.log");
    int lg2 = dup(lg);
    int a[2], b[2], c[2];
    if (pipe(a) || pipe(b) || pipe(c)) fail("pipe");
    pid_t c1 = fork();
    if (c1 == 0) {
        setpgid(0, 0);
        close(a[1]); close(b[0]); close(c[0]); close(c[1]);
        stage(1, a[0], b[1]);
    }
    setpgid(c1, c1);
    pid_t c2 = fork();
    if (c2 == 0) {
        setpgid(0, c1);
        close(a[0]); close(a[1]); close(b[1]); close(c[0]);
        stage(2, b[0], c[1]);
    }
    setpgid(c2, c1);
    pid_t c3 = fork();
    if (c3 == 0) {
        setsid();
        close(a[0]); close(a[1]); close(b[0]); close(b[1]); close(c[1]);
        stage(3, c[0], -1);
    }
    close(a[0]); close(b[0]); close(b[1]); close(c[0]); close(c[1]);
    pid_t z = fork();
    if (z == 0) _exit(7);
    /* Small pipes, so that data sits in every one of them at the capture. */
    fcntl(a[1], F_SETPIPE_SZ, 4096);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_go;
    sigaction(SIGUSR2, &sa, NULL);
    uint64_t next = 0;
    int said_ready = 0;
    while (!go) {
        for (int i = 0; i < 64 && !go; i++, next++) {
            while (write(a[1], &next, sizeof next) != sizeof next) {
                if (errno != EINTR) fail("write: %s", strerror(errno));
                if (go) break;
            }
        }
        if (!said_ready && next > 20000) {
            ready();
            said_ready = 1;
        }
        struct timespec t = {0, 200 * 1000};
        nanosleep(&t, NULL);
    }
    /* A write interrupted by go may have been cut short: the record was then not sent. */
    if (getpgid(c1) != c1) fail("c1 is in group %d, not its own", getpgid(c1));
    if (getpgid(c2) != c1) fail("c2 is in group %d, not c1's %d", getpgid(c2), c1);
    if (getsid(c3) != c3) fail("c3 is in session %d, not its own", getsid(c3));
    if (write(lg2, "D", 1) != 1) fail("write through the dup");
    int zst;
    if (waitpid(z, &zst, WNOHANG) != z) fail("the zombie %d is not there to reap", z);
    if (!WIFEXITED(zst) || WEXITSTATUS(zst) != 7) fail("the zombie's status is %#x, not exit 7", zst);
    close(a[1]);
    pid_t kids[3] = {c1, c2, c3};
    for (int i = 0; i < 3; i++) {
        int st;
        if (waitpid(kids[i], &st, 0) != kids[i]) fail("waitpid(c%d): %s", i + 1, strerror(errno));
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail("c%d ended with status %#x (bad stage %d: got %llu, want %llu)", i + 1, st, sh->bad,
                 (unsigned long long)sh->bad_got, (unsigned long long)sh->bad_want);
    }
    if (sh->received != next && sh->received + 1 != next)
        fail("produced %llu records, c3 received %llu", (unsigned long long)next,
             (unsigned long long)sh->received);
    if (sh->received < 40000) fail("only %llu records went through", (unsigned long long)sh->received);
    if (write(lg, "Q", 1) != 1) fail("write shared.log");
    struct stat st;
    if (fstat(lg, &st) || st.st_size != 4)
        fail("shared.log holds %lld bytes, not 4: its offset is not shared", (long long)st.st_size);
    pass();
}
