/* memfds and POSIX shared memory across the checkpoint:
 * - a sealable memfd kept as an fd and mapped MAP_SHARED, with data written through the fd and
 *   through the mapping and seals (SHRINK, GROW) added after: after the restore its name, size,
 *   contents and seals are intact, and a write through the mapping is read through the fd and
 *   the other way round;
 * - a memfd only mapped (its fd closed), whose data was written with write(2) before the
 *   mapping was made (so the mapping never touched it): the bytes are still there;
 * - a POSIX shm object (/dev/shm) mapped shared and its fd closed: a write through the mapping
 *   after the restore is seen by a new shm_open of the same name. */
#include "common.h"
#include <sys/mman.h>

#define PAGE 4096

int main(void) {
    char shm_name[64];
    snprintf(shm_name, sizeof shm_name, "/crak-obj-%d", (int)getpid());
    int m = memfd_create("crak-sealed", MFD_ALLOW_SEALING);
    if (m < 0) fail("memfd_create: %s", strerror(errno));
    if (ftruncate(m, 3 * PAGE)) fail("ftruncate");
    if (pwrite(m, "through-the-fd", 14, 0) != 14) fail("pwrite");
    char *p = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
    if (p == MAP_FAILED) fail("mmap memfd");
    strcpy(p + PAGE, "through-the-map");
    if (fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW)) fail("F_ADD_SEALS");

    int o = memfd_create("crak-only-mapped", 0);
    if (o < 0 || ftruncate(o, 2 * PAGE)) fail("second memfd");
    if (pwrite(o, "written-before-mmap", 19, PAGE) != 19) fail("pwrite second");
    char *q = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, o, 0);
    if (q == MAP_FAILED) fail("mmap second");
    close(o);

    int s = shm_open(shm_name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (s < 0 || ftruncate(s, PAGE)) fail("shm_open: %s", strerror(errno));
    char *r = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, s, 0);
    if (r == MAP_FAILED) fail("mmap shm");
    close(s);
    strcpy(r, "shm-before");

    ready();
    wait_go();

    /* The sealed memfd. */
    char buf[64] = {0};
    char link[128] = {0}, path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", m);
    if (readlink(path, link, sizeof link - 1) < 0 || strcmp(link, "/memfd:crak-sealed (deleted)"))
        fail("memfd fd is %s", link);
    int seals = fcntl(m, F_GET_SEALS);
    if (seals != (F_SEAL_SHRINK | F_SEAL_GROW)) fail("seals are %#x", seals);
    struct stat st;
    if (fstat(m, &st) || st.st_size != 3 * PAGE) fail("memfd size %ld", (long)st.st_size);
    if (pread(m, buf, 14, 0) != 14 || memcmp(buf, "through-the-fd", 14)) fail("fd data %.14s", buf);
    if (memcmp(p, "through-the-fd", 14)) fail("fd data not in the mapping: %.14s", p);
    if (pread(m, buf, 15, PAGE) != 15 || memcmp(buf, "through-the-map", 15)) fail("mapped data %.15s", buf);
    strcpy(p + 2 * PAGE, "after-restore-map");
    if (pread(m, buf, 17, 2 * PAGE) != 17 || memcmp(buf, "after-restore-map", 17))
        fail("a write through the mapping is not seen through the fd: %.17s", buf);
    if (pwrite(m, "after-restore-fd", 16, 100) != 16) fail("pwrite after");
    if (memcmp(p + 100, "after-restore-fd", 16)) fail("a write through the fd is not seen in the mapping");
    if (ftruncate(m, PAGE) == 0 || errno != EPERM) fail("F_SEAL_SHRINK does not hold");

    /* The memfd only mapped. */
    if (memcmp(q + PAGE, "written-before-mmap", 19)) fail("only-mapped memfd lost its data: %.19s", q + PAGE);
    for (int i = 0; i < PAGE; i++)
        if (q[i]) fail("only-mapped memfd byte %d is %d", i, q[i]);

    /* POSIX shm: still the object of that name. */
    if (strcmp(r, "shm-before")) fail("shm holds %.16s", r);
    strcpy(r, "shm-after");
    int s2 = shm_open(shm_name, O_RDONLY, 0);
    if (s2 < 0) fail("shm_open again: %s", strerror(errno));
    if (pread(s2, buf, 9, 0) != 9 || memcmp(buf, "shm-after", 9))
        fail("the shm mapping is not shared with /dev/shm%s: %.9s", shm_name, buf);
    shm_unlink(shm_name);
    pass();
}
