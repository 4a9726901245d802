/*  evr_store.c - the subscription records on disk: snapshot + append log.

    Files in the data directory (all opened relative to a descriptor of
    the directory, so a later chdir does not matter):
    - `lock`: created once, never removed; an flock(LOCK_EX) on it is held
      for the store's lifetime, so two relays never share a directory.
    - `log`: opened O_APPEND. Only this process writes it (the lock), so
      the store tracks its size and can cut a half-written frame back off
      when a write fails part way.
    - `snapshot`: replaced whole by rename(2) during compaction.
    - `snapshot.tmp`: exists only during compaction. One found at open was
      never renamed (a crash before the rename), so it is incomplete and
      is deleted.

    Frame: u32 LE payload length (at most EVR_STORE_MAX_PAYLOAD), u32 LE
    CRC-32 (zlib) of the payload, payload = one packed Evrelay__Record.

    A bad frame in the log (short, oversized, wrong CRC, undecodable) ends
    the log: it is cut off at the end of the last good frame, so appends
    after a crash follow good data. A bad frame in the snapshot is an
    error: a snapshot is only ever renamed into place once complete.
*/
#include "evr_store.h"
#include "evrelay.pb-c.h"

#include <czmq.h>
#include <zlib.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define EVR_STORE_MAX_PAYLOAD (1024 * 1024)
#define FRAME_HEADER 8
#define IO_BUFFER (64 * 1024)
#define COMPACT_MIN_FRAMES 10000

#define LOCK_NAME "lock"
#define LOG_NAME "log"
#define SNAPSHOT_NAME "snapshot"
#define SNAPSHOT_TMP_NAME "snapshot.tmp"

struct _evr_store_t {
    char *dir;          //  as given, for messages
    int dir_fd;         //  the data directory
    int lock_fd;        //  holds the flock
    int log_fd;         //  O_RDWR | O_APPEND
    evr_fsync_t policy; //  when appends reach the disk
    bool loaded;        //  load() succeeded: appends may follow
    bool dirty;         //  appended since the last fsync of the log
    bool broken;        //  a failed append could not be cut back off
    uint64_t log_size;  //  bytes of good frames in the log
    uint8_t *buf;       //  one frame (encode) or payload (decode)
    size_t buf_cap;
    evr_store_stats_t stats;
};

//  What reading one frame found.
typedef enum {
    FRAME_OK = 0, //  a record
    FRAME_END,    //  a clean end of file
    FRAME_BAD,    //  short, oversized, wrong CRC or undecodable
    FRAME_ERROR   //  I/O error or out of memory
} frame_status_t;

//  A buffered sequential reader over a file descriptor (pread, so the
//  descriptor's own offset is left alone).
typedef struct {
    int fd;
    uint8_t *buf;      //  IO_BUFFER bytes
    size_t pos;        //  next unread byte in buf
    size_t len;        //  bytes in buf
    uint64_t next;     //  file offset of the next pread
    uint64_t consumed; //  file offset of buf[pos]
} reader_t;

//  A buffered writer over a file descriptor.
typedef struct {
    int fd;
    uint8_t *buf; //  IO_BUFFER bytes
    size_t len;   //  bytes waiting in buf
} writer_t;

//  Compaction state, shared with the foreach callback.
typedef struct {
    evr_store_t *self;
    writer_t writer;
    uint64_t count; //  records written
    bool failed;    //  stop writing: the compaction fails
} compact_t;

//  The protobuf-c allocator used for decoding: plain malloc, but it
//  remembers a failure, so running out of memory is not taken for a
//  corrupt frame (which would cut the log).
typedef struct {
    bool failed;
} alloc_state_t;

//  --------------------------------------------------------------------------
//  Small helpers

//  Write a formatted reason into err (if any).
static void s_fail(char *err, size_t errlen, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static void s_fail(char *err, size_t errlen, const char *format, ...)
{
    if (!err || errlen == 0)
        return;
    va_list args;
    va_start(args, format);
    vsnprintf(err, errlen, format, args);
    va_end(args);
}

//  Store a u32 little-endian.
static void s_put_u32le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

//  Load a u32 little-endian.
static uint32_t s_get_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

//  CRC-32 (zlib, as in gzip/PNG) of a payload.
static uint32_t s_crc(const uint8_t *data, size_t len)
{
    //  len <= EVR_STORE_MAX_PAYLOAD: fits in uInt.
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), data, (uInt)len);
}

