/* Holds a socket of a family crak does not capture (netlink) at fd 3 (or the next free fd) and
 * waits. */
#include <stdio.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
    int s = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    if (s < 0) return 2;
    printf("READY %d\n", s);
    fflush(stdout);
    for (;;) pause();
}
