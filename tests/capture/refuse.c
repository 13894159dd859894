/* Holds one resource crak cannot capture yet, named by argv[1] (inotify-queued, unix-listen,
 * sysv (in an IPC namespace of its own), memfd-private), prints "READY <fd or address>" and
 * waits. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *k = argv[1];
    long v = -1;
    if (!strcmp(k, "inotify-queued")) {
        /* An event not yet read: it would be lost. */
        v = inotify_init1(0);
        if (v < 0 || inotify_add_watch(v, ".", IN_CREATE) < 0) return 2;
        int t = open("refuse-inotify-probe", O_CREAT | O_WRONLY, 0600);
        if (t < 0) return 2;
        close(t);
        unlink("refuse-inotify-probe");
    }
    else if (!strcmp(k, "unix-listen")) {
        /* A listener whose connection, not yet accepted, has bytes queued (which cannot be
         * read without accepting it). Bound to an abstract name: nothing in the filesystem
         * to clean up. */
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        int n = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "crak-test-%d", (int)getpid());
        socklen_t len = sizeof(sa_family_t) + 1 + n;
        v = socket(AF_UNIX, SOCK_STREAM, 0);
        if (v < 0 || bind(v, (struct sockaddr *)&a, len) || listen(v, 1)) return 2;
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&a, len) || write(c, "x", 1) != 1) return 2;
    }
    else if (!strcmp(k, "sysv")) {
        /* A segment of an IPC namespace of its own, which a restore could not recreate. */
        if (unshare(CLONE_NEWIPC)) return 2;
        int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
        void *p = shmat(id, NULL, 0);
        shmctl(id, IPC_RMID, NULL);
        if (p == (void *)-1) return 2;
        v = (long)p;
    } else if (!strcmp(k, "memfd-private")) {
        int fd = memfd_create("crak-test", 0);
        if (fd < 0 || ftruncate(fd, 4096)) return 2;
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        close(fd);
        if (p == MAP_FAILED) return 2;
        v = (long)p;
    }
    if (v == -1) return 2;
    if (!strcmp(k, "sysv") || !strcmp(k, "memfd-private")) printf("READY %lx\n", v);
    else printf("READY %ld\n", v);
    fflush(stdout);
    for (;;) pause();
}
