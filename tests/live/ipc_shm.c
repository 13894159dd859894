/* A SysV shared memory segment shared by a parent and its child, guarded by a SysV semaphore:
 * both increment counters in the segment under the semaphore (taken with semop, no SEM_UNDO),
 * checking under the lock that the total equals the sum of both counts. The parent also holds a
 * second, read-only attachment of the segment at another address and a pattern at the start of
 * the third page (the rest is zero). The ids are written to the file "ids" before READY.
 * After go, the parent checks that the child keeps counting (so the restored processes share
 * the segment), that the read-only view shows the same bytes, the pattern, the zeros, the ids
 * and keys (shmget/semget of the key give the same ids), the permissions, MADV_DONTDUMP on the
 * read-write attachment only, then stops the child,
 * reaps it, checks the semaphore is free, removes both objects and passes.
 * With the argument "rmid" the segment is removed (IPC_RMID) right after it is attached, before
 * the fork, as programs do so that it goes with them: it then has no key and SHM_DEST in its
 * mode, before and after the restore, and goes when both processes have exited. */
#include "common.h"
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>

#define PAGE 4096
#define SIZE (3 * PAGE + 100)

struct shared {
    volatile uint64_t parent, child, total;
    volatile int stop;
    volatile int bad;
};

static int semid;

static void lock(int op) {
    struct sembuf b = {0, (short)op, 0};
    while (semop(semid, &b, 1) < 0)
        if (errno != EINTR) _exit(20);
}

static void count(struct shared *sh, volatile uint64_t *mine) {
    lock(-1);
    if (sh->total != sh->parent + sh->child) sh->bad = 1;
    (*mine)++;
    sh->total++;
    lock(1);
}

static uint8_t pattern(int i) { return (uint8_t)(i * 7 + 3); }

/* Whether the VmFlags of the mapping at `addr` (in /proc/self/smaps) hold `flag`. */
static int vm_flag(void *addr, const char *flag) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return 0;
    char line[512], want[32];
    snprintf(want, sizeof want, "%lx-", (unsigned long)addr);
    int in = 0, found = 0;
    while (fgets(line, sizeof line, f)) {
        if (strchr(line, '-') && strchr(line, ' ') && strchr(line, '-') < strchr(line, ' '))
            in = !strncmp(line, want, strlen(want));
        else if (in && !strncmp(line, "VmFlags:", 8))
            found = strstr(line, flag) != NULL;
    }
    fclose(f);
    return found;
}

int main(int argc, char **argv) {
    int rmid = argc > 1 && !strcmp(argv[1], "rmid");
    key_t key = 0x63720000 | (getpid() & 0xffff);
    int shmid = shmget(key, SIZE, IPC_CREAT | IPC_EXCL | 0640);
    if (shmid < 0) fail("shmget: %s", strerror(errno));
    semid = semget(key, 2, IPC_CREAT | IPC_EXCL | 0604);
    if (semid < 0) fail("semget: %s", strerror(errno));
    unsigned short init[2] = {1, 42};
    if (semctl(semid, 0, SETALL, init) < 0) fail("SETALL");
    struct shared *sh = shmat(shmid, NULL, 0);
    if (sh == (void *)-1) fail("shmat");
    uint8_t *ro = shmat(shmid, NULL, SHM_RDONLY);
    if (ro == (void *)-1) fail("shmat ro");
    uint8_t *bytes = (uint8_t *)sh;
    for (int i = 0; i < 64; i++) bytes[2 * PAGE + i] = pattern(i);
    if (madvise(sh, 4 * PAGE, MADV_DONTDUMP) < 0) fail("madvise");
    if (rmid && shmctl(shmid, IPC_RMID, NULL) < 0) fail("IPC_RMID");

    pid_t child = fork();
    if (child < 0) fail("fork");
    if (child == 0) {
        if (shmdt(ro) < 0) _exit(21);
        while (!sh->stop) {
            count(sh, &sh->child);
            struct timespec t = {0, 200 * 1000};
            nanosleep(&t, NULL);
        }
        _exit(sh->bad ? 2 : 0);
    }
    char ids[128];
    snprintf(ids, sizeof ids, "%d %d %d %d\n", shmid, semid, key, child);
    write_file("ids", ids);
    ready();
    while (!go) {
        count(sh, &sh->parent);
        struct timespec t = {0, 200 * 1000};
        nanosleep(&t, NULL);
    }

    /* The child still counts, through the same segment. */
    uint64_t c0 = sh->child;
    double t0 = now_mono();
    while (sh->child < c0 + 10) {
        if (now_mono() - t0 > 20) fail("the child stopped counting (%llu)", (unsigned long long)c0);
        count(sh, &sh->parent);
    }
    if (memcmp(ro, bytes, SIZE) != 0) fail("the read-only view differs");
    for (int i = 0; i < 64; i++)
        if (ro[2 * PAGE + i] != pattern(i)) fail("pattern byte %d", i);
    for (int i = 64; i < SIZE - 2 * PAGE; i++)
        if (ro[2 * PAGE + i] != 0) fail("byte %d of page 3 is not zero", i);
    if (!rmid && shmget(key, 0, 0) != shmid) fail("the key names another segment");
    if (rmid && shmget(key, 0, 0) >= 0) fail("the removed segment has its key again");
    if (semget(key, 0, 0) != semid) fail("the key names another semaphore set");
    struct shmid_ds ds;
    if (shmctl(shmid, IPC_STAT, &ds) < 0) fail("IPC_STAT");
    if ((ds.shm_perm.mode & 0777) != 0640 || ds.shm_segsz != SIZE) fail("segment mode or size");
    if (!!(ds.shm_perm.mode & SHM_DEST) != rmid) fail("SHM_DEST is %s", rmid ? "clear" : "set");
    if (ds.shm_nattch != 3) fail("%lu attachments, not 3", (unsigned long)ds.shm_nattch);
    if (semctl(semid, 1, GETVAL) != 42) fail("second semaphore");
    if (!vm_flag(sh, " dd")) fail("the segment lost MADV_DONTDUMP");
    if (vm_flag(ro, " dd")) fail("the read-only attachment gained MADV_DONTDUMP");

    sh->stop = 1;
    int st;
    if (waitpid(child, &st, 0) != child) fail("waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("child status %#x", st);
    if (sh->bad) fail("total and counts disagreed");
    if (sh->total != sh->parent + sh->child) fail("total");
    if (semctl(semid, 0, GETVAL) != 1) fail("the semaphore is not free");
    if (!rmid) shmctl(shmid, IPC_RMID, NULL);
    semctl(semid, 0, IPC_RMID);
    pass();
}
