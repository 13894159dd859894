/* An inotify instance watching two directories, with a hole in its watch descriptors (the
 * first watch was removed and its IN_IGNORED event read). After the restore, a file created in
 * each watched directory is reported with the saved watch descriptor and its name, and nothing
 * else is queued (no IN_IGNORED from the restore). */
#include "common.h"
#include <poll.h>
#include <sys/inotify.h>

static void expect_create(int in, int wd, const char *name) {
    char buf[4096] __attribute__((aligned(8)));
    struct pollfd pf = {.fd = in, .events = POLLIN};
    if (poll(&pf, 1, 10000) != 1) fail("no event for %s", name);
    ssize_t n = read(in, buf, sizeof buf);
    if (n < (ssize_t)sizeof(struct inotify_event)) fail("read inotify: %zd", n);
    struct inotify_event *e = (struct inotify_event *)buf;
    if (e->wd != wd || !(e->mask & IN_CREATE) || strcmp(e->name, name))
        fail("event wd %d mask %#x name %s, expected wd %d IN_CREATE %s", e->wd, e->mask,
             e->len ? e->name : "", wd, name);
    if (n != (ssize_t)(sizeof *e + e->len)) fail("more than one event queued");
}

int main(void) {
    if (mkdir("a", 0755) || mkdir("b", 0755) || mkdir("gone", 0755)) fail("mkdir");
    int in = inotify_init1(IN_NONBLOCK);
    if (in < 0) fail("inotify_init1");
    int w0 = inotify_add_watch(in, "gone", IN_CREATE);
    int wa = inotify_add_watch(in, "a", IN_CREATE);
    if (inotify_rm_watch(in, w0)) fail("rm_watch");
    char drain[4096];
    while (read(in, drain, sizeof drain) > 0) {}
    int wb = inotify_add_watch(in, "b", IN_CREATE | IN_DELETE);
    if (w0 < 0 || wa <= w0 || wb <= wa) fail("watch descriptors %d %d %d", w0, wa, wb);
    ready();
    wait_go();
    int fl = fcntl(in, F_GETFL);
    if (!(fl & O_NONBLOCK)) fail("the inotify fd lost O_NONBLOCK");
    if (read(in, drain, sizeof drain) != -1 || errno != EAGAIN) fail("events queued after the restore");
    close(open("a/new-in-a", O_CREAT | O_WRONLY, 0644));
    expect_create(in, wa, "new-in-a");
    close(open("b/new-in-b", O_CREAT | O_WRONLY, 0644));
    expect_create(in, wb, "new-in-b");
    pass();
}
