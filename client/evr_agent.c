/*  evr_agent.c - evrelay-agent, the sidecar of an unmodified OpenSIPS.

    evrelay-agent [--udp ADDR:PORT]... [--unix PATH]... [--tcp ADDR:PORT]...
                  [--kamailio ADDR:PORT]... [--relay ENDPOINTS]
                  [--ack accepted|delivered] ...

    OpenSIPS subscribes the agent's sockets to its events like any other
    subscriber (event_datagram udp:/unix:, event_stream tcp:). The agent
    parses what arrives (evr_agent_parse) and raises each event into the
    relays through libevrelay, which batches, resends and never blocks.

    - Datagrams (UDP, unix): one event per datagram, JSON-RPC (OpenSIPS
      3.1+) or legacy text (<= 3.0). Raised with evr_raise; nothing goes
      back to OpenSIPS.
    - event_stream (TCP): JSON-RPC objects back to back. A notification is
      raised with evr_raise. A request (reliable_mode=1, with an "id") is
      raised with evr_raise_cb and answered only when libevrelay reports its
      outcome: a "result" once a relay acked it at the ack point, an "error"
      when it failed, was refused or was dropped. OpenSIPS's event_virtual
      FAILOVER then moves to the next agent on an error or a timeout.
    - Kamailio evapi (an outgoing TCP connection, reconnected with
      back-off): each evapi_relay() message, a netstring, is taken like a
      datagram. evapi has no replies.

    One thread runs everything with epoll: the listening and datagram
    sockets, the connections, a signalfd, and an eventfd through which
    libevrelay's thread hands over outcomes. The outcome callback only
    appends to a mutex-protected list and pokes the eventfd; the replies
    are written by the main loop, never by the callback.

    Malformed input is counted per input and reason, logged at a bounded
    rate, and skipped; a stream that cannot be resynchronised (not JSON at
    the top level, an object over the buffer bound) is closed.

    SIGTERM/SIGINT: stop reading, wait (bounded) until libevrelay has every
    event acked, write the replies that came back, exit 0. SIGUSR1 and
    --stats-interval print the counters as one JSON line on stderr; they
    are printed at exit too.
*/

#define _GNU_SOURCE //  accept4
#include "evrelay.h"
#include "evr_agent_parse.h"
#include "evr_defaults.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

//  Inputs used when none is given: OpenSIPS's event sockets on loopback
//  (the ports of docs/OPERATIONS.md's opensips.cfg example).
#define S_DEFAULT_UDP "127.0.0.1:9777"
#define S_DEFAULT_TCP "127.0.0.1:9778"

//  The largest datagram taken: a UDP payload's maximum. OpenSIPS sends at
//  most about 65457 bytes; anything bigger is counted too_large.
#define S_MAX_DATAGRAM 65535

//  Receive buffer asked for on datagram sockets (the kernel caps it at
//  net.core.rmem_max): absorbs a burst of events while the agent is busy.
#define S_RCVBUF (4 * 1024 * 1024)

//  Bytes a stream connection may buffer for one incomplete object: far
//  above any event OpenSIPS sends (datagram-sized), small enough that a
//  peer sending garbage without end costs little. Over it: closed.
#define S_MAX_STREAM_BYTES (1024 * 1024)

//  First size of a connection's read buffer; it doubles up to the bound.
#define S_STREAM_CHUNK 65536

//  Reply bytes a connection may have unwritten; a peer that does not read
//  its replies is closed past this.
#define S_MAX_REPLY_BYTES (4 * 1024 * 1024)

//  Open connections per agent; more are accepted and closed at once.
#define S_MAX_CONNECTIONS 1024

//  Datagrams read per socket per wakeup, so one busy socket does not
//  starve the others.
#define S_DGRAM_BURST 256

//  Malformed-input log lines per window; the rest are counted only.
#define S_LOG_BURST 10
#define S_LOG_WINDOW_MS 1000

//  How long a stop waits for libevrelay to have every event acked, ms.
#define S_DEFAULT_FLUSH_MS 5000

//  After that, how long the last replies may take to be written, ms.
#define S_REPLY_DRAIN_MS 500

//  Bytes of a malformed input quoted in its log line.
#define S_LOG_QUOTE 48

//  JSON-RPC error code of a reply for an event that was not delivered
//  (implementation-defined server error range).
#define S_ERR_NOT_DELIVERED -32000

typedef enum { S_UDP, S_UNIX, S_TCP, S_KAMAILIO } s_kind_t;

//  The state of a Kamailio evapi connection.
typedef enum { S_KAM_IDLE, S_KAM_CONNECTING, S_KAM_CONNECTED } s_kam_state_t;

//  What an epoll entry points at.
typedef enum { S_H_INPUT, S_H_CONN, S_H_SIGNAL, S_H_OUTCOMES } s_htype_t;

typedef struct {
    s_htype_t type;
} s_handle_t;

//  One input socket (datagram, or TCP listener) and its counters.
typedef struct {
    s_handle_t handle;
    s_kind_t kind;
    char *addr; //  as given on the command line
    char *name; //  "udp:127.0.0.1:9777", with the bound port
    int fd;
    bool unlink_path; //  unix: we created the socket file
    uint64_t received;
    uint64_t raised;
    uint64_t rejected; //  refused by libevrelay (too large, stopping)
    uint64_t malformed[EVR_AGENT_RC_COUNT];
    //  TCP only
    uint64_t requests; //  objects with an id
    uint64_t accepted;
    uint64_t refused; //  over S_MAX_CONNECTIONS
    uint64_t closed;
    uint64_t replies_ok;
    uint64_t replies_error;
    uint64_t replies_dropped; //  the connection was gone
    size_t open;
    //  Kamailio evapi only: an outgoing connection, reconnected with back-off
    s_kam_state_t kam_state;
    struct sockaddr_storage peer;
    socklen_t peer_len;
    int64_t retry_at; //  next connect attempt (monotonic ms), 0 = none
    int backoff_ms;
    bool kam_failing; //  the current failure was logged
    char *in;         //  bytes read, not yet a whole netstring
    size_t in_len, in_cap;
    uint64_t connects;
    uint64_t disconnects;
} s_input_t;

//  One event_stream connection.
typedef struct {
    s_handle_t handle;
    uint64_t id; //  never reused: outcomes find their connection by it
    int fd;
    s_input_t *input;
    char *in; //  bytes read, not yet parsed
    size_t in_len, in_cap;
    evr_agent_framer_t framer;
    char *out; //  replies not yet written
    size_t out_len, out_cap;
    bool reading;  //  EPOLLIN wanted
    bool writing;  //  EPOLLOUT registered
    bool dead;     //  closed; freed at the end of the loop iteration
    char peer[64]; //  for logs
} s_conn_t;

typedef struct s_outcome_t s_outcome_t;

//  A reliable-mode request between evr_raise_cb and its reply: allocated
//  by the main loop, handed to libevrelay as the callback's argument,
//  queued back by the callback, freed by the main loop.
struct s_outcome_t {
    s_outcome_t *next;
    struct s_agent_t *agent;
    uint64_t conn_id;
    s_input_t *input;
    evr_done_t outcome;
    size_t id_len;
    char id[]; //  the request's "id" JSON text
};

typedef struct s_agent_t {
    //  settings
    const char *relay;
    const char *cert;       //  CURVE: our secret certificate, or NULL
    const char *server_key; //  CURVE: the relays' public keys
    evr_ack_point_t ack_point;
    int stats_interval_ms; //  0 = only on SIGUSR1 and at exit
    int flush_ms;
    int unix_mode; //  -1 = leave as umask made it
    bool verbose;
    evr_agent_parse_opts_t parse_opts;

    evr_client_t *client;
    evr_agent_parser_t *dgram_parser;
    evr_agent_parser_t *stream_parser;
    int epfd;
    s_handle_t signal_handle;
    int sigfd;
    s_handle_t outcomes_handle;
    int outfd; //  eventfd poked by the outcome callback
    s_input_t **inputs;
    size_t ninputs;
    s_conn_t **conns;
    size_t nconns;
    s_conn_t **graveyard; //  closed this iteration, freed after it
    size_t ngraveyard, graveyard_cap;
    uint64_t next_conn_id;
    char *dgram; //  datagram receive buffer

    //  outcomes from libevrelay's thread
    pthread_mutex_t lock;
    s_outcome_t *head, *tail;

    //  logging of malformed input
    int64_t log_window_start;
    int log_count;
    uint64_t log_suppressed;

    int64_t started_ms;
    bool stopping;
    evr_client_stats_t last_client_stats; //  taken before the client goes
} s_agent_t;

