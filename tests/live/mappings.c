/* Memory layout: heap grown with brk, private and shared file mappings (with a private copy
 * modified and one zeroed), a shared anonymous mapping, PROT_NONE guard pages, a read-only
 * anonymous page with data, MADV_DONTFORK on a mapping. */
#include "common.h"

/* Whether the smaps entry starting at `addr` shows VmFlags `flag`. */
static int has_vmflag(void *addr, const char *flag) {
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512], want[32];
    int in = 0, found = 0;
    snprintf(want, sizeof want, "%lx-", (unsigned long)addr);
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, want, strlen(want))) in = 1;
        else if (in && !strncmp(line, "VmFlags:", 8)) {
            found = strstr(line, flag) != NULL;
            break;
        }
    }
    if (f) fclose(f);
    return found;
}

int main(void) {
    char *b0 = sbrk(0);
    if (sbrk(1 << 20) == (void *)-1) fail("sbrk");
    for (int i = 0; i < (1 << 20); i++) b0[i] = (char)(i * 3);
    char *brk_now = sbrk(0);
    int pf = open("private.bin", O_RDONLY);
    int sf = open("shared.bin", O_RDWR);
    if (pf < 0 || sf < 0) fail("open");
    unsigned char *pm = mmap(0, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE, pf, 0);
    unsigned char *sm = mmap(0, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, sf, 0);
    close(pf);
    close(sf);
    if (pm == MAP_FAILED || sm == MAP_FAILED) fail("mmap");
    memset(pm + 4096, 0xAB, 4096); /* a modified private copy */
    memset(pm + 8192, 0, 4096);    /* a private copy that is all zeros */
    sm[100] = 0x5A;                /* lands in the file */
    unsigned char *an = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(an, 0x77, 3 * 4096);
    unsigned char *g = mmap(0, 5 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(g, 0x11, 5 * 4096);
    mprotect(g, 4096, PROT_NONE);
    mprotect(g + 4 * 4096, 4096, PROT_NONE);
    mprotect(g + 2 * 4096, 4096, PROT_READ);
    unsigned char *df = mmap(0, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (df == MAP_FAILED || madvise(df, 2 * 4096, MADV_DONTFORK)) fail("MADV_DONTFORK");
    df[0] = 9;
    ready();
    wait_go();
    for (int i = 0; i < (1 << 20); i++)
        if (b0[i] != (char)(i * 3)) fail("heap byte %d", i);
    if (sbrk(0) != brk_now) fail("brk moved: %p vs %p", sbrk(0), (void *)brk_now);
    char *more = sbrk(8192);
    if (more == (void *)-1) fail("brk cannot grow");
    memset(more, 1, 8192);
    for (int i = 0; i < 65536; i++) {
        unsigned char want = i >= 4096 && i < 8192 ? 0xAB : i >= 8192 && i < 12288 ? 0 : (unsigned char)(i / 7);
        if (pm[i] != want) fail("private map byte %d is %#x, want %#x", i, pm[i], want);
    }
    if (sm[100] != 0x5A || sm[101] != (unsigned char)(101 / 13)) fail("shared map");
    sm[200] = 0x33;
    for (int i = 0; i < 3 * 4096; i++)
        if (an[i] != 0x77) fail("shared anon byte %d", i);
    if (g[4096] != 0x11 || g[2 * 4096] != 0x11 || g[3 * 4096 + 5] != 0x11) fail("guarded data");
    /* Last: reading smaps allocates (and moves brk). */
    if (df[0] != 9) fail("MADV_DONTFORK page content");
    if (!has_vmflag(df, "dc")) fail("MADV_DONTFORK (dc) lost");
    pass();
}
