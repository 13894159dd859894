/* A Unix socket server with its clients in the tree, across the checkpoint.
 *
 * The parent listens on a path (stream, socket file mode 0640) and on an abstract name
 * (seqpacket), and has a datagram socket bound to a path. Children: c1 connected to the path
 * (accepted; bytes queued both ways) with a datagram socket bound to an abstract name that sent
 * two datagrams to the parent's; c2 connected to the abstract name (accepted; two messages
 * queued on the parent's end, one on c2's); c3 connected to the path but not yet accepted. The
 * parent also holds a connection to its own listener on another abstract name (its client end
 * shut down for writing), a datagram socket connected to its datagram socket's path, and a
 * datagram socket whose path was unlinked; two stream sockets whose peer closed (an accepted
 * connection and an unnamed pair) with bytes left to read.
 *
 * After the restore: every name (getsockname/getpeername), the socket file's mode, every
 * queue with its datagram senders, the shutdown, the unlinked path still unlinked; the parent accepts c3, then a new client forked after the
 * restore on each listener; each child checks what waits for it and answers. */
#include "common.h"
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

static volatile sig_atomic_t child_go;
static void on_usr1(int sig) { (void)sig; child_go = 1; }

static void child_wait(void) {
    signal(SIGUSR1, on_usr1);
    while (!child_go) {
        struct timespec t = {0, 5 * 1000 * 1000};
        nanosleep(&t, NULL);
    }
}

static socklen_t mkaddr(struct sockaddr_un *a, const char *name, int abstract) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(name);
    if (abstract) {
        memcpy(a->sun_path + 1, name, n);
        return offsetof(struct sockaddr_un, sun_path) + 1 + n;
    }
    memcpy(a->sun_path, name, n);
    return offsetof(struct sockaddr_un, sun_path) + n + 1;
}

static int listener(int type, const char *name, int abstract, int backlog) {
    struct sockaddr_un a;
    socklen_t len = mkaddr(&a, name, abstract);
    int s = socket(AF_UNIX, type, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&a, len) || listen(s, backlog)) fail("listen %s", name);
    return s;
}

static int dial(int type, const char *name, int abstract) {
    struct sockaddr_un a;
    socklen_t len = mkaddr(&a, name, abstract);
    int s = socket(AF_UNIX, type, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, len)) return -1;
    return s;
}

/* The address of `s` (own or peer) is `name` (NULL: unnamed). */
static int addr_is(int s, int peer, const char *name, int abstract) {
    struct sockaddr_un a, want;
    socklen_t len = sizeof a;
    if ((peer ? getpeername : getsockname)(s, (struct sockaddr *)&a, &len)) return 0;
    if (!name) return len == sizeof(sa_family_t);
    socklen_t wlen = mkaddr(&want, name, abstract);
    return len == wlen && !memcmp(&a, &want, len);
}

static void expect(int fd, const char *want, const char *what) {
    char buf[128];
    size_t n = strlen(want);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1) fail("%s: nothing to read", what);
    ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (got != (ssize_t)n || memcmp(buf, want, n)) fail("%s: got %zd bytes", what, got);
}

static int child_expect(int fd, const char *want) {
    char buf[128];
    size_t n = strlen(want);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1) return 0;
    ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    return got == (ssize_t)n && !memcmp(buf, want, n);
}

static void dgram_from(int fd, const char *want, const char *from, int abstract, const char *what) {
    char buf[128];
    struct sockaddr_un a, w;
    socklen_t len = sizeof a;
    ssize_t got = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&a, &len);
    if (got != (ssize_t)strlen(want) || memcmp(buf, want, got)) fail("%s: got %zd bytes", what, got);
    if (!from) {
        /* recvfrom gives no address at all for an unnamed sender. */
        if (len != 0) fail("%s: from a name (%u bytes)", what, len);
        return;
    }
    socklen_t wlen = mkaddr(&w, from, abstract);
    if (len != wlen || memcmp(&a, &w, len)) fail("%s: from another sender", what);
}

static void sync_byte(int w) {
    if (write(w, "x", 1) != 1) _exit(90);
    close(w);
}

static void await_byte(int r) {
    char c;
    if (read(r, &c, 1) != 1) fail("a child did not get ready");
}