//  Make the store's buffer hold at least size bytes. Returns 0 or -1.
static int s_reserve(evr_store_t *self, size_t size)
{
    if (size <= self->buf_cap)
        return 0;
    size_t cap = self->buf_cap ? self->buf_cap : 1024;
    while (cap < size)
        cap *= 2;
    uint8_t *buf = (uint8_t *)realloc(self->buf, cap);
    if (!buf)
        return -1;
    self->buf = buf;
    self->buf_cap = cap;
    return 0;
}

//  Write all of data, resuming after short writes and EINTR. Returns 0,
//  or -1 with errno set (part of data may have been written).
static int s_write_all(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t rc = write(fd, data, len);
        if (rc == -1) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += rc;
        len -= (size_t)rc;
    }
    return 0;
}

//  fsync a descriptor (fdatasync when data_only), and count it. Returns 0
//  or -1.
static int s_sync_fd(evr_store_t *self, int fd, bool data_only)
{
    int rc = data_only ? fdatasync(fd) : fsync(fd);
    self->stats.fsyncs++;
    return rc;
}

//  fsync the log and mark it clean. Returns 0 or -1 (still dirty).
static int s_sync_log(evr_store_t *self)
{
    if (s_sync_fd(self, self->log_fd, true) == -1) {
        zsys_error("store: cannot fsync %s/" LOG_NAME ": %s", self->dir,
                   strerror(errno));
        return -1;
    }
    self->dirty = false;
    return 0;
}

//  fsync the directory that holds path (after creating path in it).
//  Returns 0 or -1 with errno set.
static int s_sync_parent(evr_store_t *self, const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return -1;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd == -1)
        return -1;
    int rc = s_sync_fd(self, fd, false);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

//  --------------------------------------------------------------------------
//  Frames

//  Encode rec as one frame into the store's buffer. Returns the frame's
//  length, or -1 (a string missing, too large, out of memory).
static ssize_t s_encode(evr_store_t *self, const evr_record_t *rec)
{
    if (!rec->event || !rec->socket || !rec->origin)
        return -1;
    Evrelay__Record msg = EVRELAY__RECORD__INIT;
    //  protobuf-c only reads through these when packing.
    msg.event = (char *)rec->event;
    msg.socket = (char *)rec->socket;
    msg.expire_s = rec->expire_s;
    msg.sub_time_ms = rec->sub_time_ms;
    msg.hlc = rec->hlc;
    msg.origin = (char *)rec->origin;
    msg.has_tombstone = rec->tombstone;
    msg.tombstone = rec->tombstone;
    size_t len = evrelay__record__get_packed_size(&msg);
    if (len > EVR_STORE_MAX_PAYLOAD)
        return -1;
    if (s_reserve(self, FRAME_HEADER + len) == -1)
        return -1;
    uint8_t *payload = self->buf + FRAME_HEADER;
    if (evrelay__record__pack(&msg, payload) != len)
        return -1;
    s_put_u32le(self->buf, (uint32_t)len);
    s_put_u32le(self->buf + 4, s_crc(payload, len));
    return (ssize_t)(FRAME_HEADER + len);
}

//  Copy up to len bytes from the reader into dst. Returns the number
//  copied (less than len only at the end of the file), or -1.
static ssize_t s_reader_read(reader_t *reader, uint8_t *dst, size_t len)
{
    size_t done = 0;
    while (done < len) {
        if (reader->pos == reader->len) {
            ssize_t got =
                pread(reader->fd, reader->buf, IO_BUFFER, (off_t)reader->next);
            if (got == -1) {
                if (errno == EINTR)
                    continue;
                return -1;
            }
            if (got == 0)
                break;
            reader->next += (uint64_t)got;
            reader->pos = 0;
            reader->len = (size_t)got;
        }
        size_t take = reader->len - reader->pos;
        if (take > len - done)
            take = len - done;
        memcpy(dst + done, reader->buf + reader->pos, take);
        reader->pos += take;
        reader->consumed += take;
        done += take;
    }
    return (ssize_t)done;
}

