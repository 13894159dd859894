/* A SysV message queue holding 100 messages of several types and sizes, sent by this process
 * (qbytes lowered to 8192 first). After go, it drains the queue in order (msgrcv of any type)
 * and checks each message, then that the queue is empty and keeps its id, key, mode and qbytes;
 * removes it and passes. The queue's id and key are written to the file "ids" before READY. */
#include "common.h"
#include <sys/ipc.h>
#include <sys/msg.h>

#define N 100

struct msg {
    long mtype;
    char text[512];
};

static int len_of(int i) { return 1 + (i * 37) % 61; }
static long type_of(int i) { return 1 + i % 5; }
static char byte_of(int i, int j) { return (char)('a' + (i + j) % 26); }

int main(void) {
    key_t key = 0x63730000 | (getpid() & 0xffff);
    int id = msgget(key, IPC_CREAT | IPC_EXCL | 0620);
    if (id < 0) fail("msgget: %s", strerror(errno));
    struct msqid_ds ds;
    if (msgctl(id, IPC_STAT, &ds) < 0) fail("IPC_STAT");
    ds.msg_qbytes = 8192;
    if (msgctl(id, IPC_SET, &ds) < 0) fail("IPC_SET");
    struct msg m;
    for (int i = 0; i < N; i++) {
        m.mtype = type_of(i);
        for (int j = 0; j < len_of(i); j++) m.text[j] = byte_of(i, j);
        if (msgsnd(id, &m, len_of(i), IPC_NOWAIT) < 0) fail("msgsnd %d: %s", i, strerror(errno));
    }
    char ids[64];
    snprintf(ids, sizeof ids, "%d %d\n", id, key);
    write_file("ids", ids);
    ready();
    wait_go();

    for (int i = 0; i < N; i++) {
        ssize_t n = msgrcv(id, &m, sizeof m.text, 0, IPC_NOWAIT);
        if (n < 0) fail("message %d: %s", i, strerror(errno));
        if (n != len_of(i) || m.mtype != type_of(i)) fail("message %d: %zd bytes of type %ld", i, n, m.mtype);
        for (int j = 0; j < n; j++)
            if (m.text[j] != byte_of(i, j)) fail("message %d byte %d", i, j);
    }
    if (msgrcv(id, &m, sizeof m.text, 0, IPC_NOWAIT) >= 0 || errno != ENOMSG) fail("a message too many");
    if (msgget(key, 0) != id) fail("the key names another queue");
    if (msgctl(id, IPC_STAT, &ds) < 0) fail("IPC_STAT after");
    if (ds.msg_qbytes != 8192 || (ds.msg_perm.mode & 0777) != 0620) fail("qbytes or mode");
    msgctl(id, IPC_RMID, NULL);
    pass();
}
