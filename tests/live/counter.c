/* Appends 0, 1, 2, ... to counter.log every 5 ms until SIGUSR2; the harness checks the file has
 * no gap and no repeat across the checkpoint. */
#include "common.h"

int main(void) {
    int fd = open("counter.log", O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) fail("open");
    ready();
    struct timespec d = {0, 5 * 1000 * 1000};
    for (long i = 0; !go; i++) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%ld\n", i);
        if (write(fd, buf, n) != n) fail("write: %s", strerror(errno));
        while (nanosleep(&d, &d) != 0)
            if (errno != EINTR) fail("nanosleep: %s", strerror(errno));
        d.tv_nsec = 5 * 1000 * 1000;
    }
    pass();
}