//  protobuf-c allocation through malloc, remembering a failure.
static void *s_pb_alloc(void *data, size_t size)
{
    void *ptr = malloc(size);
    if (!ptr)
        ((alloc_state_t *)data)->failed = true;
    return ptr;
}

//  protobuf-c free.
static void s_pb_free(void *data, void *ptr)
{
    free(ptr);
}

//  Read the next frame. On FRAME_OK *msg_p is a record to free with
//  evrelay__record__free_unpacked(msg, allocator).
static frame_status_t s_read_frame(evr_store_t *self, reader_t *reader,
                                   ProtobufCAllocator *allocator,
                                   Evrelay__Record **msg_p)
{
    uint8_t header[FRAME_HEADER];
    ssize_t got = s_reader_read(reader, header, FRAME_HEADER);
    if (got == -1)
        return FRAME_ERROR;
    if (got == 0)
        return FRAME_END;
    if (got < FRAME_HEADER)
        return FRAME_BAD;
    uint32_t len = s_get_u32le(header);
    uint32_t crc = s_get_u32le(header + 4);
    if (len > EVR_STORE_MAX_PAYLOAD)
        return FRAME_BAD;
    if (s_reserve(self, len) == -1)
        return FRAME_ERROR;
    got = s_reader_read(reader, self->buf, len);
    if (got == -1)
        return FRAME_ERROR;
    if ((size_t)got < len || s_crc(self->buf, len) != crc)
        return FRAME_BAD;
    alloc_state_t *state = (alloc_state_t *)allocator->allocator_data;
    state->failed = false;
    Evrelay__Record *msg = evrelay__record__unpack(allocator, len, self->buf);
    if (!msg)
        return state->failed ? FRAME_ERROR : FRAME_BAD;
    //  Required fields: protobuf-c checks presence; be sure anyway.
    if (!msg->event || !msg->socket || !msg->origin) {
        evrelay__record__free_unpacked(msg, allocator);
        return FRAME_BAD;
    }
    *msg_p = msg;
    return FRAME_OK;
}

//  Hand a decoded record to fn as a view (match_key left to the caller).
static void s_deliver(const Evrelay__Record *msg, evr_repl_record_fn *fn,
                      void *arg)
{
    if (!fn)
        return;
    evr_record_t rec = {
        .event = msg->event,
        .socket = msg->socket,
        .match_key = NULL,
        .expire_s = msg->expire_s,
        .sub_time_ms = msg->sub_time_ms,
        .hlc = msg->hlc,
        .origin = msg->origin,
        .tombstone = msg->has_tombstone && msg->tombstone,
    };
    fn(&rec, arg);
}

//  Read every frame of one file. A bad frame ends the read with
//  FRAME_BAD (*good_end = the offset where it starts); otherwise FRAME_END
//  or FRAME_ERROR. *count is the number of records delivered.
static frame_status_t s_read_file(evr_store_t *self, int fd,
                                  evr_repl_record_fn *fn, void *arg,
                                  uint64_t *count, uint64_t *good_end)
{
    reader_t reader = {.fd = fd};
    reader.buf = (uint8_t *)malloc(IO_BUFFER);
    if (!reader.buf)
        return FRAME_ERROR;
    alloc_state_t state = {false};
    ProtobufCAllocator allocator = {s_pb_alloc, s_pb_free, &state};
    frame_status_t status;
    *count = 0;
    *good_end = 0;
    while (true) {
        Evrelay__Record *msg = NULL;
        status = s_read_frame(self, &reader, &allocator, &msg);
        if (status != FRAME_OK)
            break;
        s_deliver(msg, fn, arg);
        evrelay__record__free_unpacked(msg, &allocator);
        (*count)++;
        *good_end = reader.consumed;
    }
    free(reader.buf);
    return status;
}

//  --------------------------------------------------------------------------
//  Compaction writer

//  Write out what the writer holds. Returns 0 or -1.
static int s_writer_flush(writer_t *writer)
{
    if (s_write_all(writer->fd, writer->buf, writer->len) == -1)
        return -1;
    writer->len = 0;
    return 0;
}

