/* Files in flight between two processes of a tree: a parent and its child share a stream socket
 * pair (the child holds one end, the parent the other) and the child passes to the parent, not
 * yet received at the capture, the read end of a pipe whose write end the child keeps and a
 * file whose open file description both hold (opened before the fork). With the argument
 * "creds" the parent's end has SO_PASSCRED and the message carries the child's credentials.
 * After go the parent moves the file's offset through its own fd and tells the child to write
 * to the pipe; then it receives the message and checks that the pipe end reads what the child
 * wrote before and after the restore, the file passed shares the offset it set, and the
 * credentials name the child. */
#include "common.h"
#include <sys/socket.h>
#include <sys/wait.h>

int main(int argc, char **argv) {
    int creds = argc > 1 && !strcmp(argv[1], "creds");
    int sp[2], p[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || pipe(p)) fail("socketpair/pipe");
    int one = 1;
    if (creds && setsockopt(sp[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one))
        fail("SO_PASSCRED");
    int file = open("shared.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (file < 0 || write(file, "0123456789", 10) != 10 || lseek(file, 2, SEEK_SET) != 2)
        fail("shared.txt");
    int ready_pipe[2];
    if (pipe(ready_pipe)) fail("pipe");
    pid_t child = fork();
    if (child < 0) fail("fork");
    if (child == 0) {
        close(sp[1]);
        close(ready_pipe[0]);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_go;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGUSR2, &sa, NULL);
        if (write(p[1], "before", 6) != 6) _exit(2);
        int fds[2] = {p[0], file};
        union {
            char buf[CMSG_SPACE(sizeof fds)];
            struct cmsghdr align;
        } u;
        struct iovec iov = {.iov_base = "files", .iov_len = 5};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                           .msg_controllen = sizeof u.buf};
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof fds);
        memcpy(CMSG_DATA(c), fds, sizeof fds);
        if (sendmsg(sp[0], &m, 0) != 5) _exit(2);
        close(p[0]);
        if (write(ready_pipe[1], "x", 1) != 1) _exit(2);
        close(ready_pipe[1]);
        while (!go) {
            struct timespec t = {0, 10 * 1000 * 1000};
            nanosleep(&t, NULL);
        }
        _exit(write(p[1], "after", 5) == 5 ? 0 : 3);
    }
    close(sp[0]);
    close(p[0]);
    close(p[1]);
    close(ready_pipe[1]);
    char x;
    if (read(ready_pipe[0], &x, 1) != 1) fail("child not ready");
    close(ready_pipe[0]);
    ready();
    wait_go();

    if (lseek(file, 7, SEEK_SET) != 7) fail("lseek");
    kill(child, SIGUSR2);
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
        fail("child status %#x", status);

    char buf[32] = {0};
    int got[2] = {-1, -1};
    union {
        char buf[CMSG_SPACE(sizeof got) + CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf - 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                       .msg_controllen = sizeof u.buf};
    if (recvmsg(sp[1], &m, MSG_DONTWAIT) != 5 || strcmp(buf, "files")) fail("message %s", buf);
    int has_cred = 0;
    struct ucred cred;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_type == SCM_RIGHTS) memcpy(got, CMSG_DATA(c), sizeof got);
        if (c->cmsg_type == SCM_CREDENTIALS) {
            memcpy(&cred, CMSG_DATA(c), sizeof cred);
            has_cred = 1;
        }
    }
    if (got[0] < 0 || got[1] < 0) fail("no files with the message");
    memset(buf, 0, sizeof buf);
    if (read(got[0], buf, sizeof buf - 1) != 11 || strcmp(buf, "beforeafter"))
        fail("the pipe in flight reads %s", buf);
    if (lseek(got[1], 0, SEEK_CUR) != 7) fail("the file passed is at %ld, not 7 (another open file)",
                                              (long)lseek(got[1], 0, SEEK_CUR));
    if (creds && (!has_cred || cred.pid != child)) fail("credentials: %d, child %d", has_cred ? cred.pid : -1, child);
    pass();
}