int main(void) {
    char cwd[200], path[256], dpath[256], abs_seq[64], abs_self[64], abs_dg[64];
    if (!getcwd(cwd, sizeof cwd)) fail("getcwd");
    snprintf(path, sizeof path, "%s/srv.sock", cwd);
    snprintf(dpath, sizeof dpath, "%s/dg.sock", cwd);
    snprintf(abs_seq, sizeof abs_seq, "crak-unx-seq-%d", getpid());
    snprintf(abs_self, sizeof abs_self, "crak-unx-self-%d", getpid());
    snprintf(abs_dg, sizeof abs_dg, "crak-unx-dg-%d", getpid());

    int l1 = listener(SOCK_STREAM, path, 0, 8);
    if (chmod(path, 0640)) fail("chmod");
    int l2 = listener(SOCK_SEQPACKET, abs_seq, 1, 4);
    struct sockaddr_un da;
    socklen_t dlen = mkaddr(&da, dpath, 0);
    int d1 = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (d1 < 0 || bind(d1, (struct sockaddr *)&da, dlen)) fail("bind dgram");

    int sy[2];
    /* c1: stream client of the path, and a named datagram sender. */
    if (pipe(sy)) fail("pipe");
    pid_t c1 = fork();
    if (c1 == 0) {
        close(sy[0]);
        int s = dial(SOCK_STREAM, path, 0);
        if (s < 0) _exit(11);
        if (send(s, "c1-hello", 8, 0) != 8) _exit(12);
        struct sockaddr_un ga;
        socklen_t glen = mkaddr(&ga, abs_dg, 1);
        int g = socket(AF_UNIX, SOCK_DGRAM, 0);
        if (g < 0 || bind(g, (struct sockaddr *)&ga, glen)) _exit(13);
        if (sendto(g, "dgram-1", 7, 0, (struct sockaddr *)&da, dlen) != 7) _exit(14);
        if (sendto(g, "dgram-22", 8, 0, (struct sockaddr *)&da, dlen) != 8) _exit(15);
        sync_byte(sy[1]);
        child_wait();
        if (!child_expect(s, "srv-to-c1")) _exit(16);
        if (!addr_is(s, 1, path, 0) || !addr_is(s, 0, NULL, 0)) _exit(17);
        if (!addr_is(g, 0, abs_dg, 1)) _exit(18);
        if (send(s, "bye1", 4, 0) != 4) _exit(19);
        _exit(0);
    }
    close(sy[1]);
    await_byte(sy[0]);
    close(sy[0]);
    int a1 = accept(l1, NULL, NULL);
    if (a1 < 0 || send(a1, "srv-to-c1", 9, 0) != 9) fail("accept c1");

    /* c2: seqpacket client of the abstract name. */
    if (pipe(sy)) fail("pipe");
    pid_t c2 = fork();
    if (c2 == 0) {
        close(sy[0]);
        int s = dial(SOCK_SEQPACKET, abs_seq, 1);
        if (s < 0) _exit(21);
        if (send(s, "m1", 2, 0) != 2 || send(s, "m-two", 5, 0) != 5) _exit(22);
        sync_byte(sy[1]);
        child_wait();
        if (!child_expect(s, "p1")) _exit(23);
        if (!addr_is(s, 1, abs_seq, 1)) _exit(24);
        if (send(s, "bye2", 4, 0) != 4) _exit(25);
        _exit(0);
    }
    close(sy[1]);
    await_byte(sy[0]);
    close(sy[0]);
    int a2 = accept(l2, NULL, NULL);
    if (a2 < 0 || send(a2, "p1", 2, 0) != 2) fail("accept c2");

    /* c5: connected to the path, accepted, sends its last words and exits (reaped): the
     * accepted end's peer has closed. Likewise an unnamed pair whose other end was closed. */
    pid_t c5 = fork();
    if (c5 == 0) {
        int s = dial(SOCK_STREAM, path, 0);
        if (s < 0 || send(s, "last", 4, 0) != 4) _exit(51);
        _exit(0);
    }
    int a6 = accept(l1, NULL, NULL);
    int ws5;
    if (a6 < 0 || waitpid(c5, &ws5, 0) != c5 || ws5 != 0) fail("c5");
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || send(sp[1], "bye", 3, 0) != 3) fail("pair");
    close(sp[1]);

    /* c3: connected to the path, not accepted before the capture. */
    if (pipe(sy)) fail("pipe");
    pid_t c3 = fork();
    if (c3 == 0) {
        close(sy[0]);
        int s = dial(SOCK_STREAM, path, 0);
        if (s < 0) _exit(31);
        sync_byte(sy[1]);
        child_wait();
        if (!child_expect(s, "welcome-3")) _exit(32);
        if (!addr_is(s, 1, path, 0)) _exit(33);
        _exit(0);
    }
    close(sy[1]);
    await_byte(sy[0]);
    close(sy[0]);

    /* The parent alone: a connection to its own listener, and a datagram socket connected to
     * the datagram path. */
    int l3 = listener(SOCK_STREAM, abs_self, 1, 2);
    int x = dial(SOCK_STREAM, abs_self, 1);
    int y = accept(l3, NULL, NULL);
    if (x < 0 || y < 0) fail("self connection");
    if (send(x, "to-y", 4, 0) != 4 || send(y, "to-x", 4, 0) != 4) fail("self send");
    int d3 = dial(SOCK_DGRAM, dpath, 0);
    if (d3 < 0 || send(d3, "from-d3", 7, 0) != 7) fail("connected datagram");
    /* x is done writing; a datagram socket's path is unlinked while it stays bound. */
    if (shutdown(x, SHUT_WR)) fail("shutdown");
    char gone[256];
    snprintf(gone, sizeof gone, "%s/gone.sock", cwd);
    struct sockaddr_un ga;
    socklen_t glen = mkaddr(&ga, gone, 0);
    int d4 = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (d4 < 0 || bind(d4, (struct sockaddr *)&ga, glen) || unlink(gone)) fail("unlinked name");
    /* SO_PASSCRED on a socket with nothing queued: it must still be set after the restore, so
     * that a datagram sent then comes with its sender's credentials. d4 never had it. */
    char abs_pc[64];
    snprintf(abs_pc, sizeof abs_pc, "crak-unx-passcred-%d", getpid());
    struct sockaddr_un pa;
    socklen_t plen = mkaddr(&pa, abs_pc, 1);
    int pc = socket(AF_UNIX, SOCK_DGRAM, 0), one = 1;
    if (pc < 0 || bind(pc, (struct sockaddr *)&pa, plen) ||
        setsockopt(pc, SOL_SOCKET, SO_PASSCRED, &one, sizeof one))
        fail("SO_PASSCRED socket");

    ready();
    wait_go();

    int v = 0;
    socklen_t vl = sizeof v;
    if (getsockopt(pc, SOL_SOCKET, SO_PASSCRED, &v, &vl) || v != 1) fail("SO_PASSCRED was lost");
    if (getsockopt(d4, SOL_SOCKET, SO_PASSCRED, &v, &vl) || v != 0) fail("SO_PASSCRED on d4");
    int snd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (snd < 0 || sendto(snd, "c", 1, 0, (struct sockaddr *)&pa, plen) != 1)
        fail("send to the SO_PASSCRED socket");
    char cb[CMSG_SPACE(sizeof(struct ucred))], b1[1];
    struct iovec iov = {b1, 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb,
                        .msg_controllen = sizeof cb};
    if (recvmsg(pc, &mh, 0) != 1) fail("recvmsg on the SO_PASSCRED socket");
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    struct ucred uc;
    if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_CREDENTIALS)
        fail("no credentials with a datagram sent after the restore");
    memcpy(&uc, CMSG_DATA(cm), sizeof uc);
    if (uc.pid != getpid()) fail("the credentials name pid %d", (int)uc.pid);
    close(snd);

    /* Names and the socket file. */
    struct stat st;
    if (stat(path, &st) || !S_ISSOCK(st.st_mode) || (st.st_mode & 0777) != 0640)
        fail("socket file of %s: mode %o", path, st.st_mode);
    if (!addr_is(l1, 0, path, 0)) fail("name of the path listener");
    if (!addr_is(l2, 0, abs_seq, 1)) fail("name of the abstract listener");
    if (!addr_is(a1, 0, path, 0) || !addr_is(a1, 1, NULL, 0)) fail("names of the accepted c1");
    if (!addr_is(a2, 0, abs_seq, 1)) fail("name of the accepted c2");
    if (!addr_is(d1, 0, dpath, 0)) fail("name of the datagram socket");
    if (!addr_is(d3, 1, dpath, 0)) fail("peer of the connected datagram socket");
    if (!addr_is(y, 0, abs_self, 1) || !addr_is(x, 1, abs_self, 1)) fail("names of the self pair");
    int type = 0;
    socklen_t tl = sizeof type;
    if (getsockopt(l2, SOL_SOCKET, SO_TYPE, &type, &tl) || type != SOCK_SEQPACKET) fail("type");
    int acc = 0;
    tl = sizeof acc;
    if (getsockopt(l1, SOL_SOCKET, SO_ACCEPTCONN, &acc, &tl) || !acc) fail("not listening");

    /* Queues. */
    char buf0[8];
    expect(a1, "c1-hello", "c1's bytes");
    expect(a2, "m1", "c2's first message");
    expect(a2, "m-two", "c2's second message");
    expect(y, "to-y", "self pair, one way");
    expect(x, "to-x", "self pair, other way");
    if (recv(y, buf0, sizeof buf0, MSG_DONTWAIT) != 0) fail("no end of file after x's shutdown");
    if (send(x, "z", 1, MSG_NOSIGNAL) != -1 || errno != EPIPE) fail("x writes after its shutdown");
    if (!addr_is(d4, 0, gone, 0)) fail("name of the socket whose path was unlinked");
    if (access(gone, F_OK) == 0 || errno != ENOENT) fail("the unlinked path is back");
    dgram_from(d1, "dgram-1", abs_dg, 1, "first datagram");
    dgram_from(d1, "dgram-22", abs_dg, 1, "second datagram");
    dgram_from(d1, "from-d3", NULL, 0, "connected datagram");
    char buf[16];
    if (recv(d1, buf, sizeof buf, MSG_DONTWAIT) != -1) fail("a fourth datagram");

    /* Sockets whose peer closed: the queue, then end of file. */
    expect(a6, "last", "c5's last words");
    if (recv(a6, buf0, sizeof buf0, MSG_DONTWAIT) != 0) fail("no end of file from c5");
    if (!addr_is(a6, 0, path, 0)) fail("name of the accepted c5");
    expect(sp[0], "bye", "the closed pair's bytes");
    if (recv(sp[0], buf0, sizeof buf0, MSG_DONTWAIT) != 0) fail("no end of file on the pair");

    /* The pending connection, then new clients. */
    int a3 = accept4(l1, NULL, NULL, SOCK_NONBLOCK);
    if (a3 < 0) fail("c3's pending connection: %s", strerror(errno));
    if (send(a3, "welcome-3", 9, 0) != 9) fail("send to c3");
    pid_t c4 = fork();
    if (c4 == 0) {
        int s = dial(SOCK_STREAM, path, 0);
        int q = dial(SOCK_SEQPACKET, abs_seq, 1);
        if (s < 0 || q < 0) _exit(41);
        if (send(s, "new", 3, 0) != 3 || send(q, "new-seq", 7, 0) != 7) _exit(42);
        _exit(0);
    }
    int a4 = accept(l1, NULL, NULL);
    if (a4 < 0) fail("accepting a new client");
    expect(a4, "new", "the new client");
    int a5 = accept(l2, NULL, NULL);
    if (a5 < 0) fail("accepting a new seqpacket client");
    expect(a5, "new-seq", "the new seqpacket client");

    kill(c1, SIGUSR1);
    kill(c2, SIGUSR1);
    kill(c3, SIGUSR1);
    expect(a1, "bye1", "c1's answer");
    expect(a2, "bye2", "c2's answer");
    pid_t kids[] = {c1, c2, c3, c4};
    for (int i = 0; i < 4; i++) {
        int ws;
        if (waitpid(kids[i], &ws, 0) != kids[i] || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
            fail("child %d status %#x", i + 1, ws);
    }
    pass();
}
