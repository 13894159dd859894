/* Blocks in read() on stdin after printing READY; a capture with --leave-running must not make
 * that read fail with EINTR. Prints "GOT <bytes>" or "FAIL ...". */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    char buf[64];
    printf("READY\n");
    fflush(stdout);
    ssize_t n = read(0, buf, sizeof buf - 1);
    if (n < 0) { printf("FAIL read errno %d\n", errno); return 1; }
    buf[n] = 0;
    printf("GOT %s\n", buf);
    return 0;
}