//  --------------------------------------------------------------------------
//  Monotonic clock, milliseconds.

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  --------------------------------------------------------------------------
//  Log one line on stderr, as czmq's zsys does: "I: (evrelay-agent)
//  YY-MM-DD HH:MM:SS message". level is 'I', 'W' or 'E'.

static void s_log(char level, const char *format, ...)
{
    time_t now = time(NULL);
    struct tm tm;
    char stamp[32];
    localtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%y-%m-%d %H:%M:%S", &tm);
    char line[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof(line), format, args);
    va_end(args);
    fprintf(stderr, "%c: (evrelay-agent) %s %s\n", level, stamp, line);
}

//  --------------------------------------------------------------------------
//  Write s to stream as a JSON string literal.

static void s_json_string(FILE *stream, const char *s)
{
    fputc('"', stream);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(stream, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(stream, "\\u%04x", *p);
        else
            fputc(*p, stream);
    }
    fputc('"', stream);
}

//  --------------------------------------------------------------------------
//  Quote up to S_LOG_QUOTE bytes of data for a log line: printable ASCII
//  as it is, other bytes as \xNN, "..." when cut.

static void s_quote(char *out, size_t out_size, const char *data, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && i < S_LOG_QUOTE && n + 5 < out_size; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[n++] = (char)c;
        else
            n += (size_t)snprintf(out + n, out_size - n, "\\x%02x", c);
    }
    if (len > S_LOG_QUOTE && n + 4 < out_size) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

//  --------------------------------------------------------------------------
//  Count one malformed input and log it, at most S_LOG_BURST lines per
//  S_LOG_WINDOW_MS; lines over that are counted and reported once the
//  window has passed.

static void s_malformed(s_agent_t *self, s_input_t *input, evr_agent_rc_t rc,
                        const char *data, size_t len)
{
    if (rc >= EVR_AGENT_RC_COUNT)
        rc = EVR_AGENT_BAD_JSON;
    input->malformed[rc]++;
    int64_t now = s_now_ms();
    if (now - self->log_window_start >= S_LOG_WINDOW_MS) {
        if (self->log_suppressed)
            s_log('W', "%" PRIu64 " more malformed inputs were not logged",
                  self->log_suppressed);
        self->log_window_start = now;
        self->log_count = 0;
        self->log_suppressed = 0;
    }
    if (self->log_count >= S_LOG_BURST) {
        self->log_suppressed++;
        return;
    }
    self->log_count++;
    char quoted[S_LOG_QUOTE * 4 + 8];
    s_quote(quoted, sizeof(quoted), data, len);
    s_log('W', "%s: malformed input (%s, %zu bytes): %s", input->name,
          evr_agent_rc_name(rc), len, quoted);
}

//  --------------------------------------------------------------------------
//  Build the libevrelay event for a parsed message. NULL when libevrelay
//  refuses it (cannot happen for what the parser accepts, short of memory).

static evr_event_t *s_event_from(const evr_agent_msg_t *msg)
{
    evr_event_t *event = evr_event_new(msg->event.name);
    if (!event)
        return NULL;
    for (size_t i = 0; i < msg->event.nparams; i++) {
        const evr_param_t *param = &msg->event.params[i];
        int rc;
        if (param->type == EVR_PARAM_INT)
            rc = evr_event_add_int(event, param->name, param->i);
        else if (param->type == EVR_PARAM_STR)
            rc = evr_event_add_strn(event, param->name, param->s, param->s_len);
        else
            rc = evr_event_add_str(event, param->name, NULL);
        if (rc) {
            evr_event_destroy(&event);
            return NULL;
        }
    }
    return event;
}

//  ==========================================================================
//  Outcomes: libevrelay's thread -> the main loop

//  --------------------------------------------------------------------------
//  The evr_raise_cb callback: queue the outcome for the main loop and poke
//  it. Runs in libevrelay's thread (or in ours when the raise failed); it
//  touches nothing but the queue and the eventfd.

static void s_on_done(void *arg, evr_done_t outcome)
{
    s_outcome_t *item = arg;
    s_agent_t *self = item->agent;
    item->outcome = outcome;
    item->next = NULL;
    pthread_mutex_lock(&self->lock);
    if (self->tail)
        self->tail->next = item;
    else
        self->head = item;
    self->tail = item;
    pthread_mutex_unlock(&self->lock);
    uint64_t one = 1;
    ssize_t rc = write(self->outfd, &one, sizeof(one));
    (void)rc; //  EAGAIN: the counter is already non-zero
}

//  ==========================================================================
//  Connections

//  --------------------------------------------------------------------------
//  Register the epoll events the connection needs now: EPOLLIN while it
//  reads, EPOLLOUT while replies wait.

static void s_conn_watch(s_agent_t *self, s_conn_t *conn)
{
    struct epoll_event ev = {.data.ptr = conn};
    ev.events = (conn->reading ? EPOLLIN : 0) |
                (conn->out_len ? (uint32_t)EPOLLOUT : 0);
    conn->writing = conn->out_len > 0;
    epoll_ctl(self->epfd, EPOLL_CTL_MOD, conn->fd, &ev);
}

//  --------------------------------------------------------------------------
//  Close a connection: its unanswered requests' replies will be dropped
//  when their outcomes come. The memory is freed after the loop iteration
//  (an event of this iteration may still point at it).

static void s_conn_close(s_agent_t *self, s_conn_t *conn, const char *why)
{
    if (conn->dead)
        return;
    if (self->verbose)
        s_log('I', "%s: connection from %s closed (%s)", conn->input->name,
              conn->peer, why);
    epoll_ctl(self->epfd, EPOLL_CTL_DEL, conn->fd, NULL);
    close(conn->fd);
    conn->fd = -1;
    conn->dead = true;
    conn->input->closed++;
    conn->input->open--;
    for (size_t i = 0; i < self->nconns; i++) {
        if (self->conns[i] == conn) {
            self->conns[i] = self->conns[--self->nconns];
            break;
        }
    }
    if (self->ngraveyard == self->graveyard_cap) {
        size_t cap = self->graveyard_cap ? self->graveyard_cap * 2 : 16;
        s_conn_t **grown = realloc(self->graveyard, cap * sizeof(*grown));
        if (!grown) {
            //  cannot defer: free now (no later event of this iteration
            //  can be for it unless epoll reported it twice, which a
            //  closed descriptor's entries are not)
            free(conn->in);
            free(conn->out);
            free(conn);
            return;
        }
        self->graveyard = grown;
        self->graveyard_cap = cap;
    }
    self->graveyard[self->ngraveyard++] = conn;
}

//  --------------------------------------------------------------------------
//  Free the connections closed during this loop iteration.

static void s_bury(s_agent_t *self)
{
    for (size_t i = 0; i < self->ngraveyard; i++) {
        free(self->graveyard[i]->in);
        free(self->graveyard[i]->out);
        free(self->graveyard[i]);
    }
    self->ngraveyard = 0;
}

//  --------------------------------------------------------------------------
//  Write as much of the connection's replies as the socket takes. Returns
//  0, or -1 when the connection was closed.

static int s_conn_flush(s_agent_t *self, s_conn_t *conn)
{
    size_t done = 0;
    while (done < conn->out_len) {
        ssize_t n = send(conn->fd, conn->out + done, conn->out_len - done,
                         MSG_NOSIGNAL);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        s_conn_close(self, conn, n < 0 ? strerror(errno) : "write failed");
        return -1;
    }
    memmove(conn->out, conn->out + done, conn->out_len - done);
    conn->out_len -= done;
    if ((conn->out_len > 0) != conn->writing)
        s_conn_watch(self, conn);
    return 0;
}

