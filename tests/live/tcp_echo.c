/* A TCP and UDP echo server on loopback: argv[1] is "4" (127.0.0.1) or "6" (::1). It listens
 * on an ephemeral TCP port (SO_REUSEADDR, TCP_NODELAY and keepalive on accepted connections)
 * and has a UDP socket bound to another (and one connected to it), writes "tcp_port udp_port" to the file "ports", then
 * echoes every byte each connection sends and every datagram, forever, in one poll loop. A
 * connection that fails is reported in the file "events" with its errno name. With argv[2]
 * "fork", a child shares both sockets (one object in two processes of the tree) and exits when
 * its parent is gone. */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#define MAXC 16

static int bound(int family, int type, int *port) {
    int s = socket(family, type, 0);
    if (s < 0) fail("socket");
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    }
    if (bind(s, (struct sockaddr *)&ss, len)) fail("bind");
    len = sizeof ss;
    getsockname(s, (struct sockaddr *)&ss, &len);
    *port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                    : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return s;
}

int main(int argc, char **argv) {
    int family = (argc > 1 && argv[1][0] == '6') ? AF_INET6 : AF_INET;
    int tport, uport;
    int l = bound(family, SOCK_STREAM, &tport);
    if (listen(l, 8)) fail("listen");
    int u = bound(family, SOCK_DGRAM, &uport);
    /* A UDP socket connected to the echo socket (bound to an ephemeral port by connect). */
    int uc = socket(family, SOCK_DGRAM, 0);
    struct sockaddr_storage us;
    socklen_t uslen = sizeof us;
    getsockname(u, (struct sockaddr *)&us, &uslen);
    if (uc < 0 || connect(uc, (struct sockaddr *)&us, uslen)) fail("connect udp");
    if (argc > 2 && !strcmp(argv[2], "fork")) {
        pid_t parent = getpid();
        if (fork() == 0) {
            while (getppid() == parent) {
                struct timespec t = {0, 50 * 1000 * 1000};
                nanosleep(&t, NULL);
            }
            _exit(0);
        }
    }
    char text[64];
    snprintf(text, sizeof text, "%d %d\n", tport, uport);
    write_file("ports", text);
    struct pollfd p[MAXC + 2];
    int n = 2;
    p[0] = (struct pollfd){.fd = l, .events = POLLIN};
    p[1] = (struct pollfd){.fd = u, .events = POLLIN};
    char buf[65536];
    for (;;) {
        if (poll(p, n, -1) < 0) {
            if (errno == EINTR) continue;
            fail("poll");
        }
        if (p[0].revents & POLLIN) {
            int c = accept(l, NULL, NULL);
            if (c >= 0 && n < MAXC + 2) {
                int one = 1, idle = 600;
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                setsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
                setsockopt(c, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
                p[n++] = (struct pollfd){.fd = c, .events = POLLIN};
            } else if (c >= 0) {
                close(c);
            }
        }
        if (p[1].revents & POLLIN) {
            struct sockaddr_storage from;
            socklen_t flen = sizeof from;
            ssize_t got = recvfrom(u, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
            if (got >= 0) sendto(u, buf, got, 0, (struct sockaddr *)&from, flen);
        }
        for (int i = 2; i < n; i++) {
            if (!p[i].revents) continue;
            ssize_t got = read(p[i].fd, buf, sizeof buf);
            int gone = got <= 0;
            if (got < 0) {
                snprintf(text, sizeof text, "error %s\n", strerrorname_np(errno));
                write_file("events", text);
            }
            for (ssize_t off = 0; got > 0 && off < got;) {
                ssize_t w = write(p[i].fd, buf + off, got - off);
                if (w <= 0) {
                    gone = 1;
                    break;
                }
                off += w;
            }
            if (gone) {
                close(p[i].fd);
                p[i] = p[--n];
                i--;
            }
        }
    }
}
