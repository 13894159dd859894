/* File locks across the checkpoint: an exclusive flock on "flocked", a POSIX write lock on bytes
 * 10-19 of "posix" (taken through a dup'ed fd too), an OFD read lock on all of "ofd". After the
 * restore a child (another process, with its own opens) cannot take any of them, F_GETLK names
 * the restored process as the POSIX lock's owner, and the process itself still can change its
 * own locks. */
#include "common.h"
#include <sys/file.h>
#include <sys/wait.h>

static int try_lock(const char *path, int cmd, short type, off_t start, off_t len) {
    int fd = open(path, O_RDWR);
    if (fd < 0) return -2;
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    int r = fcntl(fd, cmd, &fl);
    close(fd);
    return r;
}

int main(void) {
    int f = open("flocked", O_RDWR | O_CREAT, 0644);
    int p = open("posix", O_RDWR | O_CREAT, 0644);
    int o = open("ofd", O_RDWR | O_CREAT, 0644);
    if (f < 0 || p < 0 || o < 0) fail("open");
    if (flock(f, LOCK_EX | LOCK_NB)) fail("flock");
    struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10};
    if (fcntl(p, F_SETLK, &w)) fail("F_SETLK");
    if (dup2(p, 20) != 20) fail("dup2");
    struct flock r = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(o, F_OFD_SETLK, &r)) fail("F_OFD_SETLK");
    ready();
    wait_go();
    pid_t me = getpid();
    pid_t c = fork();
    if (c == 0) {
        int g = open("flocked", O_RDWR);
        if (g < 0 || flock(g, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK) _exit(10);
        if (flock(g, LOCK_SH | LOCK_NB) == 0) _exit(11);
        if (try_lock("posix", F_SETLK, F_WRLCK, 15, 1) != -1 || (errno != EAGAIN && errno != EACCES)) _exit(12);
        if (try_lock("posix", F_SETLK, F_WRLCK, 20, 5) != 0) _exit(13);
        int q = open("posix", O_RDWR);
        struct flock get = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        if (q < 0 || fcntl(q, F_GETLK, &get) || get.l_type != F_WRLCK || get.l_pid != me ||
            get.l_start != 10 || get.l_len != 10)
            _exit(14);
        if (try_lock("ofd", F_OFD_SETLK, F_WRLCK, 0, 0) != -1 || errno != EAGAIN) _exit(15);
        if (try_lock("ofd", F_OFD_SETLK, F_RDLCK, 0, 0) != 0) _exit(16);
        _exit(0);
    }
    int st;
    if (c < 0 || waitpid(c, &st, 0) != c) fail("fork/wait");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("another process could take a lock (check %d)", WEXITSTATUS(st));
    /* Still ours: converting and releasing work. */
    if (flock(f, LOCK_UN)) fail("flock unlock");
    pass();
}
