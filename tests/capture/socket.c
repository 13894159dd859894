/* Holds a socket at fd 3 (or the next free fd) and waits. */
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return 2;
    printf("READY %d\n", s);
    fflush(stdout);
    for (;;) pause();
}
