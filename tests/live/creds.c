/* Credentials: the program drops from root to uids 1000/1001/1002, gids 2000/2001/2002, groups
 * 3000 and 3001, no capabilities, no_new_privs; after restore they must be the same. */
#include "common.h"
#include <grp.h>
#include <sys/prctl.h>

static int status_line(const char *key, char *out, size_t n) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int found = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key))) {
            snprintf(out, n, "%s", line + strlen(key));
            found = 1;
        }
    if (f) fclose(f);
    return found;
}

int main(void) {
    gid_t groups[2] = {3000, 3001};
    if (setgroups(2, groups)) fail("setgroups");
    if (setresgid(2000, 2001, 2002)) fail("setresgid");
    if (setresuid(1000, 1001, 1002)) fail("setresuid");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) fail("no_new_privs");
    ready();
    wait_go();
    uid_t r, e, s;
    gid_t gr, ge, gs;
    getresuid(&r, &e, &s);
    getresgid(&gr, &ge, &gs);
    if (r != 1000 || e != 1001 || s != 1002) fail("uids %d %d %d", r, e, s);
    if (gr != 2000 || ge != 2001 || gs != 2002) fail("gids %d %d %d", gr, ge, gs);
    gid_t g[8];
    int n = getgroups(8, g);
    if (n != 2 || g[0] != 3000 || g[1] != 3001) fail("groups (%d)", n);
    char v[128];
    if (!status_line("CapEff:", v, sizeof v) || strtoull(v, 0, 16) != 0) fail("CapEff %s", v);
    if (!status_line("CapPrm:", v, sizeof v) || strtoull(v, 0, 16) != 0) fail("CapPrm %s", v);
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) fail("no_new_privs lost");
    pass();
}
