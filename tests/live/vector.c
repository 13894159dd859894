/* Loads known values into ymm0-ymm15 and waits for SIGUSR2 in a raw nanosleep(10 ms) loop
 * written in assembly, so no compiled code touches the vector registers across the
 * checkpoint; then stores and checks them. */
#include "common.h"

static unsigned char in[16][32] __attribute__((aligned(32)));
static unsigned char out[16][32] __attribute__((aligned(32)));
static struct timespec tick = {0, 10 * 1000 * 1000};

int main(void) {
    for (int r = 0; r < 16; r++)
        for (int b = 0; b < 32; b++) in[r][b] = (unsigned char)(r * 37 + b * 11 + 1);
    ready();
    __asm__ volatile(
        "vmovdqa 0(%0), %%ymm0\n vmovdqa 32(%0), %%ymm1\n vmovdqa 64(%0), %%ymm2\n"
        "vmovdqa 96(%0), %%ymm3\n vmovdqa 128(%0), %%ymm4\n vmovdqa 160(%0), %%ymm5\n"
        "vmovdqa 192(%0), %%ymm6\n vmovdqa 224(%0), %%ymm7\n vmovdqa 256(%0), %%ymm8\n"
        "vmovdqa 288(%0), %%ymm9\n vmovdqa 320(%0), %%ymm10\n vmovdqa 352(%0), %%ymm11\n"
        "vmovdqa 384(%0), %%ymm12\n vmovdqa 416(%0), %%ymm13\n vmovdqa 448(%0), %%ymm14\n"
        "vmovdqa 480(%0), %%ymm15\n"
        "1: mov $35, %%eax\n lea %3, %%rdi\n xor %%esi, %%esi\n syscall\n cmpl $0, %2\n je 1b\n"
        "vmovdqa %%ymm0, 0(%1)\n vmovdqa %%ymm1, 32(%1)\n vmovdqa %%ymm2, 64(%1)\n"
        "vmovdqa %%ymm3, 96(%1)\n vmovdqa %%ymm4, 128(%1)\n vmovdqa %%ymm5, 160(%1)\n"
        "vmovdqa %%ymm6, 192(%1)\n vmovdqa %%ymm7, 224(%1)\n vmovdqa %%ymm8, 256(%1)\n"
        "vmovdqa %%ymm9, 288(%1)\n vmovdqa %%ymm10, 320(%1)\n vmovdqa %%ymm11, 352(%1)\n"
        "vmovdqa %%ymm12, 384(%1)\n vmovdqa %%ymm13, 416(%1)\n vmovdqa %%ymm14, 448(%1)\n"
        "vmovdqa %%ymm15, 480(%1)\n vzeroupper\n"
        :
        : "r"(in), "r"(out), "m"(go), "m"(tick)
        : "rax", "rcx", "rdi", "rsi", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
          "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    if (memcmp(in, out, sizeof in) != 0) {
        for (int r = 0; r < 16; r++)
            if (memcmp(in[r], out[r], 32)) fail("ymm%d differs", r);
    }
    pass();
}
