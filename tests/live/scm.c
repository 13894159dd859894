/* Files and credentials in flight (SCM_RIGHTS, SCM_CREDENTIALS) in Unix socket queues, not
 * yet received when the program is captured:
 *   - on a stream socketpair whose receiving end has SO_PASSCRED: "A", then "P" with the read
 *     end of a pipe (the program keeps the write end; 6 bytes are already in the pipe), then
 *     "F" with data.txt opened at offset 4, then "tail";
 *   - on a datagram socket bound to a path (SO_PASSCRED): "E" with an eventfd whose counter is
 *     5, then "C" with explicit credentials (its pid, uid 4242, gid 4343).
 * After go it writes to the pipe through the write end it kept, then receives everything and
 * checks it: "A" alone comes without files, the pipe read end reads what was written before and after (the same pipe), the
 * file is at offset 4, the eventfd counts 5, the credentials are as sent. With the argument
 * "pair" only the socket pair is used (no socket name: a copy can run next to the original,
 * under another pid, and the credentials must then name the copy's pid). */
#include "common.h"
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>

static void send_with(int s, const char *data, int fd, const struct ucred *cred,
                      struct sockaddr_un *to, socklen_t tolen) {
    union {
        char buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct iovec iov = {.iov_base = (void *)data, .iov_len = strlen(data)};
    struct msghdr m = {.msg_name = to, .msg_namelen = tolen, .msg_iov = &iov, .msg_iovlen = 1,
                       .msg_control = u.buf, .msg_controllen = 0};
    size_t room = 0;
    if (fd >= 0) room += CMSG_SPACE(sizeof(int));
    if (cred) room += CMSG_SPACE(sizeof(struct ucred));
    if (room) m.msg_controllen = room;
    else m.msg_control = NULL;
    struct cmsghdr *c = room ? CMSG_FIRSTHDR(&m) : NULL;
    if (fd >= 0) {
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
        c = CMSG_NXTHDR(&m, c);
    }
    if (cred) {
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_CREDENTIALS;
        c->cmsg_len = CMSG_LEN(sizeof(struct ucred));
        memcpy(CMSG_DATA(c), cred, sizeof *cred);
    }
    if (sendmsg(s, &m, 0) != (ssize_t)strlen(data)) fail("sendmsg %s: %s", data, strerror(errno));
}

/* Receives one read's worth: its bytes (appended to out), the fds passed (appended to fds) and
 * its credentials, if any. */
static ssize_t receive(int s, char *out, size_t room, int *fds, int *nfds, struct ucred *cred,
                       int *has_cred) {
    union {
        char buf[CMSG_SPACE(4 * sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = out, .iov_len = room};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                       .msg_controllen = sizeof u.buf};
    ssize_t n = recvmsg(s, &m, MSG_DONTWAIT);
    if (n < 0) return n;
    if (m.msg_flags & MSG_CTRUNC) fail("control data truncated");
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_SOCKET) continue;
        if (c->cmsg_type == SCM_RIGHTS) {
            int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(fds + *nfds, CMSG_DATA(c), k * sizeof(int));
            *nfds += k;
        } else if (c->cmsg_type == SCM_CREDENTIALS) {
            memcpy(cred, CMSG_DATA(c), sizeof *cred);
            *has_cred = 1;
        }
    }
    return n;
}

int main(int argc, char **argv) {
    int pair_only = argc > 1 && !strcmp(argv[1], "pair");
    int one = 1;
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp)) fail("socketpair");
    if (setsockopt(sp[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one)) fail("SO_PASSCRED");

    char cwd[200];
    if (!getcwd(cwd, sizeof cwd)) fail("getcwd");
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s/scm.sock", cwd);
    socklen_t alen = sizeof a;
    int r = -1, s = -1;
    if (!pair_only) {
        r = socket(AF_UNIX, SOCK_DGRAM, 0);
        s = socket(AF_UNIX, SOCK_DGRAM, 0);
        if (r < 0 || s < 0 || bind(r, (struct sockaddr *)&a, alen)) fail("dgram sockets");
        if (setsockopt(r, SOL_SOCKET, SO_PASSCRED, &one, sizeof one)) fail("SO_PASSCRED");
    }

    int p[2];
    if (pipe(p)) fail("pipe");
    if (write(p[1], "before", 6) != 6) fail("write pipe");
    int file = open("data.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (file < 0 || write(file, "0123456789", 10) != 10 || lseek(file, 4, SEEK_SET) != 4)
        fail("data.txt");
    int ev = eventfd(5, 0);
    if (ev < 0) fail("eventfd");

    send_with(sp[0], "A", -1, NULL, NULL, 0);
    send_with(sp[0], "P", p[0], NULL, NULL, 0);
    send_with(sp[0], "F", file, NULL, NULL, 0);
    send_with(sp[0], "tail", -1, NULL, NULL, 0);
    struct ucred me = {.pid = getpid(), .uid = 4242, .gid = 4343};
    if (!pair_only) {
        send_with(s, "E", ev, NULL, &a, alen);
        send_with(s, "C", -1, &me, &a, alen);
    }
    close(p[0]);
    close(file);
    close(ev);

    ready();
    wait_go();

    if (write(p[1], "after", 5) != 5) fail("write pipe after");
    /* The stream: every byte, the two files, credentials on each read. */
    char got[64] = {0};
    size_t len = 0;
    int fds[8], nfds = 0;
    struct ucred cred;
    int has_cred = 0;
    while (len < 7) {
        /* One byte first: "A" was sent without files, so it comes without them. */
        size_t room = len == 0 ? 1 : sizeof got - 1 - len;
        ssize_t n = receive(sp[1], got + len, room, fds, &nfds, &cred, &has_cred);
        if (len == 0 && nfds != 0) fail("stream: files with the first byte");
        if (n <= 0) fail("stream: %zd after %zu bytes (%s)", n, len, strerror(errno));
        if (!has_cred || cred.pid != getpid()) fail("stream: no credentials of this process");
        len += n;
    }
    if (strcmp(got, "APFtail")) fail("stream bytes %s", got);
    if (nfds != 2) fail("stream: %d files", nfds);
    char buf[32] = {0};
    if (read(fds[0], buf, sizeof buf - 1) != 11 || strcmp(buf, "beforeafter"))
        fail("the pipe in flight reads %s", buf);
    if (lseek(fds[1], 0, SEEK_CUR) != 4) fail("file offset %ld", (long)lseek(fds[1], 0, SEEK_CUR));
    memset(buf, 0, sizeof buf);
    if (read(fds[1], buf, 3) != 3 || strcmp(buf, "456")) fail("file reads %s", buf);

    if (pair_only) pass();
    /* The datagrams. */
    nfds = 0;
    has_cred = 0;
    memset(buf, 0, sizeof buf);
    if (receive(r, buf, sizeof buf, fds, &nfds, &cred, &has_cred) != 1 || buf[0] != 'E')
        fail("datagram E");
    if (nfds != 1) fail("datagram E: %d files", nfds);
    uint64_t count = 0;
    if (read(fds[0], &count, 8) != 8 || count != 5) fail("eventfd counts %llu", (unsigned long long)count);
    nfds = 0;
    has_cred = 0;
    if (receive(r, buf, sizeof buf, fds, &nfds, &cred, &has_cred) != 1 || buf[0] != 'C')
        fail("datagram C");
    if (!has_cred) fail("datagram C: no credentials");
    if (cred.pid != getpid() || cred.uid != 4242 || cred.gid != 4343)
        fail("credentials %d %u %u", cred.pid, cred.uid, cred.gid);
    pass();
}
