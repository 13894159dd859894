/* A shell job on a terminal: stdin, stdout and stderr are the terminal. After a restore with
 * --shell-job they must be the same terminal again, and writable. */
#include "common.h"

int main(void) {
    char *name = ttyname(1);
    if (!isatty(0) || !isatty(1) || !name) fail("not started on a terminal");
    char saved[256];
    snprintf(saved, sizeof saved, "%s", name);
    ready();
    wait_go();
    if (!isatty(0) || !isatty(1) || !isatty(2)) fail("fds are no terminal after restore");
    name = ttyname(1);
    if (!name || strcmp(name, saved)) fail("terminal %s, was %s", name ? name : "?", saved);
    if (write(1, "tty-ok\r\n", 8) != 8) fail("write to the terminal: %s", strerror(errno));
    pass();
}