//  --------------------------------------------------------------------------
//  Queue one reply on the connection and try to write it. Returns 0, or -1
//  when the connection was closed (out of memory, or too much unread).

static int s_conn_reply(s_agent_t *self, s_conn_t *conn, const char *reply,
                        size_t len)
{
    if (conn->out_len + len > S_MAX_REPLY_BYTES) {
        s_conn_close(self, conn, "peer does not read its replies");
        return -1;
    }
    if (conn->out_len + len > conn->out_cap) {
        size_t cap = conn->out_cap ? conn->out_cap : 4096;
        while (cap < conn->out_len + len)
            cap *= 2;
        char *grown = realloc(conn->out, cap);
        if (!grown) {
            s_conn_close(self, conn, "out of memory");
            return -1;
        }
        conn->out = grown;
        conn->out_cap = cap;
    }
    memcpy(conn->out + conn->out_len, reply, len);
    conn->out_len += len;
    return s_conn_flush(self, conn);
}

//  --------------------------------------------------------------------------
//  Format the JSON-RPC reply to request id (its JSON text): a result "OK"
//  when code is 0, else an error with code and message. Returns the length,
//  or 0 when it does not fit.

static size_t s_format_reply(char *out, size_t size, const char *id,
                             size_t id_len, int code, const char *message)
{
    int n;
    if (code == 0)
        n = snprintf(out, size,
                     "{\"jsonrpc\":\"2.0\",\"result\":\"OK\","
                     "\"id\":%.*s}",
                     (int)id_len, id);
    else
        n = snprintf(out, size,
                     "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":%d,"
                     "\"message\":\"%s\"},\"id\":%.*s}",
                     code, message, (int)id_len, id);
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

//  --------------------------------------------------------------------------
//  Answer a request right away with an error (it was malformed). The id is
//  the parser's, so at most a datagram's worth of text.

static void s_conn_error(s_agent_t *self, s_conn_t *conn,
                         const evr_agent_msg_t *msg, int code,
                         const char *message)
{
    size_t size = msg->id_len + 128;
    char *reply = malloc(size);
    if (!reply)
        return;
    size_t len =
        s_format_reply(reply, size, msg->id, msg->id_len, code, message);
    if (len && s_conn_reply(self, conn, reply, len) == 0)
        conn->input->replies_error++;
    free(reply);
}

//  --------------------------------------------------------------------------
//  Raise one object read from a connection: a notification with evr_raise,
//  a request with evr_raise_cb (its reply comes with the outcome).

static void s_conn_event(s_agent_t *self, s_conn_t *conn, const char *data,
                         size_t len)
{
    s_input_t *input = conn->input;
    input->received++;
    evr_agent_msg_t msg;
    evr_agent_rc_t rc =
        evr_agent_parse_jsonrpc(self->stream_parser, data, len, &msg);
    if (rc != EVR_AGENT_OK) {
        s_malformed(self, input, rc, data, len);
        //  a request whose id we can echo gets its error reply
        if (msg.id && rc != EVR_AGENT_BAD_ID && rc != EVR_AGENT_BAD_JSON) {
            input->requests++;
            if (rc == EVR_AGENT_BAD_PARAMS)
                s_conn_error(self, conn, &msg, -32602, "Invalid params");
            else
                s_conn_error(self, conn, &msg, -32600, "Invalid Request");
        }
        return;
    }
    evr_event_t *event = s_event_from(&msg);
    if (!msg.id) {
        if (event && evr_raise(self->client, &event) == 0)
            input->raised++;
        else
            input->rejected++;
        return;
    }
    input->requests++;
    s_outcome_t *item = malloc(sizeof(*item) + msg.id_len);
    if (!item) {
        evr_event_destroy(&event);
        input->rejected++;
        s_conn_error(self, conn, &msg, S_ERR_NOT_DELIVERED, "Out of memory");
        return;
    }
    item->agent = self;
    item->conn_id = conn->id;
    item->input = input;
    item->id_len = msg.id_len;
    memcpy(item->id, msg.id, msg.id_len);
    if (!event) {
        //  no callback will come: answer as libevrelay would
        input->rejected++;
        s_on_done(item, EVR_DONE_REJECTED);
        return;
    }
    //  s_on_done runs exactly once, also when this fails (rejected)
    if (evr_raise_cb(self->client, &event, s_on_done, item) == 0)
        input->raised++;
    else
        input->rejected++;
}

//  --------------------------------------------------------------------------
//  Parse every complete object in the connection's buffer, keep the rest.
//  Returns 0, or -1 when the connection was closed.

static int s_conn_parse(s_agent_t *self, s_conn_t *conn)
{
    size_t consumed = 0;
    while (!conn->dead) {
        size_t skip = 0, end = 0;
        evr_agent_rc_t rc =
            evr_agent_framer_next(&conn->framer, conn->in + consumed,
                                  conn->in_len - consumed, &skip, &end);
        if (rc == EVR_AGENT_INCOMPLETE) {
            if (skip && !conn->framer.started) {
                consumed += skip; //  whitespace between objects
                evr_agent_framer_reset(&conn->framer);
            }
            break;
        }
        if (rc != EVR_AGENT_OK) {
            conn->input->received++;
            s_malformed(self, conn->input, rc, conn->in + consumed,
                        conn->in_len - consumed);
            s_conn_close(self, conn, "not a JSON object stream");
            return -1;
        }
        s_conn_event(self, conn, conn->in + consumed + skip, end - skip);
        consumed += end;
        evr_agent_framer_reset(&conn->framer);
    }
    if (conn->dead)
        return -1;
    if (consumed) {
        memmove(conn->in, conn->in + consumed, conn->in_len - consumed);
        conn->in_len -= consumed;
        //  the framer's state is relative to the old front: rescan
        evr_agent_framer_reset(&conn->framer);
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Read what the connection has (one read per wakeup, level-triggered),
//  then parse. Closes the connection on EOF, error, or an object over
//  S_MAX_STREAM_BYTES.

static void s_conn_read(s_agent_t *self, s_conn_t *conn)
{
    if (conn->in_len == conn->in_cap) {
        if (conn->in_cap >= S_MAX_STREAM_BYTES) {
            conn->input->received++;
            s_malformed(self, conn->input, EVR_AGENT_TOO_LARGE, conn->in,
                        conn->in_len);
            s_conn_close(self, conn, "object over the buffer bound");
            return;
        }
        size_t cap = conn->in_cap ? conn->in_cap * 2 : S_STREAM_CHUNK;
        if (cap > S_MAX_STREAM_BYTES)
            cap = S_MAX_STREAM_BYTES;
        char *grown = realloc(conn->in, cap);
        if (!grown) {
            s_conn_close(self, conn, "out of memory");
            return;
        }
        conn->in = grown;
        conn->in_cap = cap;
    }
    ssize_t n =
        recv(conn->fd, conn->in + conn->in_len, conn->in_cap - conn->in_len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        s_conn_close(self, conn, strerror(errno));
        return;
    }
    if (n == 0) {
        //  the peer is gone: what is left is a cut-off object
        if (s_conn_parse(self, conn) == 0 && conn->in_len > 0) {
            size_t ws = 0;
            while (ws < conn->in_len && strchr(" \t\r\n", conn->in[ws]) != NULL)
                ws++;
            if (ws < conn->in_len) {
                conn->input->received++;
                s_malformed(self, conn->input, EVR_AGENT_BAD_JSON,
                            conn->in + ws, conn->in_len - ws);
            }
        }
        s_conn_close(self, conn, "peer closed");
        return;
    }
    conn->in_len += (size_t)n;
    s_conn_parse(self, conn);
}

//  --------------------------------------------------------------------------
//  Accept the connections waiting on a TCP listener.

static void s_accept(s_agent_t *self, s_input_t *input)
{
    while (true) {
        struct sockaddr_storage addr;
        socklen_t addr_len = sizeof(addr);
        int fd = accept4(input->fd, (struct sockaddr *)&addr, &addr_len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                s_log('W', "%s: accept: %s", input->name, strerror(errno));
            return;
        }
        if (self->nconns >= S_MAX_CONNECTIONS || self->stopping) {
            input->refused++;
            close(fd);
            continue;
        }
        s_conn_t *conn = calloc(1, sizeof(*conn));
        s_conn_t **conns =
            conn ? realloc(self->conns, (self->nconns + 1) * sizeof(*conns))
                 : NULL;
        if (!conns) {
            free(conn);
            input->refused++;
            close(fd);
            continue;
        }
        self->conns = conns;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn->handle.type = S_H_CONN;
        conn->id = self->next_conn_id++;
        conn->fd = fd;
        conn->input = input;
        conn->reading = true;
        evr_agent_framer_reset(&conn->framer);
        char host[INET6_ADDRSTRLEN] = "?";
        int port = 0;
        if (addr.ss_family == AF_INET) {
            struct sockaddr_in *in4 = (struct sockaddr_in *)&addr;
            inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
            port = ntohs(in4->sin_port);
            snprintf(conn->peer, sizeof(conn->peer), "%s:%d", host, port);
        } else if (addr.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr;
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
            port = ntohs(in6->sin6_port);
            snprintf(conn->peer, sizeof(conn->peer), "[%s]:%d", host, port);
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = conn};
        if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            free(conn);
            input->refused++;
            close(fd);
            continue;
        }
        self->conns[self->nconns++] = conn;
        input->accepted++;
        input->open++;
        if (self->verbose)
            s_log('I', "%s: connection from %s", input->name, conn->peer);
    }
}

//  --------------------------------------------------------------------------
//  Take the outcomes libevrelay's thread queued and answer each request on
//  its connection (when it is still open).

static void s_outcomes(s_agent_t *self)
{
    uint64_t count;
    ssize_t rc = read(self->outfd, &count, sizeof(count));
    (void)rc;
    pthread_mutex_lock(&self->lock);
    s_outcome_t *item = self->head;
    self->head = self->tail = NULL;
    pthread_mutex_unlock(&self->lock);
    while (item) {
        s_outcome_t *next = item->next;
        s_conn_t *conn = NULL;
        for (size_t i = 0; i < self->nconns; i++) {
            if (self->conns[i]->id == item->conn_id) {
                conn = self->conns[i];
                break;
            }
        }
        s_input_t *input = item->input;
        if (!conn)
            input->replies_dropped++;
        else {
            static const char *const messages[] = {
                [EVR_DONE_ACKED] = "",
                [EVR_DONE_FAILED] = "Event not delivered: no subscriber "
                                    "took it",
                [EVR_DONE_REJECTED] = "Event rejected",
                [EVR_DONE_DROPPED] = "Event dropped before a relay "
                                     "acknowledged it"};
            int code = 0;
            const char *message = "";
            switch (item->outcome) {
                case EVR_DONE_ACKED:
                    break;
                case EVR_DONE_FAILED:
                case EVR_DONE_REJECTED:
                case EVR_DONE_DROPPED:
                    code = S_ERR_NOT_DELIVERED;
                    message = messages[item->outcome];
                    break;
                default:
                    code = S_ERR_NOT_DELIVERED;
                    message = "Event not delivered";
                    break;
            }
            char reply[256];
            size_t len = s_format_reply(reply, sizeof(reply), item->id,
                                        item->id_len, code, message);
            char *big = NULL;
            if (!len) {
                //  a long string id: format on the heap
                size_t size = item->id_len + 256;
                big = malloc(size);
                if (big)
                    len = s_format_reply(big, size, item->id, item->id_len,
                                         code, message);
            }
            if (len && s_conn_reply(self, conn, big ? big : reply, len) == 0) {
                if (code == 0)
                    input->replies_ok++;
                else
                    input->replies_error++;
            } else
                input->replies_dropped++;
            free(big);
        }
        free(item);
        item = next;
    }
}

//  ==========================================================================
//  Datagrams

//  --------------------------------------------------------------------------
//  Parse one datagram (or evapi message) and raise its event.

static void s_raise_payload(s_agent_t *self, s_input_t *input, const char *data,
                            size_t len)
{
    input->received++;
    evr_agent_msg_t msg;
    evr_agent_rc_t rc =
        evr_agent_parse_datagram(self->dgram_parser, data, len, &msg);
    if (rc != EVR_AGENT_OK) {
        s_malformed(self, input, rc, data, len);
        return;
    }
    evr_event_t *event = s_event_from(&msg);
    if (event && evr_raise(self->client, &event) == 0)
        input->raised++;
    else
        input->rejected++;
}

//  --------------------------------------------------------------------------
//  Read and raise the datagrams waiting on a UDP or unix socket (at most
//  S_DGRAM_BURST per wakeup).

static void s_datagrams(s_agent_t *self, s_input_t *input)
{
    for (int i = 0; i < S_DGRAM_BURST; i++) {
        ssize_t n = recv(input->fd, self->dgram, S_MAX_DATAGRAM + 1, MSG_TRUNC);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                s_log('W', "%s: recv: %s", input->name, strerror(errno));
            return;
        }
        if (n > S_MAX_DATAGRAM) {
            input->received++;
            s_malformed(self, input, EVR_AGENT_TOO_LARGE, self->dgram,
                        S_MAX_DATAGRAM);
            continue;
        }
        s_raise_payload(self, input, self->dgram, (size_t)n);
    }
}

//  ==========================================================================
//  Kamailio evapi: an outgoing connection to Kamailio's evapi module, which
//  writes each evapi_relay() message as a netstring. A message is taken
//  like a datagram (JSON-RPC, or legacy text).

//  --------------------------------------------------------------------------
//  Close the evapi connection (if any) and schedule the next attempt after
//  the current back-off, which then doubles up to
//  EVR_DEFAULT_RECONNECT_MAX_MS. Logs once per outage.

static void s_kam_retry(s_agent_t *self, s_input_t *input, const char *why)
{
    if (input->fd >= 0) {
        epoll_ctl(self->epfd, EPOLL_CTL_DEL, input->fd, NULL);
        close(input->fd);
        input->fd = -1;
    }
    if (input->kam_state == S_KAM_CONNECTED) {
        input->disconnects++;
        s_log('W', "%s: connection lost (%s), reconnecting", input->name, why);
        input->kam_failing = true;
    } else if (!input->kam_failing) {
        s_log('W', "%s: cannot connect (%s), retrying", input->name, why);
        input->kam_failing = true;
    }
    input->kam_state = S_KAM_IDLE;
    input->in_len = 0;
    input->retry_at = s_now_ms() + input->backoff_ms;
    input->backoff_ms = input->backoff_ms * 2 > EVR_DEFAULT_RECONNECT_MAX_MS
                            ? EVR_DEFAULT_RECONNECT_MAX_MS
                            : input->backoff_ms * 2;
}

//  --------------------------------------------------------------------------
//  Start a non-blocking connect to Kamailio's evapi; its end is reported
//  as EPOLLOUT.

static void s_kam_connect(s_agent_t *self, s_input_t *input)
{
    input->retry_at = 0;
    int fd = socket(input->peer.ss_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        s_kam_retry(self, input, strerror(errno));
        return;
    }
    input->fd = fd;
    input->kam_state = S_KAM_CONNECTING;
    if (connect(fd, (struct sockaddr *)&input->peer, input->peer_len) < 0 &&
        errno != EINPROGRESS) {
        s_kam_retry(self, input, strerror(errno));
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = input};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        s_kam_retry(self, input, strerror(errno));
}

//  --------------------------------------------------------------------------
//  Read what the evapi connection has and raise each netstring's payload.
//  A broken frame cannot be resynchronised: reconnect.

static void s_kam_read(s_agent_t *self, s_input_t *input)
{
    const size_t max_buffer = S_MAX_STREAM_BYTES + 32; //  LEN: and ','
    if (input->in_len == input->in_cap) {
        size_t cap = input->in_cap ? input->in_cap * 2 : S_STREAM_CHUNK;
        if (cap > max_buffer)
            cap = max_buffer;
        char *grown = cap > input->in_cap ? realloc(input->in, cap) : NULL;
        if (!grown) {
            s_kam_retry(self, input, "out of memory");
            return;
        }
        input->in = grown;
        input->in_cap = cap;
    }
    ssize_t n = recv(input->fd, input->in + input->in_len,
                     input->in_cap - input->in_len, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            s_kam_retry(self, input, strerror(errno));
        return;
    }
    if (n == 0) {
        s_kam_retry(self, input, "closed by kamailio");
        return;
    }
    input->in_len += (size_t)n;
    size_t done = 0;
    while (true) {
        size_t start = 0, end = 0;
        evr_agent_rc_t rc =
            evr_agent_netstring_next(input->in + done, input->in_len - done,
                                     S_MAX_STREAM_BYTES, &start, &end);
        if (rc == EVR_AGENT_INCOMPLETE)
            break;
        if (rc != EVR_AGENT_OK) {
            input->received++;
            s_malformed(self, input, rc, input->in + done,
                        input->in_len - done);
            s_kam_retry(self, input, "not a netstring stream");
            return;
        }
        s_raise_payload(self, input, input->in + done + start, end - start);
        done += end + 1;
    }
    memmove(input->in, input->in + done, input->in_len - done);
    input->in_len -= done;
}

//  --------------------------------------------------------------------------
//  Handle epoll events on the evapi connection: the end of a connect, or
//  messages to read.

static void s_kam_event(s_agent_t *self, s_input_t *input)
{
    if (input->kam_state != S_KAM_CONNECTING) {
        s_kam_read(self, input);
        return;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(input->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        s_kam_retry(self, input, strerror(err));
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = input};
    if (epoll_ctl(self->epfd, EPOLL_CTL_MOD, input->fd, &ev) < 0) {
        s_kam_retry(self, input, strerror(errno));
        return;
    }
    input->kam_state = S_KAM_CONNECTED;
    input->connects++;
    input->backoff_ms = EVR_DEFAULT_RECONNECT_MIN_MS;
    input->kam_failing = false;
    s_log('I', "%s: connected", input->name);
}

//  --------------------------------------------------------------------------
//  Start the evapi connects that are due. Returns the ms until the next
//  one, or -1 when none is pending.

static int s_kam_timers(s_agent_t *self)
{
    int64_t next = -1;
    int64_t now = s_now_ms();
    for (size_t i = 0; i < self->ninputs; i++) {
        s_input_t *input = self->inputs[i];
        if (input->kind != S_KAMAILIO || !input->retry_at)
            continue;
        if (input->retry_at <= now)
            s_kam_connect(self, input);
        if (input->retry_at && (next < 0 || input->retry_at - now < next))
            next = input->retry_at > now ? input->retry_at - now : 0;
    }
    return (int)next;
}

//  ==========================================================================
//  Statistics

//  --------------------------------------------------------------------------
//  Print the malformed counters of one input (or, with input NULL, of all)
//  as a JSON object.

static void s_print_malformed(FILE *stream, s_agent_t *self,
                              const s_input_t *input)
{
    fputc('{', stream);
    bool first = true;
    for (int rc = EVR_AGENT_BAD_JSON; rc < EVR_AGENT_RC_COUNT; rc++) {
        uint64_t count = 0;
        for (size_t i = 0; i < self->ninputs; i++) {
            if (!input || self->inputs[i] == input)
                count += self->inputs[i]->malformed[rc];
        }
        fprintf(stream, "%s\"%s\":%" PRIu64, first ? "" : ",",
                evr_agent_rc_name((evr_agent_rc_t)rc), count);
        first = false;
    }
    fputc('}', stream);
}

//  --------------------------------------------------------------------------
//  Print every counter as one JSON line on stderr. client_stats NULL =
//  ask the client (it must exist).

static void s_print_stats(s_agent_t *self,
                          const evr_client_stats_t *client_stats)
{
    evr_client_stats_t cs;
    if (client_stats)
        cs = *client_stats;
    else if (self->client)
        evr_client_stats(self->client, &cs);
    else
        cs = self->last_client_stats; //  stopping: the client is gone
    uint64_t received = 0, raised = 0, rejected = 0, requests = 0;
    uint64_t ok = 0, error = 0, dropped = 0;
    for (size_t i = 0; i < self->ninputs; i++) {
        s_input_t *input = self->inputs[i];
        received += input->received;
        raised += input->raised;
        rejected += input->rejected;
        requests += input->requests;
        ok += input->replies_ok;
        error += input->replies_error;
        dropped += input->replies_dropped;
    }
    //  built in memory, then written with one write(): a reader of the
    //  log never sees half a line
    char *line = NULL;
    size_t line_len = 0;
    FILE *out = open_memstream(&line, &line_len);
    if (!out)
        return;
    fprintf(out,
            "{\"uptime_s\":%" PRId64 ",\"received\":%" PRIu64
            ",\"raised\":%" PRIu64 ",\"rejected\":%" PRIu64 ",\"malformed\":",
            (s_now_ms() - self->started_ms) / 1000, received, raised, rejected);
    s_print_malformed(out, self, NULL);
    fprintf(out,
            ",\"requests\":%" PRIu64 ",\"replies\":{\"ok\":%" PRIu64
            ",\"error\":%" PRIu64 ",\"dropped\":%" PRIu64 "},\"inputs\":[",
            requests, ok, error, dropped);
    for (size_t i = 0; i < self->ninputs; i++) {
        s_input_t *input = self->inputs[i];
        fprintf(out, "%s{\"input\":", i ? "," : "");
        s_json_string(out, input->name);
        fprintf(out,
                ",\"received\":%" PRIu64 ",\"raised\":%" PRIu64
                ",\"rejected\":%" PRIu64 ",\"malformed\":",
                input->received, input->raised, input->rejected);
        s_print_malformed(out, self, input);
        if (input->kind == S_TCP)
            fprintf(out,
                    ",\"requests\":%" PRIu64 ",\"replies\":{\"ok\":%" PRIu64
                    ",\"error\":%" PRIu64 ",\"dropped\":%" PRIu64
                    "},\"connections\":{\"accepted\":%" PRIu64
                    ",\"refused\":%" PRIu64 ",\"closed\":%" PRIu64
                    ",\"open\":%zu}",
                    input->requests, input->replies_ok, input->replies_error,
                    input->replies_dropped, input->accepted, input->refused,
                    input->closed, input->open);
        else if (input->kind == S_KAMAILIO)
            fprintf(out,
                    ",\"connections\":{\"connects\":%" PRIu64
                    ",\"disconnects\":%" PRIu64 ",\"connected\":%s}",
                    input->connects, input->disconnects,
                    input->kam_state == S_KAM_CONNECTED ? "true" : "false");
        fputc('}', out);
    }
    fprintf(out,
            "],\"client\":{\"raised\":%" PRIu64 ",\"sent\":%" PRIu64
            ",\"acked\":%" PRIu64 ",\"resent\":%" PRIu64 ",\"dropped\":%" PRIu64
            ",\"rejected\":%" PRIu64 ",\"failed\":%" PRIu64
            ",\"queued\":%" PRIu64 ",\"in_flight\":%" PRIu64 "}}\n",
            cs.raised, cs.sent, cs.acked, cs.resent, cs.dropped, cs.rejected,
            cs.failed, cs.queued, cs.in_flight);
    if (fclose(out) == 0) {
        size_t done = 0;
        while (done < line_len) {
            ssize_t n = write(STDERR_FILENO, line + done, line_len - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            done += (size_t)n;
        }
    }
    free(line);
}

//  ==========================================================================
//  Set-up

//  --------------------------------------------------------------------------
//  Split "ADDR:PORT" or "[ADDR6]:PORT" into host and port (host written to
//  host[host_size]). Returns 0 or -1.

static int s_split_addr(const char *text, char *host, size_t host_size,
                        char *port, size_t port_size)
{
    const char *colon;
    const char *h = text;
    size_t h_len;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':')
            return -1;
        h = text + 1;
        h_len = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon || strchr(text, ':') != colon)
            return -1;
        h_len = (size_t)(colon - text);
    }
    const char *p = colon + 1;
    size_t p_len = strlen(p);
    if (h_len == 0 || h_len >= host_size || p_len == 0 || p_len >= port_size ||
        strspn(p, "0123456789") != p_len || atol(p) > 65535)
        return -1;
    memcpy(host, h, h_len);
    host[h_len] = '\0';
    memcpy(port, p, p_len + 1);
    return 0;
}

