/* Preloaded (LD_PRELOAD) by the store's test of a slow disk: fsync and
 * fdatasync sleep SLOW_SYNC_US microseconds (default 20,000) instead of
 * syncing, as on a busy CI machine's disk. The first call creates the file
 * SLOW_SYNC_MARK, so the test knows the shim was in effect. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static void slow(void) {
    static int marked = 0;
    const char *mark = getenv("SLOW_SYNC_MARK");
    if (!marked && mark) {
        int fd = open(mark, O_CREAT | O_WRONLY, 0644);
        if (fd >= 0) close(fd);
        marked = 1;
    }
    const char *us = getenv("SLOW_SYNC_US");
    usleep(us ? (useconds_t)atoi(us) : 20000);
}

int fsync(int fd) {
    (void)fd;
    slow();
    return 0;
}

int fdatasync(int fd) {
    (void)fd;
    slow();
    return 0;
}
