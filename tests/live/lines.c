/* Writes the numbers 0 to 2999 to its standard output, one line each, a millisecond apart, with
 * one write(2) per line (a pipe never splits a write this small), then exits with status 0. */
#include "common.h"

int main(void) {
    char buf[32];
    for (int i = 0; i < 3000; i++) {
        int n = snprintf(buf, sizeof buf, "%d\n", i);
        while (write(1, buf, n) != n)
            if (errno != EINTR) return 2;
        struct timespec t = {0, 1000 * 1000};
        nanosleep(&t, NULL);
    }
    return 0;
}