//  Add bytes to the writer. Returns 0 or -1.
static int s_writer_put(writer_t *writer, const uint8_t *data, size_t len)
{
    if (writer->len + len > IO_BUFFER && s_writer_flush(writer) == -1)
        return -1;
    if (len > IO_BUFFER)
        return s_write_all(writer->fd, data, len);
    memcpy(writer->buf + writer->len, data, len);
    writer->len += len;
    return 0;
}

//  evr_repl_foreach callback: one record into the new snapshot.
static void s_compact_record(const evr_record_t *rec, void *arg)
{
    compact_t *compact = (compact_t *)arg;
    if (compact->failed)
        return;
    ssize_t len = s_encode(compact->self, rec);
    if (len == -1) {
        zsys_error("store: cannot encode a record of event '%s' for the "
                   "snapshot",
                   rec->event ? rec->event : "(null)");
        compact->failed = true;
        return;
    }
    if (s_writer_put(&compact->writer, compact->self->buf, (size_t)len) == -1) {
        zsys_error("store: cannot write %s/" SNAPSHOT_TMP_NAME ": %s",
                   compact->self->dir, strerror(errno));
        compact->failed = true;
        return;
    }
    compact->count++;
}

//  Write every record of repl to snapshot.tmp and fsync it. Returns the
//  number of records, or -1 (snapshot.tmp removed then).
static long s_write_snapshot(evr_store_t *self, const evr_repl_t *repl)
{
    int fd = openat(self->dir_fd, SNAPSHOT_TMP_NAME,
                    O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd == -1) {
        zsys_error("store: cannot create %s/" SNAPSHOT_TMP_NAME ": %s",
                   self->dir, strerror(errno));
        return -1;
    }
    compact_t compact = {.self = self, .writer = {.fd = fd}};
    compact.writer.buf = (uint8_t *)malloc(IO_BUFFER);
    if (!compact.writer.buf) {
        zsys_error("store: out of memory");
        compact.failed = true;
    } else
        evr_repl_foreach(repl, s_compact_record, &compact);
    if (!compact.failed && (s_writer_flush(&compact.writer) == -1 ||
                            s_sync_fd(self, fd, false) == -1)) {
        zsys_error("store: cannot write %s/" SNAPSHOT_TMP_NAME ": %s",
                   self->dir, strerror(errno));
        compact.failed = true;
    }
    free(compact.writer.buf);
    if (close(fd) == -1 && !compact.failed) {
        zsys_error("store: cannot close %s/" SNAPSHOT_TMP_NAME ": %s",
                   self->dir, strerror(errno));
        compact.failed = true;
    }
    if (compact.failed) {
        unlinkat(self->dir_fd, SNAPSHOT_TMP_NAME, 0);
        return -1;
    }
    return (long)compact.count;
}

//  --------------------------------------------------------------------------
//  Open (creating it if needed) the data directory. NULL with a reason in
//  err on failure.

