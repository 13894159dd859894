/* Holds one resource crak cannot capture yet, named by argv[1] (epoll, eventfd, inotify, sysv,
 * memfd-map), prints "READY <fd or address>" and waits. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *k = argv[1];
    long v = -1;
    if (!strcmp(k, "epoll")) v = epoll_create1(0);
    else if (!strcmp(k, "eventfd")) v = eventfd(0, 0);
    else if (!strcmp(k, "inotify")) v = inotify_init1(0);
    else if (!strcmp(k, "sysv")) {
        int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
        void *p = shmat(id, NULL, 0);
        shmctl(id, IPC_RMID, NULL);
        if (p == (void *)-1) return 2;
        v = (long)p;
    } else if (!strcmp(k, "memfd-map")) {
        int fd = memfd_create("crak-test", 0);
        if (fd < 0 || ftruncate(fd, 4096)) return 2;
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED) return 2;
        v = (long)p;
    }
    if (v == -1) return 2;
    if (!strcmp(k, "sysv") || !strcmp(k, "memfd-map")) printf("READY %lx\n", v);
    else printf("READY %ld\n", v);
    fflush(stdout);
    for (;;) pause();
}
