/* A memfd shared by a parent and its child through fork: both hold the fd (one open file
 * description) and the shared mapping. After the restore of the tree a write by the parent
 * through its mapping is read by the child through the fd, and a write by the child through the
 * fd is seen in the parent's mapping: one object, as before. */
#include "common.h"
#include <sys/wait.h>

static volatile sig_atomic_t usr1;
static void on_usr1(int s) { (void)s; usr1 = 1; }

int main(void) {
    int m = memfd_create("crak-tree", 0);
    if (m < 0 || ftruncate(m, 4096)) fail("memfd");
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
    if (p == MAP_FAILED) fail("mmap");
    strcpy(p, "before");
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    pid_t c = fork();
    if (c < 0) fail("fork");
    if (c == 0) {
        while (!usr1) {
            struct timespec t = {0, 10 * 1000 * 1000};
            nanosleep(&t, NULL);
        }
        char buf[16] = {0};
        if (pread(m, buf, 11, 0) != 11 || memcmp(buf, "from-parent", 11)) _exit(3);
        if (pwrite(m, "from-child", 10, 100) != 10) _exit(4);
        _exit(0);
    }
    ready();
    wait_go();
    if (strcmp(p, "before")) fail("the mapping holds %.8s", p);
    strcpy(p, "from-parent");
    kill(c, SIGUSR1);
    int st;
    if (waitpid(c, &st, 0) != c) fail("waitpid: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail("the child did not see the parent's write through its fd (status %#x)", st);
    if (memcmp(p + 100, "from-child", 10)) fail("the child's write is not in the parent's mapping");
    pass();
}
