/* TCP sockets crak refuses to capture, on loopback: with argv[1] "pending", a listening socket
 * with a connection not yet accepted; with "close_wait", a connection whose peer closed (the
 * peer, in this process too, is then in FIN_WAIT2). Writes "ready" and sleeps. */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, len) || listen(l, 4)) fail("listen");
    getsockname(l, (struct sockaddr *)&a, &len);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&a, len)) fail("connect");
    if (argc > 1 && !strcmp(argv[1], "close_wait")) {
        int s = accept(l, NULL, NULL);
        if (s < 0) fail("accept");
        close(c);
    }
    write_file("ready", "ready\n");
    for (;;) pause();
}
