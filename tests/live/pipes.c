/* Pipes: read() blocked on an empty pipe whose writer is this process's SIGUSR2 handler, and a
 * second pipe of 256 KiB capacity with 60 KiB unread and O_NONBLOCK on its ends. */
#include "common.h"

static int p[2];

static void on_usr2(int sig) {
    (void)sig;
    go = 1;
    if (write(p[1], "hello", 5) != 5) _exit(4);
}

int main(void) {
    int q[2];
    if (pipe(p) || pipe2(q, O_NONBLOCK)) fail("pipe");
    if (fcntl(q[0], F_SETPIPE_SZ, 256 * 1024) < 0) fail("F_SETPIPE_SZ");
    static unsigned char data[60 * 1024];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (unsigned char)(i * 7 + i / 256);
    if (write(q[1], data, sizeof data) != (ssize_t)sizeof data) fail("fill");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &sa, NULL);
    ready();
    char buf[16];
    ssize_t n = read(p[0], buf, sizeof buf);
    if (n != 5 || memcmp(buf, "hello", 5)) fail("read returned %zd (%s)", n, n < 0 ? strerror(errno) : "");
    static unsigned char got[64 * 1024];
    n = read(q[0], got, sizeof got);
    if (n != (ssize_t)sizeof data) fail("buffered pipe gave %zd bytes", n);
    if (memcmp(got, data, sizeof data)) fail("buffered pipe data differs");
    n = read(q[0], got, 1);
    if (n != -1 || errno != EAGAIN) fail("buffered pipe: expected EAGAIN, got %zd", n);
    if (!(fcntl(q[0], F_GETFL) & O_NONBLOCK)) fail("O_NONBLOCK lost");
    if (fcntl(p[0], F_GETFL) & O_NONBLOCK) fail("O_NONBLOCK appeared");
    if (fcntl(q[0], F_GETPIPE_SZ) != 256 * 1024) fail("pipe capacity %d", fcntl(q[0], F_GETPIPE_SZ));
    pass();
}
