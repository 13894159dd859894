/*
 * 64 MiB of xorshift data in one anonymous mapping (so that it is one stored run), its checksum
 * kept aside; after go every word is checked.
 */
#include "common.h"
static uint64_t xs(uint64_t *s) { uint64_t x = *s; x ^= x << 13; x ^= x >> 7; x ^= x << 17; return *s = x; }
int main(void) {
    size_t len = 64ul << 20;
    uint64_t *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) fail("mmap");
    uint64_t seed = 0x2545f4914f6cdd1dull, sum = 0;
    for (size_t i = 0; i < len / 8; i++) { p[i] = xs(&seed) | 1; sum += p[i] * (i | 1); }
    ready();
    wait_go();
    uint64_t check = 0;
    seed = 0x2545f4914f6cdd1dull;
    for (size_t i = 0; i < len / 8; i++) {
        uint64_t v = xs(&seed) | 1;
        if (p[i] != v) fail("word %zu is %#llx, expected %#llx", i, (unsigned long long)p[i], (unsigned long long)v);
        check += p[i] * (i | 1);
    }
    if (check != sum) fail("checksum differs");
    pass();
}