evr_store_t *evr_store_open(const char *dir, evr_fsync_t policy, char *err,
                            size_t errlen)
{
    assert(dir);
    evr_store_t *self = (evr_store_t *)calloc(1, sizeof(evr_store_t));
    if (!self || !(self->dir = strdup(dir))) {
        s_fail(err, errlen, "out of memory");
        free(self);
        return NULL;
    }
    self->dir_fd = self->lock_fd = self->log_fd = -1;
    self->policy = policy;

    bool created = false;
    if (mkdir(dir, 0700) == 0)
        created = true;
    else if (errno != EEXIST) {
        s_fail(err, errlen, "cannot create data dir %s: %s", dir,
               strerror(errno));
        goto failed;
    }
    self->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (self->dir_fd == -1) {
        s_fail(err, errlen, "cannot open data dir %s: %s", dir,
               strerror(errno));
        goto failed;
    }
    self->lock_fd =
        openat(self->dir_fd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (self->lock_fd == -1) {
        s_fail(err, errlen, "cannot open %s/" LOCK_NAME ": %s", dir,
               strerror(errno));
        goto failed;
    }
    if (flock(self->lock_fd, LOCK_EX | LOCK_NB) == -1) {
        if (errno == EWOULDBLOCK)
            s_fail(err, errlen, "data dir %s is used by another relay", dir);
        else
            s_fail(err, errlen, "cannot lock %s/" LOCK_NAME ": %s", dir,
                   strerror(errno));
        goto failed;
    }
    //  Compaction creates and renames files: fail now, not at the first
    //  compaction, if the directory is not writable.
    if (faccessat(self->dir_fd, ".", W_OK, AT_EACCESS) == -1) {
        s_fail(err, errlen, "data dir %s is not writable: %s", dir,
               strerror(errno));
        goto failed;
    }
    //  Only ours now: a leftover was never renamed, so it is incomplete.
    if (unlinkat(self->dir_fd, SNAPSHOT_TMP_NAME, 0) == -1 && errno != ENOENT) {
        s_fail(err, errlen, "cannot remove %s/" SNAPSHOT_TMP_NAME ": %s", dir,
               strerror(errno));
        goto failed;
    }
    self->log_fd = openat(self->dir_fd, LOG_NAME,
                          O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (self->log_fd == -1) {
        s_fail(err, errlen, "cannot open %s/" LOG_NAME ": %s", dir,
               strerror(errno));
        goto failed;
    }
    //  Make the new names durable before anything relies on them.
    if (s_sync_fd(self, self->dir_fd, false) == -1 ||
        (created && s_sync_parent(self, dir) == -1)) {
        s_fail(err, errlen, "cannot fsync data dir %s: %s", dir,
               strerror(errno));
        goto failed;
    }
    return self;

failed:
    evr_store_destroy(&self);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Close and NULL the pointer (flushes first; releases the lock).

void evr_store_destroy(evr_store_t **self_p)
{
    assert(self_p);
    evr_store_t *self = *self_p;
    if (!self)
        return;
    if (self->log_fd != -1) {
        evr_store_flush(self);
        close(self->log_fd);
    }
    if (self->lock_fd != -1)
        close(self->lock_fd);
    if (self->dir_fd != -1)
        close(self->dir_fd);
    free(self->buf);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Read every record (snapshot, then log) and hand each to fn (may be
//  NULL: just count). A bad frame in the log cuts the log there. Returns
//  the number read, or -1 (I/O error, corrupt snapshot, called twice).

long evr_store_load(evr_store_t *self, evr_repl_record_fn *fn, void *arg)
{
    assert(self);
    if (self->loaded)
        return -1;
    uint64_t snapshot_count = 0;
    uint64_t good_end = 0;
    int fd = openat(self->dir_fd, SNAPSHOT_NAME, O_RDONLY | O_CLOEXEC);
    if (fd == -1 && errno != ENOENT) {
        zsys_error("store: cannot open %s/" SNAPSHOT_NAME ": %s", self->dir,
                   strerror(errno));
        return -1;
    }
    if (fd != -1) {
        frame_status_t status =
            s_read_file(self, fd, fn, arg, &snapshot_count, &good_end);
        int saved = errno;
        close(fd);
        if (status == FRAME_BAD) {
            zsys_error("store: %s/" SNAPSHOT_NAME " is corrupt at offset %llu",
                       self->dir, (unsigned long long)good_end);
            return -1;
        }
        if (status == FRAME_ERROR) {
            zsys_error("store: cannot read %s/" SNAPSHOT_NAME ": %s", self->dir,
                       strerror(saved));
            return -1;
        }
    }

    uint64_t log_count = 0;
    frame_status_t status =
        s_read_file(self, self->log_fd, fn, arg, &log_count, &good_end);
    if (status == FRAME_ERROR) {
        zsys_error("store: cannot read %s/" LOG_NAME ": %s", self->dir,
                   strerror(errno));
        return -1;
    }
    if (status == FRAME_BAD) {
        struct stat st;
        long long size = fstat(self->log_fd, &st) == 0 ? st.st_size : -1;
        zsys_warning("store: cutting a torn or corrupt frame off %s/" LOG_NAME
                     " at offset %llu (file size %lld)",
                     self->dir, (unsigned long long)good_end, size);
        if (ftruncate(self->log_fd, (off_t)good_end) == -1 ||
            s_sync_fd(self, self->log_fd, false) == -1) {
            zsys_error("store: cannot truncate %s/" LOG_NAME ": %s", self->dir,
                       strerror(errno));
            return -1;
        }
        self->stats.torn++;
    }
    self->log_size = good_end;
    self->stats.snapshot_records = snapshot_count;
    self->stats.log_frames = log_count;
    self->loaded = true;
    return (long)(snapshot_count + log_count);
}

//  --------------------------------------------------------------------------
//  Append a record to the log (after load). Returns 0 or -1. A write that
//  fails part way is cut back off, so the log never holds a torn frame
//  before good ones.

int evr_store_append(evr_store_t *self, const evr_record_t *rec)
{
    assert(self);
    assert(rec);
    if (!self->loaded || self->broken)
        return -1;
    ssize_t len = s_encode(self, rec);
    if (len == -1)
        return -1;
    if (s_write_all(self->log_fd, self->buf, (size_t)len) == -1) {
        int saved = errno;
        if (ftruncate(self->log_fd, (off_t)self->log_size) == -1) {
            zsys_error("store: cannot cut a failed append off %s/" LOG_NAME
                       ": %s",
                       self->dir, strerror(errno));
            self->broken = true;
        }
        zsys_error("store: cannot append to %s/" LOG_NAME ": %s", self->dir,
                   strerror(saved));
        return -1;
    }
    self->log_size += (uint64_t)len;
    self->stats.appended++;
    self->stats.log_frames++;
    if (self->policy == EVR_FSYNC_ALWAYS) {
        self->dirty = true;
        return s_sync_log(self);
    }
    if (self->policy == EVR_FSYNC_BATCH)
        self->dirty = true;
    return 0;
}

//  --------------------------------------------------------------------------
//  fsync the log if anything was appended since the last fsync.

int evr_store_flush(evr_store_t *self)
{
    assert(self);
    if (!self->dirty)
        return 0;
    return s_sync_log(self);
}

//  --------------------------------------------------------------------------
//  Whether the log holds more than max(10000, 2 x the last snapshot's
//  records) frames.

bool evr_store_wants_compaction(const evr_store_t *self)
{
    assert(self);
    uint64_t limit = 2 * self->stats.snapshot_records;
    if (limit < COMPACT_MIN_FRAMES)
        limit = COMPACT_MIN_FRAMES;
    return self->stats.log_frames > limit;
}

//  --------------------------------------------------------------------------
//  Replace the snapshot with every record of repl, and empty the log
//  (after load). Returns 0 or -1. A crash or failure at any step leaves
//  the old snapshot + log, or the new snapshot + (part of) the old log,
//  which merge to the same records.

int evr_store_compact(evr_store_t *self, const evr_repl_t *repl)
{
    assert(self);
    assert(repl);
    if (!self->loaded)
        return -1;
    long count = s_write_snapshot(self, repl);
    if (count == -1)
        return -1;
    if (renameat(self->dir_fd, SNAPSHOT_TMP_NAME, self->dir_fd,
                 SNAPSHOT_NAME) == -1) {
        zsys_error("store: cannot rename %s/" SNAPSHOT_TMP_NAME ": %s",
                   self->dir, strerror(errno));
        unlinkat(self->dir_fd, SNAPSHOT_TMP_NAME, 0);
        return -1;
    }
    self->stats.snapshot_records = (uint64_t)count;
    //  The log may only go once the rename is durable.
    if (s_sync_fd(self, self->dir_fd, false) == -1) {
        zsys_error("store: cannot fsync data dir %s: %s", self->dir,
                   strerror(errno));
        return -1;
    }
    if (ftruncate(self->log_fd, 0) == -1) {
        zsys_error("store: cannot truncate %s/" LOG_NAME ": %s", self->dir,
                   strerror(errno));
        return -1;
    }
    self->log_size = 0;
    self->stats.log_frames = 0;
    self->broken = false;
    self->dirty = true;
    if (s_sync_log(self) == -1)
        return -1;
    self->stats.compactions++;
    return 0;
}

//  --------------------------------------------------------------------------
//  Copy the counters. fsyncs counts every fsync/fdatasync the store
//  issues (log, snapshot, directory); log_frames and snapshot_records
//  describe what is on disk now.

void evr_store_stats(const evr_store_t *self, evr_store_stats_t *stats)
{
    assert(self);
    assert(stats);
    *stats = self->stats;
}
