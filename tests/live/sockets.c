/* Unix socket pairs across the checkpoint: a stream pair with bytes queued in both directions,
 * a datagram pair with three datagrams queued (boundaries kept), and a seqpacket pair shared
 * with a child (the parent's five messages wait in the child's end until after the restore,
 * and the child answers through it). */
#include "common.h"
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

static volatile sig_atomic_t child_go;
static void on_usr1(int sig) { (void)sig; child_go = 1; }

static void expect(int fd, const char *want, size_t n, const char *what) {
    char buf[64];
    ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (got != (ssize_t)n || memcmp(buf, want, n)) fail("%s: got %zd bytes", what, got);
}

int main(void) {
    int s[2], d[2], q[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) || socketpair(AF_UNIX, SOCK_DGRAM, 0, d) ||
        socketpair(AF_UNIX, SOCK_SEQPACKET, 0, q))
        fail("socketpair");
    pid_t c = fork();
    if (c == 0) {
        close(q[0]);
        signal(SIGUSR1, on_usr1);
        while (!child_go) {
            struct timespec t = {0, 5 * 1000 * 1000};
            nanosleep(&t, NULL);
        }
        for (int i = 0; i < 5; i++) {
            char want[16], buf[64];
            snprintf(want, sizeof want, "msg-%d", i);
            ssize_t n = recv(q[1], buf, sizeof buf, MSG_DONTWAIT);
            if (n != (ssize_t)strlen(want) || memcmp(buf, want, n)) _exit(10 + i);
        }
        if (send(q[1], "ok", 2, 0) != 2) _exit(20);
        _exit(0);
    }
    close(q[1]);
    if (write(s[0], "hello-stream", 12) != 12 || write(s[1], "back", 4) != 4) fail("write stream");
    if (send(d[0], "a", 1, 0) != 1 || send(d[0], "bb", 2, 0) != 2 || send(d[0], "ccc", 3, 0) != 3)
        fail("send dgram");
    for (int i = 0; i < 5; i++) {
        char m[16];
        snprintf(m, sizeof m, "msg-%d", i);
        if (send(q[0], m, strlen(m), 0) != (ssize_t)strlen(m)) fail("send seqpacket");
    }
    ready();
    wait_go();
    expect(s[1], "hello-stream", 12, "stream, one way");
    expect(s[0], "back", 4, "stream, the other way");
    expect(d[1], "a", 1, "datagram 1");
    expect(d[1], "bb", 2, "datagram 2");
    expect(d[1], "ccc", 3, "datagram 3");
    char buf[8];
    if (recv(d[1], buf, sizeof buf, MSG_DONTWAIT) != -1) fail("a fourth datagram");
    kill(c, SIGUSR1);
    struct pollfd p = {.fd = q[0], .events = POLLIN};
    if (poll(&p, 1, 10000) != 1) fail("no answer from the child");
    expect(q[0], "ok", 2, "the child's answer");
    int st;
    if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("child status %#x", st);
    pass();
}