//  --------------------------------------------------------------------------
//  Set input->name from the socket's bound address: "udp:1.2.3.4:9777",
//  "tcp:[::1]:9778". Returns 0 or -1.

static int s_name_inet(s_input_t *input)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof(addr);
    if (getsockname(input->fd, (struct sockaddr *)&addr, &len) < 0)
        return -1;
    char host[INET6_ADDRSTRLEN];
    char name[INET6_ADDRSTRLEN + 32];
    const char *proto = input->kind == S_UDP ? "udp" : "tcp";
    if (addr.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(name, sizeof(name), "%s:[%s]:%d", proto, host,
                 ntohs(in6->sin6_port));
    } else {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&addr;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
        snprintf(name, sizeof(name), "%s:%s:%d", proto, host,
                 ntohs(in4->sin_port));
    }
    input->name = strdup(name);
    return input->name ? 0 : -1;
}

//  --------------------------------------------------------------------------
//  Open a UDP socket or TCP listener bound to input->addr. Returns 0, or
//  -1 (logged).

static int s_open_inet(s_input_t *input)
{
    char host[256], port[8];
    if (s_split_addr(input->addr, host, sizeof(host), port, sizeof(port))) {
        s_log('E', "bad address '%s' (want ADDR:PORT or [ADDR6]:PORT)",
              input->addr);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
                             .ai_socktype = input->kind == S_UDP ? SOCK_DGRAM
                                                                 : SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        s_log('E', "cannot resolve '%s': %s", input->addr, gai_strerror(gai));
        return -1;
    }
    int fd = socket(res->ai_family,
                    res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        s_log('E', "%s: socket: %s", input->addr, strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    int one = 1;
    if (res->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (input->kind == S_TCP)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    else {
        int size = S_RCVBUF;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
    int rc = bind(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc == 0 && input->kind == S_TCP)
        rc = listen(fd, SOMAXCONN);
    if (rc < 0) {
        s_log('E', "cannot listen on %s %s: %s",
              input->kind == S_UDP ? "udp" : "tcp", input->addr,
              strerror(errno));
        close(fd);
        return -1;
    }
    input->fd = fd;
    return s_name_inet(input);
}

//  --------------------------------------------------------------------------
//  Open a unix datagram socket at input->addr. A socket file nobody is
//  bound to (left by a crash) is replaced; a live one is an error.
//  Returns 0, or -1 (logged).

static int s_open_unix(s_input_t *input, int mode)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(input->addr) >= sizeof(addr.sun_path) || !input->addr[0]) {
        s_log('E', "bad unix socket path '%s'", input->addr);
        return -1;
    }
    strcpy(addr.sun_path, input->addr);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        s_log('E', "%s: socket: %s", input->addr, strerror(errno));
        return -1;
    }
    int size = S_RCVBUF;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    if (rc < 0 && errno == EADDRINUSE) {
        struct stat st;
        int probe = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        bool stale =
            probe >= 0 && stat(input->addr, &st) == 0 && S_ISSOCK(st.st_mode) &&
            connect(probe, (struct sockaddr *)&addr, sizeof(addr)) < 0 &&
            errno == ECONNREFUSED;
        if (probe >= 0)
            close(probe);
        if (stale && unlink(input->addr) == 0)
            rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
        else
            errno = EADDRINUSE;
    }
    if (rc < 0) {
        s_log('E', "cannot bind unix socket %s: %s", input->addr,
              strerror(errno));
        close(fd);
        return -1;
    }
    input->unlink_path = true;
    if (mode >= 0 && chmod(input->addr, (mode_t)mode) < 0)
        s_log('W', "cannot chmod %s: %s", input->addr, strerror(errno));
    input->fd = fd;
    size_t name_size = strlen(input->addr) + 6;
    input->name = malloc(name_size);
    if (!input->name)
        return -1;
    snprintf(input->name, name_size, "unix:%s", input->addr);
    return 0;
}

//  --------------------------------------------------------------------------
//  Resolve a Kamailio evapi address; the first connect is started by the
//  loop (s_kam_timers), and Kamailio need not be up yet. Returns 0, or -1
//  (logged).

static int s_open_kamailio(s_input_t *input)
{
    char host[256], port[8];
    if (s_split_addr(input->addr, host, sizeof(host), port, sizeof(port))) {
        s_log('E', "bad address '%s' (want ADDR:PORT or [ADDR6]:PORT)",
              input->addr);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_flags = AI_NUMERICSERV,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        s_log('E', "cannot resolve '%s': %s", input->addr, gai_strerror(gai));
        return -1;
    }
    memcpy(&input->peer, res->ai_addr, res->ai_addrlen);
    input->peer_len = res->ai_addrlen;
    freeaddrinfo(res);
    input->backoff_ms = EVR_DEFAULT_RECONNECT_MIN_MS;
    input->retry_at = s_now_ms();
    size_t name_size = strlen(input->addr) + 10;
    input->name = malloc(name_size);
    if (!input->name)
        return -1;
    snprintf(input->name, name_size, "kamailio:%s", input->addr);
    return 0;
}

//  --------------------------------------------------------------------------
//  Add an input (not opened yet). Returns 0 or -1.

static int s_add_input(s_agent_t *self, s_kind_t kind, const char *addr)
{
    s_input_t *input = calloc(1, sizeof(*input));
    s_input_t **inputs =
        input ? realloc(self->inputs, (self->ninputs + 1) * sizeof(*inputs))
              : NULL;
    if (!inputs) {
        free(input);
        return -1;
    }
    self->inputs = inputs;
    input->handle.type = S_H_INPUT;
    input->kind = kind;
    input->fd = -1;
    input->addr = strdup(addr);
    if (!input->addr) {
        free(input);
        return -1;
    }
    self->inputs[self->ninputs++] = input;
    return 0;
}

//  --------------------------------------------------------------------------
//  Close an input's socket (and remove its unix socket file).

static void s_close_input(s_agent_t *self, s_input_t *input)
{
    input->retry_at = 0; //  no evapi reconnect
    input->kam_state = S_KAM_IDLE;
    if (input->fd < 0)
        return;
    epoll_ctl(self->epfd, EPOLL_CTL_DEL, input->fd, NULL);
    close(input->fd);
    input->fd = -1;
    if (input->unlink_path) {
        unlink(input->addr);
        input->unlink_path = false;
    }
}

//  --------------------------------------------------------------------------
//  Destroy the agent: close everything it opened, free it, NULL the
//  pointer. The client must be gone already (no callback may come).

static void s_agent_destroy(s_agent_t **self_p)
{
    if (!*self_p)
        return;
    s_agent_t *self = *self_p;
    evr_client_destroy(&self->client);
    while (self->nconns) //  before the inputs: a connection counts in one
        s_conn_close(self, self->conns[0], "agent stopped");
    s_bury(self);
    free(self->conns);
    free(self->graveyard);
    for (size_t i = 0; i < self->ninputs; i++) {
        s_close_input(self, self->inputs[i]);
        free(self->inputs[i]->addr);
        free(self->inputs[i]->name);
        free(self->inputs[i]->in);
        free(self->inputs[i]);
    }
    free(self->inputs);
    s_outcome_t *item = self->head;
    while (item) {
        s_outcome_t *next = item->next;
        free(item);
        item = next;
    }
    if (self->sigfd >= 0)
        close(self->sigfd);
    if (self->outfd >= 0)
        close(self->outfd);
    if (self->epfd >= 0)
        close(self->epfd);
    evr_agent_parser_destroy(&self->dgram_parser);
    evr_agent_parser_destroy(&self->stream_parser);
    free(self->dgram);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Create the agent: parsers, epoll, signalfd, eventfd, the inputs' sockets
//  and the libevrelay client. Returns NULL on failure (logged).

static s_agent_t *s_agent_new(s_agent_t *settings)
{
    s_agent_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    *self = *settings;
    settings->inputs = NULL;
    settings->ninputs = 0;
    pthread_mutex_init(&self->lock, NULL);
    self->epfd = self->sigfd = self->outfd = -1;
    self->next_conn_id = 1;
    self->started_ms = s_now_ms();
    self->log_window_start = self->started_ms;
    self->signal_handle.type = S_H_SIGNAL;
    self->outcomes_handle.type = S_H_OUTCOMES;

    evr_agent_parse_opts_t dgram_opts = self->parse_opts;
    dgram_opts.event_param = NULL; //  event_datagram never adds it
    self->dgram_parser = evr_agent_parser_new(&dgram_opts);
    self->stream_parser = evr_agent_parser_new(&self->parse_opts);
    self->dgram = malloc(S_MAX_DATAGRAM + 1);
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    self->outfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!self->dgram_parser || !self->stream_parser || !self->dgram ||
        self->epfd < 0 || self->outfd < 0) {
        s_log('E', "cannot start: %s", strerror(errno ? errno : ENOMEM));
        goto failed;
    }

    //  signals arrive through a signalfd; libevrelay's thread blocks all
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGUSR1);
    sigprocmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    self->sigfd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (self->sigfd < 0) {
        s_log('E', "signalfd: %s", strerror(errno));
        goto failed;
    }
    struct epoll_event ev = {.events = EPOLLIN,
                             .data.ptr = &self->signal_handle};
    epoll_ctl(self->epfd, EPOLL_CTL_ADD, self->sigfd, &ev);
    ev.data.ptr = &self->outcomes_handle;
    epoll_ctl(self->epfd, EPOLL_CTL_ADD, self->outfd, &ev);

    for (size_t i = 0; i < self->ninputs; i++) {
        s_input_t *input = self->inputs[i];
        if (input->kind == S_KAMAILIO) {
            if (s_open_kamailio(input))
                goto failed;
            continue; //  connected by the loop
        }
        int rc = input->kind == S_UNIX ? s_open_unix(input, self->unix_mode)
                                       : s_open_inet(input);
        if (rc)
            goto failed;
        ev.data.ptr = input;
        if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, input->fd, &ev) < 0) {
            s_log('E', "epoll: %s", strerror(errno));
            goto failed;
        }
    }

    evr_client_opts_t opts = {.ack_point = self->ack_point,
                              .cert = self->cert,
                              .server_key = self->server_key};
    self->client = evr_client_new(self->relay, &opts);
    if (!self->client) {
        s_log('E', "cannot use relay endpoints '%s'%s", self->relay,
              self->cert ? " with --cert and --server-key" : "");
        goto failed;
    }
    return self;

