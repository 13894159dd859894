/* memory MIB [random]: fills MIB MiB of anonymous memory (a checkable pattern, or xorshift
 * random data), remembers its checksum, and after restore checks every byte. */
#include "common.h"

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 64;
    int random = argc > 2;
    size_t len = mib << 20;
    uint64_t *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail("mmap");
    uint64_t seed = 0x9e3779b97f4a7c15ull, sum = 0;
    for (size_t i = 0; i < len / 8; i++) {
        /* A page in 16 stays all zero, to exercise zero pages. */
        uint64_t v = ((i / 512) % 16 == 3) ? 0 : random ? xorshift(&seed) : i * 0x100000001ull;
        p[i] = v;
        sum = sum * 31 + v;
    }
    ready();
    wait_go();
    uint64_t check = 0;
    seed = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < len / 8; i++) {
        uint64_t v = ((i / 512) % 16 == 3) ? 0 : random ? xorshift(&seed) : i * 0x100000001ull;
        if (p[i] != v) fail("word %zu is %#llx, expected %#llx", i, (unsigned long long)p[i], (unsigned long long)v);
        check = check * 31 + p[i];
    }
    if (check != sum) fail("checksum differs");
    pass();
}
