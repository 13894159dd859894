/* nanosleep(SECONDS) across the checkpoint: must return 0 (no EINTR) after the remaining time,
 * not after a fresh full sleep. */
#include "common.h"

int main(int argc, char **argv) {
    int secs = argc > 1 ? atoi(argv[1]) : 6;
    double t0 = now_mono();
    ready();
    struct timespec req = {secs, 0}, rem = {0, 0};
    int r = nanosleep(&req, &rem);
    double dt = now_mono() - t0;
    if (r != 0) fail("nanosleep returned %d errno %s", r, strerror(errno));
    if (dt < secs - 0.01) fail("slept only %.3f s", dt);
    char buf[64];
    snprintf(buf, sizeof buf, "slept %.3f\n", dt);
    write_file("slept", buf);
    pass();
}