failed:
    s_agent_destroy(&self);
    return NULL;
}

//  ==========================================================================
//  The loop

//  --------------------------------------------------------------------------
//  Handle what the signalfd has: SIGUSR1 prints the counters, SIGTERM and
//  SIGINT start the stop.

static void s_signals(s_agent_t *self)
{
    struct signalfd_siginfo info;
    while (read(self->sigfd, &info, sizeof(info)) == sizeof(info)) {
        if (info.ssi_signo == SIGUSR1)
            s_print_stats(self, NULL);
        else if (!self->stopping) {
            s_log('I', "signal %u: stopping", info.ssi_signo);
            self->stopping = true;
        }
    }
}

//  --------------------------------------------------------------------------
//  Wait for and handle one batch of epoll events, at most timeout_ms.

static void s_poll_once(s_agent_t *self, int timeout_ms)
{
    struct epoll_event events[64];
    int n = epoll_wait(self->epfd, events, 64, timeout_ms);
    for (int i = 0; i < n; i++) {
        s_handle_t *handle = events[i].data.ptr;
        switch (handle->type) {
            case S_H_SIGNAL:
                s_signals(self);
                break;
            case S_H_OUTCOMES:
                s_outcomes(self);
                break;
            case S_H_INPUT: {
                s_input_t *input = (s_input_t *)handle;
                if (input->fd < 0)
                    break;
                if (input->kind == S_TCP)
                    s_accept(self, input);
                else if (input->kind == S_KAMAILIO)
                    s_kam_event(self, input);
                else
                    s_datagrams(self, input);
                break;
            }
            case S_H_CONN: {
                s_conn_t *conn = (s_conn_t *)handle;
                if (!conn->dead && (events[i].events & EPOLLOUT))
                    s_conn_flush(self, conn);
                if (!conn->dead &&
                    (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
                    if (conn->reading)
                        s_conn_read(self, conn);
                    else if (events[i].events & (EPOLLERR | EPOLLHUP))
                        s_conn_close(self, conn, "connection lost");
                }
                break;
            }
        }
    }
    s_bury(self);
}

//  --------------------------------------------------------------------------
//  Stop: close the inputs (no new events, ports free), keep the
//  connections only to write replies, wait up to flush_ms until libevrelay
//  has a final outcome for every event, then stop it (what is left is
//  dropped, and its requests get an error reply), write the last replies
//  for up to S_REPLY_DRAIN_MS, and print the counters.

static void s_stop(s_agent_t *self)
{
    for (size_t i = 0; i < self->ninputs; i++)
        s_close_input(self, self->inputs[i]);
    for (size_t i = 0; i < self->nconns; i++) {
        self->conns[i]->reading = false;
        s_conn_watch(self, self->conns[i]);
    }
    int64_t deadline = s_now_ms() + self->flush_ms;
    while (evr_client_flush(self->client, 0) != 0) {
        int64_t left = deadline - s_now_ms();
        if (left <= 0) {
            s_log('W',
                  "stop: events still unacknowledged after %d ms are "
                  "dropped",
                  self->flush_ms);
            break;
        }
        s_poll_once(self, left < 50 ? (int)left : 50);
    }
    evr_client_stats(self->client, &self->last_client_stats);
    evr_client_destroy(&self->client); //  every callback has run now
    s_outcomes(self);
    deadline = s_now_ms() + S_REPLY_DRAIN_MS;
    while (true) {
        bool pending = false;
        for (size_t i = 0; i < self->nconns; i++)
            pending |= self->conns[i]->out_len > 0;
        int64_t left = deadline - s_now_ms();
        if (!pending || left <= 0)
            break;
        s_poll_once(self, left < 50 ? (int)left : 50);
    }
    while (self->nconns)
        s_conn_close(self, self->conns[0], "agent stopped");
    s_bury(self);
    s_print_stats(self, &self->last_client_stats);
}

//  --------------------------------------------------------------------------
//  Run until SIGTERM/SIGINT, then stop cleanly.

static void s_agent_run(s_agent_t *self)
{
    int64_t next_stats =
        self->stats_interval_ms ? s_now_ms() + self->stats_interval_ms : 0;
    while (!self->stopping) {
        int timeout = s_kam_timers(self);
        if (next_stats) {
            int64_t left = next_stats - s_now_ms();
            if (left <= 0) {
                s_print_stats(self, NULL);
                next_stats += self->stats_interval_ms;
                continue;
            }
            if (timeout < 0 || left < timeout)
                timeout = (int)left;
        }
        s_poll_once(self, timeout);
    }
    s_stop(self);
}

//  ==========================================================================
//  main

//  --------------------------------------------------------------------------
//  Print the usage text on stream.

static void s_usage(FILE *stream)
{
    fprintf(
        stream,
        "usage: evrelay-agent [options]\n"
        "Receive an unmodified OpenSIPS's events and raise them into "
        "evrelay.\n"
        "inputs (repeatable; default --udp %s --tcp %s):\n"
        "  --udp ADDR:PORT        event_datagram JSON-RPC or legacy text "
        "(IPv6: [ADDR]:PORT)\n"
        "  --unix PATH            the same on a unix datagram socket\n"
        "  --tcp ADDR:PORT        event_stream JSON-RPC (reliable_mode "
        "replies after the ack)\n"
        "  --kamailio ADDR:PORT   connect to Kamailio's evapi: netstrings "
        "of JSON-RPC or legacy text\n"
        "options:\n"
        "  -r, --relay ENDPOINTS  relay ingest endpoints, comma-separated "
        "(default %s)\n"
        "  --cert FILE            CURVE: this agent's secret certificate "
        "(default $EVRELAY_CERT)\n"
        "  --server-key KEYS      CURVE: the relays' public keys, Z85 or "
        "certificate files,\n"
        "                         one, or one per endpoint comma-separated "
        "(default\n"
        "                         $EVRELAY_SERVER_KEY)\n"
        "  --ack accepted|delivered\n"
        "                         when a relay acks an event (default "
        "delivered)\n"
        "  --event-param NAME     event_stream's event_param: the event "
        "name is in that param\n"
        "  --legacy-strings       legacy text: every value a string (default:"
        " decimal -> int)\n"
        "  --unix-mode MODE       chmod the unix sockets (octal, e.g. 0660)\n"
        "  --stats-interval S     print the counters every S seconds "
        "(also on SIGUSR1, at exit)\n"
        "  --flush-timeout MS     on stop, wait this long for acks (default "
        "%d)\n"
        "  -v, --verbose          log connections\n"
        "  -h, --help             this text\n",
        S_DEFAULT_UDP, S_DEFAULT_TCP, EVR_DEFAULT_INGEST, S_DEFAULT_FLUSH_MS);
}

//  --------------------------------------------------------------------------
//  Parse a non-negative int option in [min, max]. Returns 0 or -1.

static int s_int_arg(const char *text, long min, long max, int base, int *out)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, base);
    if (errno || end == text || *end || value < min || value > max)
        return -1;
    *out = (int)value;
    return 0;
}

