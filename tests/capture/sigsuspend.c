/* Blocks SIGUSR1, then waits in sigsuspend() with an empty mask for SIGUSR2. After the handler
 * ran, sigsuspend must have returned EINTR and the original mask (SIGUSR1 blocked, SIGUSR2 not)
 * must be back. Prints PASS or FAIL <reason>. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t got;

static void on_usr2(int sig) { (void)sig; got = 1; }

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    sigset_t block, empty, now;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, NULL);
    sigemptyset(&empty);
    printf("READY\n");
    fflush(stdout);
    int r = sigsuspend(&empty);
    if (r != -1 || errno != EINTR || !got) { printf("FAIL sigsuspend %d errno %d got %d\n", r, errno, got); return 1; }
    sigprocmask(SIG_BLOCK, NULL, &now);
    if (!sigismember(&now, SIGUSR1) || sigismember(&now, SIGUSR2)) { printf("FAIL mask\n"); return 1; }
    printf("PASS\n");
    return 0;
}
