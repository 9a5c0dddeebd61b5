/* Preloaded (LD_PRELOAD) by the store's test of a slow disk: fsync and
 * fdatasync sleep SLOW_SYNC_US microseconds (default 20,000) instead of
 * syncing, as on a busy CI machine's disk. */
#include <stdlib.h>
#include <unistd.h>

static void slow(void) {
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
