/*  evr_tr_flatstore.c - flatstore: targets (OpenSIPS event_flatstore).

    Whole lines go out with writev() on an O_APPEND descriptor, so lines
    from several targets sharing a file never tear. A rotation request
    (evrelayctl flatstore-rotate PATH, or SIGHUP for every file) makes the
    worker reopen the path before its next write: logrotate moves the file,
    then asks for the rotation. A line counts as delivered once written.
*/
#include "evr_transport.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define BATCH_MAX 64

typedef struct {
    int fd;
    int generation; //  the reopen generation the fd belongs to
} s_state_t;

//  Open (or reopen) the file. Returns 0 or -1 with err.
static int s_open_file(evr_target_t *t, s_state_t *st, char *err, size_t errlen)
{
    const char *path = evr_sockspec_path(evr_target_spec(t));
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                  (mode_t)evr_target_opts(t)->file_mode);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        close(fd);
        snprintf(err, errlen, "'%s' is a directory", path);
        return -1;
    }
    if (st->fd >= 0)
        close(st->fd);
    st->fd = fd;
    return 0;
}

//  The directory must exist, as event_flatstore requires. 0 or -1.
static int s_check_dir(const char *path, char *err, size_t errlen)
{
    char *dir = strdup(path);
    if (!dir)
        return -1;
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = 0;
    else if (slash)
        *slash = 0;
    struct stat sb;
    int rc = 0;
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "flatstore: directory '%s' does not exist", dir);
        rc = -1;
    }
    free(dir);
    return rc;
}

//  Open the file now, so a bad path is refused at subscribe time.
static int s_open(evr_target_t *t, char *err, size_t errlen)
{
    if (s_check_dir(evr_sockspec_path(evr_target_spec(t)), err, errlen))
        return -1;
    s_state_t *st = calloc(1, sizeof *st);
    if (!st)
        return -1;
    st->fd = -1;
    st->generation = evr_target_reopen_generation(t);
    evr_target_set_state(t, st);
    return s_open_file(t, st, err, errlen);
}

//  Free the state.
static void s_close(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    if (!st)
        return;
    if (st->fd >= 0)
        close(st->fd);
    free(st);
}

//  Reopen if asked, then write whole lines.
static void s_flush(evr_target_t *t, int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    int generation = evr_target_reopen_generation(t);
    if (generation != st->generation) {
        char err[256];
        st->generation = generation;
        //  on failure the old descriptor stays: lines keep going somewhere
        s_open_file(t, st, err, sizeof err);
    }
    struct iovec iov[BATCH_MAX];
    while (evr_target_queued(t)) {
        size_t n = evr_target_queued(t);
        if (n > BATCH_MAX)
            n = BATCH_MAX;
        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
            evr_msg_t *msg = evr_target_peek(t, i)->msg;
            iov[i].iov_base = msg->data;
            iov[i].iov_len = msg->len;
            total += msg->len;
        }
        ssize_t rc = writev(st->fd, iov, (int)n);
        if (rc < 0 && errno == EINTR)
            continue;
        //  A short or failed write of a local file (disk full, I/O error)
        //  fails the batch rather than retrying forever.
        evr_target_complete_front(t, n, rc == (ssize_t)total);
    }
}

const evr_transport_ops_t evr_tr_flatstore = {
    .name = "flatstore",
    .open = s_open,
    .close = s_close,
    .flush = s_flush,
};
