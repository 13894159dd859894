/* A process tree that keeps no PID in its memory across the checkpoint, for restores under new
 * PIDs: a parent with three children and a zombie. c1 leads a process group that c2 joins, c3
 * leads its own session, and the zombie exited with status 7 before the capture. After go, the
 * parent closes the gate pipe; each child reports what it is now (pid, parent, group, session)
 * through the report pipe and exits with 10 + its number. The parent checks the relations with
 * its own pid of now (every child's parent is this process, c2 is in c1's group, c3 leads its
 * session, c1 and c2 share the parent's session), then reaps four children with wait(-1): three
 * of them are the pids reported, with their exit statuses, and one is the zombie's 7. */
#include "common.h"
#include <sys/wait.h>

struct report {
    int idx;
    pid_t pid, ppid, pgid, sid;
};

static int gate[2], rep[2];

static void child(int idx) {
    close(gate[1]);
    close(rep[0]);
    char c;
    while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
    }
    struct report r = {idx, getpid(), getppid(), getpgid(0), getsid(0)};
    if (write(rep[1], &r, sizeof r) != sizeof r) _exit(3);
    _exit(10 + idx);
}

int main(void) {
    if (pipe(gate) || pipe(rep)) fail("pipe");
    pid_t z = fork();
    if (z == 0) _exit(7);
    pid_t c1 = fork();
    if (c1 == 0) {
        setpgid(0, 0);
        child(1);
    }
    setpgid(c1, c1);
    pid_t c2 = fork();
    if (c2 == 0) {
        setpgid(0, c1);
        child(2);
    }
    setpgid(c2, c1);
    pid_t c3 = fork();
    if (c3 == 0) {
        setsid();
        child(3);
    }
    close(gate[0]);
    close(rep[1]);
    /* The zombie has exited and stays unreaped. */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, z, &si, WEXITED | WNOWAIT)) fail("waitid on the zombie");
    ready();
    wait_go();

    pid_t me = getpid(), my_sid = getsid(0);
    close(gate[1]);
    struct report r[4];
    memset(r, 0, sizeof r);
    for (int n = 0; n < 3; n++) {
        struct report x;
        ssize_t got;
        while ((got = read(rep[0], &x, sizeof x)) < 0 && errno == EINTR) {
        }
        if (got != sizeof x || x.idx < 1 || x.idx > 3) fail("report %d: read %zd bytes", n, got);
        r[x.idx] = x;
    }
    for (int i = 1; i <= 3; i++)
        if (r[i].ppid != me) fail("child %d (pid %d) has parent %d, not this process %d", i, r[i].pid, r[i].ppid, me);
    if (r[1].pgid != r[1].pid) fail("c1 (pid %d) is in group %d, not its own", r[1].pid, r[1].pgid);
    if (r[2].pgid != r[1].pid) fail("c2 is in group %d, not c1's %d", r[2].pgid, r[1].pid);
    if (r[3].sid != r[3].pid || r[3].pgid != r[3].pid) fail("c3 (pid %d) has session %d and group %d", r[3].pid, r[3].sid, r[3].pgid);
    if (r[1].sid != my_sid || r[2].sid != my_sid) fail("c1 and c2 have sessions %d and %d, not %d", r[1].sid, r[2].sid, my_sid);
    int seen_zombie = 0, seen[4] = {0};
    for (int n = 0; n < 4; n++) {
        int st;
        pid_t w = wait(&st);
        if (w < 0) fail("wait: %s after %d children", strerror(errno), n);
        if (!WIFEXITED(st)) fail("child %d did not exit normally (%#x)", w, st);
        int code = WEXITSTATUS(st);
        if (code == 7) {
            seen_zombie++;
            continue;
        }
        int i = code - 10;
        if (i < 1 || i > 3 || r[i].pid != w) fail("wait gave pid %d with status %d", w, code);
        seen[i]++;
    }
    if (seen_zombie != 1 || seen[1] != 1 || seen[2] != 1 || seen[3] != 1) fail("reaped the wrong children");
    pass();
}
