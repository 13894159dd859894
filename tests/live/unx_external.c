/* A stream socket connected to a listener outside the captured tree (ext.sock in the current
 * directory, made by the test). After a restore with --external-unix it is connected to that
 * listener again: its peer's name is the same, and it talks to the new connection. */
#include "common.h"
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

int main(void) {
    char cwd[90];
    struct sockaddr_un a;
    if (!getcwd(cwd, sizeof cwd)) fail("getcwd");
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s/ext.sock", cwd);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a)) fail("connect");
    if (send(s, "hello", 5, 0) != 5) fail("send");
    ready();
    wait_go();
    struct sockaddr_un p;
    socklen_t len = sizeof p;
    if (getpeername(s, (struct sockaddr *)&p, &len) || strcmp(p.sun_path, a.sun_path))
        fail("peer name after the restore");
    if (send(s, "again", 5, MSG_NOSIGNAL) != 5) fail("send after the restore: %s", strerror(errno));
    struct pollfd pf = {.fd = s, .events = POLLIN};
    char buf[8];
    if (poll(&pf, 1, 20000) != 1 || recv(s, buf, sizeof buf, 0) != 2 || memcmp(buf, "ok", 2))
        fail("no answer from the listener");
    pass();
}
