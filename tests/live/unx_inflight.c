/* A datagram socket bound to an abstract name with an epoll instance in flight in its queue
 * (SCM_RIGHTS, not yet received; an epoll instance's registrations name fds of a process, so
 * it cannot travel): crak refuses to capture it, naming the socket and what is in flight, and
 * the program goes on untouched: after SIGUSR2 it receives the descriptor and the message. */
#include "common.h"
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>

int main(void) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    int n = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "crak-unx-inflight-%d", getpid());
    socklen_t len = offsetof(struct sockaddr_un, sun_path) + 1 + n;
    int r = socket(AF_UNIX, SOCK_DGRAM, 0), s = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (r < 0 || s < 0 || bind(r, (struct sockaddr *)&a, len)) fail("socket");
    int passed = epoll_create1(0);
    char data[] = "with-fd";
    struct iovec iov = {.iov_base = data, .iov_len = 7};
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr m = {.msg_name = &a, .msg_namelen = len, .msg_iov = &iov, .msg_iovlen = 1,
                       .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &passed, sizeof(int));
    if (sendmsg(s, &m, 0) != 7) fail("sendmsg");
    close(passed);
    ready();
    wait_go();
    char buf[16];
    struct msghdr in = {.msg_iov = &(struct iovec){.iov_base = buf, .iov_len = sizeof buf},
                        .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    if (recvmsg(r, &in, MSG_DONTWAIT) != 7 || memcmp(buf, data, 7)) fail("the message");
    c = CMSG_FIRSTHDR(&in);
    if (!c || c->cmsg_type != SCM_RIGHTS) fail("no descriptor with the message");
    int got;
    memcpy(&got, CMSG_DATA(c), sizeof got);
    struct epoll_event ev[1];
    if (epoll_wait(got, ev, 1, 0) != 0) fail("the descriptor is not an empty epoll instance");
    pass();
}
