/* Holds a socket crak cannot capture (a netlink one) at fd 3 (or the next free fd) and waits. */
#include <linux/netlink.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
    int s = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    if (s < 0) return 2;
    printf("READY %d\n", s);
    fflush(stdout);
    for (;;) pause();
}
