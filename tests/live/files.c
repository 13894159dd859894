/* Files: O_APPEND file at an offset, a read-only close-on-exec file at an offset, a deleted but
 * open file with its contents and offset, /dev/null, a directory. */
#include "common.h"

int main(void) {
    int a = open("append.txt", O_RDWR | O_APPEND | O_CREAT, 0600);
    if (a < 0 || write(a, "0123456789", 10) != 10) fail("append.txt");
    lseek(a, 3, SEEK_SET);
    int r = open("input.txt", O_RDONLY | O_CLOEXEC);
    if (r < 0) fail("input.txt");
    lseek(r, 5, SEEK_SET);
    int d = open("gone.txt", O_RDWR | O_CREAT | O_EXCL, 0640);
    static char pat[10000];
    for (size_t i = 0; i < sizeof pat; i++) pat[i] = 'a' + i % 26;
    if (d < 0 || write(d, pat, sizeof pat) != (ssize_t)sizeof pat) fail("gone.txt");
    unlink("gone.txt");
    lseek(d, 5000, SEEK_SET);
    int n = open("/dev/null", O_WRONLY);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    if (n < 0 || dir < 0) fail("open");
    int hi = dup2(a, 100);
    if (hi != 100) fail("dup2");
    ready();
    wait_go();
    if (lseek(a, 0, SEEK_CUR) != 3) fail("append.txt offset %ld", (long)lseek(a, 0, SEEK_CUR));
    if (!(fcntl(a, F_GETFL) & O_APPEND)) fail("O_APPEND lost");
    if ((fcntl(a, F_GETFL) & O_ACCMODE) != O_RDWR) fail("append.txt not O_RDWR");
    if (write(a, "X", 1) != 1) fail("append write");
    struct stat st;
    fstat(a, &st);
    if (st.st_size != 11) fail("append.txt size %ld", (long)st.st_size);
    if (lseek(r, 0, SEEK_CUR) != 5) fail("input.txt offset");
    if (!(fcntl(r, F_GETFD) & FD_CLOEXEC)) fail("FD_CLOEXEC lost");
    if (fcntl(a, F_GETFD) & FD_CLOEXEC) fail("FD_CLOEXEC appeared");
    char c;
    if (read(r, &c, 1) != 1 || c != 'F') fail("input.txt content");
    fstat(d, &st);
    if (st.st_nlink != 0) fail("gone.txt has links");
    if (st.st_size != sizeof pat) fail("gone.txt size %ld", (long)st.st_size);
    if (lseek(d, 0, SEEK_CUR) != 5000) fail("gone.txt offset");
    static char back[10000];
    if (pread(d, back, sizeof back, 0) != (ssize_t)sizeof back || memcmp(back, pat, sizeof pat)) fail("gone.txt content");
    if (write(n, "x", 1) != 1) fail("/dev/null");
    if (fstat(dir, &st) || !S_ISDIR(st.st_mode)) fail("directory fd");
    if (lseek(100, 0, SEEK_CUR) != 3 && lseek(100, 0, SEEK_CUR) != 11) fail("fd 100");
    pass();
}
