/* Sleeps in a raw nanosleep() with its stack pointer 64 bytes above the bottom of a one-page
 * stack, with nothing mapped below: no room for scratch memory under the stack pointer.
 * Prints PASS when the sleep completed normally, FAIL otherwise. */
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static struct timespec ts = {1, 0};

int main(void) {
    /* Three pages; keep the middle one as the stack and unmap its neighbours. */
    char *m = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 2;
    munmap(m, 4096);
    munmap(m + 2 * 4096, 4096);
    char *stk = m + 4096;
    printf("READY %lx\n", (unsigned long)stk);
    fflush(stdout);
    long ret;
    __asm__ volatile(
        "mov %%rsp, %%r12\n\t"
        "mov %[sp], %%rsp\n\t"
        "mov $35, %%eax\n\t"
        "mov %[req], %%rdi\n\t"
        "xor %%esi, %%esi\n\t"
        "syscall\n\t"
        "mov %%r12, %%rsp\n\t"
        : "=a"(ret)
        : [sp] "r"(stk + 64), [req] "r"(&ts)
        : "rdi", "rsi", "rcx", "r11", "r12", "memory");
    if (ret != 0) { printf("FAIL nanosleep %ld\n", ret); return 1; }
    printf("PASS\n");
    return 0;
}