int main(int argc, char *argv[])
{
    enum {
        O_UDP = 256,
        O_UNIX,
        O_TCP,
        O_ACK,
        O_EVENT_PARAM,
        O_LEGACY_STRINGS,
        O_UNIX_MODE,
        O_STATS,
        O_FLUSH,
        O_KAMAILIO,
        O_CERT,
        O_SERVER_KEY
    };
    static const struct option long_options[] = {
        {"udp", required_argument, NULL, O_UDP},
        {"unix", required_argument, NULL, O_UNIX},
        {"tcp", required_argument, NULL, O_TCP},
        {"relay", required_argument, NULL, 'r'},
        {"ack", required_argument, NULL, O_ACK},
        {"event-param", required_argument, NULL, O_EVENT_PARAM},
        {"legacy-strings", no_argument, NULL, O_LEGACY_STRINGS},
        {"unix-mode", required_argument, NULL, O_UNIX_MODE},
        {"stats-interval", required_argument, NULL, O_STATS},
        {"flush-timeout", required_argument, NULL, O_FLUSH},
        {"kamailio", required_argument, NULL, O_KAMAILIO},
        {"cert", required_argument, NULL, O_CERT},
        {"server-key", required_argument, NULL, O_SERVER_KEY},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    s_agent_t settings = {.relay = EVR_DEFAULT_INGEST,
                          .ack_point = EVR_ACK_DELIVERED,
                          .flush_ms = S_DEFAULT_FLUSH_MS,
                          .unix_mode = -1,
                          .cert = getenv("EVRELAY_CERT"),
                          .server_key = getenv("EVRELAY_SERVER_KEY")};
    if (settings.cert && !*settings.cert)
        settings.cert = NULL;
    int rc = 2;
    int opt, seconds;
    while ((opt = getopt_long(argc, argv, "r:vh", long_options, NULL)) != -1) {
        switch (opt) {
            case O_UDP:
            case O_UNIX:
            case O_TCP:
            case O_KAMAILIO: {
                char host[256], port[8];
                if (opt != O_UNIX && s_split_addr(optarg, host, sizeof(host),
                                                  port, sizeof(port))) {
                    fprintf(stderr,
                            "evrelay-agent: bad address '%s' (want "
                            "ADDR:PORT or [ADDR6]:PORT)\n",
                            optarg);
                    goto done;
                }
                if (s_add_input(&settings,
                                opt == O_UDP    ? S_UDP
                                : opt == O_UNIX ? S_UNIX
                                : opt == O_TCP  ? S_TCP
                                                : S_KAMAILIO,
                                optarg)) {
                    fprintf(stderr, "evrelay-agent: out of memory\n");
                    goto done;
                }
                break;
            }
            case 'r':
                settings.relay = optarg;
                break;
            case O_CERT:
                settings.cert = *optarg ? optarg : NULL;
                break;
            case O_SERVER_KEY:
                settings.server_key = optarg;
                break;
            case O_ACK:
                if (strcmp(optarg, "accepted") == 0)
                    settings.ack_point = EVR_ACK_ACCEPTED;
                else if (strcmp(optarg, "delivered") == 0)
                    settings.ack_point = EVR_ACK_DELIVERED;
                else {
                    fprintf(stderr,
                            "evrelay-agent: --ack accepted|delivered, "
                            "not '%s'\n",
                            optarg);
                    goto done;
                }
                break;
            case O_EVENT_PARAM:
                if (!*optarg) {
                    fprintf(stderr, "evrelay-agent: empty --event-param\n");
                    goto done;
                }
                settings.parse_opts.event_param = optarg;
                break;
            case O_LEGACY_STRINGS:
                settings.parse_opts.legacy_strings = true;
                break;
            case O_UNIX_MODE:
                if (s_int_arg(optarg, 0, 07777, 8, &settings.unix_mode)) {
                    fprintf(stderr, "evrelay-agent: bad --unix-mode '%s'\n",
                            optarg);
                    goto done;
                }
                break;
            case O_STATS:
                if (s_int_arg(optarg, 1, 86400, 10, &seconds)) {
                    fprintf(stderr,
                            "evrelay-agent: --stats-interval 1..86400, not "
                            "'%s'\n",
                            optarg);
                    goto done;
                }
                settings.stats_interval_ms = seconds * 1000;
                break;
            case O_FLUSH:
                if (s_int_arg(optarg, 0, 3600000, 10, &settings.flush_ms)) {
                    fprintf(stderr, "evrelay-agent: bad --flush-timeout '%s'\n",
                            optarg);
                    goto done;
                }
                break;
            case 'v':
                settings.verbose = true;
                break;
            case 'h':
                s_usage(stdout);
                rc = 0;
                goto done;
            default:
                s_usage(stderr);
                goto done;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "evrelay-agent: unexpected argument '%s'\n",
                argv[optind]);
        s_usage(stderr);
        goto done;
    }
    if (settings.ninputs == 0 &&
        (s_add_input(&settings, S_UDP, S_DEFAULT_UDP) ||
         s_add_input(&settings, S_TCP, S_DEFAULT_TCP))) {
        fprintf(stderr, "evrelay-agent: out of memory\n");
        goto done;
    }

    s_agent_t *agent = s_agent_new(&settings);
    if (!agent) {
        rc = 1;
        goto done;
    }
    char inputs[1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < agent->ninputs && used < sizeof(inputs); i++)
        used += (size_t)snprintf(inputs + used, sizeof(inputs) - used, "%s%s",
                                 i ? ", " : "", agent->inputs[i]->name);
    s_log('I', "evrelay-agent ready: %s -> %s (ack %s)", inputs, agent->relay,
          agent->ack_point == EVR_ACK_DELIVERED ? "delivered" : "accepted");
    s_agent_run(agent);
    s_agent_destroy(&agent);
    rc = 0;

done:
    for (size_t i = 0; i < settings.ninputs; i++) {
        free(settings.inputs[i]->addr);
        free(settings.inputs[i]);
    }
    free(settings.inputs);
    return rc;
}
