/*  evrelayctl.c - control client of evrelayd.

    Sends one MI-style command to a relay's control socket and prints the
    answer. The request is a protobuf ControlRequest in one ZeroMQ frame
    sent from a DEALER; the relay answers with one ControlReply frame
    (docs/PROTOCOL.md).

        evrelayctl [-s ENDPOINT] [--json] [-t TIMEOUT_MS] COMMAND [ARGS...]

    The command name is sent unchanged as the method, so the relay resolves
    aliases, and a command this tool does not know is still sent (its
    arguments as a JSON array of strings). With --json the result is
    printed as the relay sent it; otherwise as readable tables.

    Exit status: 0 success, 1 error answer (or a malformed answer),
    2 usage error, 3 no answer within the timeout.
*/
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zmq.h>

#include "evr_curve.h"
#include "evr_defaults.h"
#include "evrelay.pb-c.h"
#include <czmq.h>

#define S_EXIT_ERROR 1
#define S_EXIT_USAGE 2
#define S_EXIT_NO_ANSWER 3

//  CURVE: this operator's secret certificate and the relay's public key
//  (--cert / $EVRELAY_CERT, --server-key / $EVRELAY_SERVER_KEY).
static const char *s_cert;
static const char *s_server_key;

//  What a command expects back; picks the printer for shapes that are
//  ambiguous on their own (an empty "Events" array, a stats object).
typedef enum {
    S_KIND_OTHER,
    S_KIND_LIST,
    S_KIND_SUBSCRIBERS,
    S_KIND_STATS,
    S_KIND_CLUSTER
} s_kind_t;

//  Builds params_json from the command arguments: sets *params to a new
//  string, or to NULL for "no params". Returns 0, or -1 on a usage error
//  (already reported on stderr).
typedef int(s_build_fn)(int argc, char **argv, char **params);

typedef struct {
    const char *names[3]; //  command name, then aliases (NULL = none)
    const char *args;     //  argument synopsis for the usage text
    const char *help;     //  one-line description
    int min_args;
    int max_args;
    s_build_fn *build;
    s_kind_t kind;
} s_command_t;

static s_build_fn s_build_none, s_build_strings, s_build_subscribe,
    s_build_raise;

static const s_command_t s_commands[] = {
    {.names = {"subscribe", "event_subscribe", "evi:subscribe"},
     .args = "EVENT SOCKET [EXPIRE]",
     .help = "subscribe SOCKET to EVENT for EXPIRE s (default 3600, "
             "0 = unsubscribe)",
     .min_args = 2,
     .max_args = 3,
     .build = s_build_subscribe},
    {.names = {"list", "events_list", "evi:list"},
     .args = "",
     .help = "list the events the relay knows",
     .build = s_build_none,
     .kind = S_KIND_LIST},
    {.names = {"subscribers", "subscribers_list", "evi:subscribers"},
     .args = "[EVENT [SOCKET]]",
     .help = "list all subscribers, those of EVENT, or one subscriber",
     .max_args = 2,
     .build = s_build_strings,
     .kind = S_KIND_SUBSCRIBERS},
    {.names = {"raise", "raise_event", "evi:raise"},
     .args = "EVENT [PARAMS]",
     .help = "raise EVENT; PARAMS is a JSON object (named) or array "
             "(positional)",
     .min_args = 1,
     .max_args = 2,
     .build = s_build_raise},
    {.names = {"stats"},
     .args = "",
     .help = "show the relay's counters",
     .build = s_build_none,
     .kind = S_KIND_STATS},
    {.names = {"cluster"},
     .args = "",
     .help = "show the relay cluster: members, their state, sequences and "
             "versions, counters",
     .build = s_build_none,
     .kind = S_KIND_CLUSTER},
    {.names = {"flatstore-rotate", "evi_flat_rotate", "event_flatstore:rotate"},
     .args = "PATH",
     .help = "reopen the flatstore file PATH",
     .min_args = 1,
     .max_args = 1,
     .build = s_build_strings},
};

#define S_NCOMMANDS (sizeof(s_commands) / sizeof(s_commands[0]))

//  --------------------------------------------------------------------------
//  Usage and command lookup

//  Prints the full usage text, with every command and its aliases.
static void s_usage(FILE *out)
{
    fprintf(out,
            "usage: evrelayctl [-s ENDPOINT] [--json] [-t TIMEOUT_MS] "
            "COMMAND [ARGS...]\n"
            "\n"
            "options:\n"
            "  -s, --endpoint ENDPOINT  relay control socket (default\n"
            "                           $EVRELAY_CONTROL, else %s)\n"
            "  -j, --json               print the JSON result as received\n"
            "  -t, --timeout MS         wait at most MS ms for the answer "
            "(default %d)\n"
            "      --cert FILE          CURVE: this operator's secret "
            "certificate\n"
            "                           (default $EVRELAY_CERT)\n"
            "      --server-key KEY     CURVE: the relay's public key, Z85 "
            "or a\n"
            "                           certificate file (default "
            "$EVRELAY_SERVER_KEY)\n"
            "  -h, --help               show this text\n"
            "\n"
            "commands:\n"
            "  keygen NAME [DIR [ENDPOINT]]\n"
            "      write a CURVE certificate pair DIR/NAME.cert (public) and\n"
            "      DIR/NAME.cert_secret (mode 0600); ENDPOINT: the server's\n"
            "      endpoint, for relays that peers or subscribers connect to\n",
            EVR_DEFAULT_CONTROL, EVR_DEFAULT_CTL_TIMEOUT_MS);
    for (size_t i = 0; i < S_NCOMMANDS; i++) {
        const s_command_t *c = &s_commands[i];
        fprintf(out, "  %s%s%s\n      %s\n", c->names[0], *c->args ? " " : "",
                c->args, c->help);
        if (c->names[1]) {
            fprintf(out, "      aliases: %s%s%s\n", c->names[1],
                    c->names[2] ? ", " : "", c->names[2] ? c->names[2] : "");
        }
    }
    fprintf(out,
            "\n"
            "Any other COMMAND is sent as is, with its ARGS as a JSON array "
            "of strings.\n"
            "Exit status: 0 ok, 1 error answer, 2 usage error, 3 no "
            "answer.\n");
}

//  Reports a usage error on stderr; returns the usage exit status.
static int s_usage_error(const char *what, const char *detail)
{
    fprintf(stderr, "evrelayctl: %s%s%s\nTry 'evrelayctl --help'.\n", what,
            detail ? ": " : "", detail ? detail : "");
    return S_EXIT_USAGE;
}

//  Finds a command by its name or an alias; NULL when unknown.
static const s_command_t *s_command_lookup(const char *name)
{
    for (size_t i = 0; i < S_NCOMMANDS; i++) {
        for (size_t j = 0; j < 3 && s_commands[i].names[j]; j++) {
            if (strcmp(s_commands[i].names[j], name) == 0) {
                return &s_commands[i];
            }
        }
    }
    return NULL;
}

//  --------------------------------------------------------------------------
//  Request parameters (params_json)

//  Serialises a JSON value compactly and takes ownership of it. Returns a
//  new string, or NULL when value is NULL (a failed constructor).
static char *s_dump_steal(json_t *value)
{
    if (!value) {
        return NULL;
    }
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(value);
    return text;
}

//  Appends a command-line argument to a JSON array as a string. Returns 0,
//  or -1 (reported) when the argument is not valid UTF-8.
static int s_append_string(json_t *array, const char *arg)
{
    json_t *str = json_string(arg);
    if (!str) {
        s_usage_error("argument is not valid UTF-8", arg);
        return -1;
    }
    json_array_append_new(array, str);
    return 0;
}

//  Builds a JSON array of strings from argv; NULL on failure.
static char *s_string_array(int argc, char **argv)
{
    json_t *array = json_array();
    for (int i = 0; i < argc; i++) {
        if (s_append_string(array, argv[i])) {
            json_decref(array);
            return NULL;
        }
    }
    return s_dump_steal(array);
}

//  Commands without parameters: no params_json at all.
static int s_build_none(int argc, char **argv, char **params)
{
    (void)argc;
    (void)argv;
    *params = NULL;
    return 0;
}

//  Positional string parameters: ["PATH"], or for subscribers [],
//  ["EVENT"] or ["EVENT","SOCKET"].
static int s_build_strings(int argc, char **argv, char **params)
{
    *params = s_string_array(argc, argv);
    return *params ? 0 : -1;
}

//  Parses a whole string as a decimal integer (optional sign). Returns 0,
//  or -1 when the text is not exactly one in-range integer.
static int s_parse_integer(const char *text, long long *value)
{
    if (!(*text == '-' || *text == '+' || (*text >= '0' && *text <= '9'))) {
        return -1;
    }
    char *end;
    errno = 0;
    *value = strtoll(text, &end, 10);
    return (errno || end == text || *end) ? -1 : 0;
}

//  subscribe: ["EVENT","SOCKET"] or ["EVENT","SOCKET",EXPIRE]; EXPIRE is a
//  JSON integer when it is one, else the string is sent and the relay
//  judges it.
static int s_build_subscribe(int argc, char **argv, char **params)
{
    json_t *array = json_array();
    if (s_append_string(array, argv[0]) || s_append_string(array, argv[1])) {
        json_decref(array);
        return -1;
    }
    if (argc == 3) {
        long long expire;
        if (s_parse_integer(argv[2], &expire) == 0) {
            json_array_append_new(array, json_integer(expire));
        } else if (s_append_string(array, argv[2])) {
            json_decref(array);
            return -1;
        }
    }
    *params = s_dump_steal(array);
    return *params ? 0 : -1;
}

//  raise: ["EVENT"], or {"event":"EVENT","params":PARAMS} where PARAMS is
//  the user's JSON object or array, passed on as typed (validated here, not
//  re-encoded, so key order, duplicate keys and number spelling survive).
static int s_build_raise(int argc, char **argv, char **params)
{
    *params = NULL;
    if (argc == 1) {
        return s_build_strings(argc, argv, params);
    }
    json_error_t jerr;
    json_t *value = json_loads(argv[1], JSON_DECODE_INT_AS_REAL, &jerr);
    if (!value) {
        char detail[256];
        snprintf(detail, sizeof detail, "%s (line %d, column %d)", jerr.text,
                 jerr.line, jerr.column);
        s_usage_error("raise: PARAMS is not valid JSON", detail);
        return -1;
    }
    bool shaped = json_is_object(value) || json_is_array(value);
    json_decref(value);
    if (!shaped) {
        s_usage_error("raise: PARAMS must be a JSON object or array", NULL);
        return -1;
    }
    char *event = s_dump_steal(json_string(argv[0]));
    if (!event) {
        s_usage_error("argument is not valid UTF-8", argv[0]);
        return -1;
    }
    size_t size = strlen(event) + strlen(argv[1]) + 32;
    *params = malloc(size);
    if (*params) {
        snprintf(*params, size, "{\"event\":%s,\"params\":%s}", event, argv[1]);
    }
    free(event);
    return *params ? 0 : -1;
}

//  --------------------------------------------------------------------------
//  Read one handshake-failure event from a socket monitor; returns what it
//  means for the user, or NULL.

static const char *s_handshake_failure(void *mon)
{
    zmq_msg_t event, address;
    zmq_msg_init(&event);
    zmq_msg_init(&address);
    const char *why = NULL;
    if (zmq_msg_recv(&event, mon, 0) >= 0 && zmq_msg_more(&event))
        zmq_msg_recv(&address, mon, 0);
    if (zmq_msg_size(&event) >= 2) {
        uint16_t id;
        memcpy(&id, zmq_msg_data(&event), 2);
        if (id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            why = s_cert ? "the relay refused this certificate (not in its "
                           "operators, or revoked)"
                         : "the relay refused this client";
        else
            why = s_cert ? "CURVE handshake failed (wrong --server-key, or "
                           "the relay does not use CURVE)"
                         : "handshake failed (the relay requires CURVE: "
                           "--cert and --server-key)";
    }
    zmq_msg_close(&event);
    zmq_msg_close(&address);
    return why;
}

//  --------------------------------------------------------------------------
//  Transport

//  Returns a request id that differs between runs: random bytes, or the
//  pid mixed with the clock when the kernel has none to give.
static uint64_t s_request_id(void)
{
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, GRND_NONBLOCK) != (ssize_t)sizeof id) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        id = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_sec * 1000000000u ^
             (uint64_t)ts.tv_nsec;
    }
    return id ? id : 1;
}

//  Milliseconds on the monotonic clock.
static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  Receives one whole message and keeps its last frame (the payload; any
//  envelope in front is ignored). Returns 0, or -1 on a socket error.
static int s_recv_payload(void *sock, zmq_msg_t *payload)
{
    int more = 1;
    while (more) {
        zmq_msg_close(payload);
        zmq_msg_init(payload);
        if (zmq_msg_recv(payload, sock, 0) < 0) {
            return -1;
        }
        more = zmq_msg_more(payload);
    }
    return 0;
}

//  Sends the request to endpoint and waits up to timeout_ms for the reply
//  with the same id. On success stores the decoded reply in *reply_p and
//  returns 0; otherwise reports on stderr and returns an exit status.
static int s_exchange(const char *endpoint, int timeout_ms,
                      const Evrelay__ControlRequest *request,
                      Evrelay__ControlReply **reply_p)
{
    *reply_p = NULL;
    size_t size = evrelay__control_request__get_packed_size(request);
    uint8_t *frame = malloc(size ? size : 1);
    if (!frame) {
        fprintf(stderr, "evrelayctl: out of memory\n");
        return S_EXIT_ERROR;
    }
    evrelay__control_request__pack(request, frame);

    int rc = S_EXIT_NO_ANSWER;
    void *mon = NULL;
    const char *refused = NULL; //  why the handshake failed, if it did
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
    if (!sock) {
        fprintf(stderr, "evrelayctl: zmq: %s\n", zmq_strerror(zmq_errno()));
        rc = S_EXIT_ERROR;
        goto done;
    }
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    char why[512];
    if (s_cert &&
        evr_curve_client(sock, s_cert, s_server_key, why, sizeof why)) {
        rc = s_usage_error("CURVE", why);
        goto done;
    }
    //  Watch the handshake, to say why a relay does not answer.
    mon = zmq_socket(ctx, ZMQ_PAIR);
    if (!mon ||
        zmq_socket_monitor(sock, "inproc://evrelayctl-handshake",
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) ||
        zmq_connect(mon, "inproc://evrelayctl-handshake")) {
        fprintf(stderr, "evrelayctl: zmq: %s\n", zmq_strerror(zmq_errno()));
        rc = S_EXIT_ERROR;
        goto done;
    }
    zmq_setsockopt(mon, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(sock, endpoint)) {
        rc = s_usage_error("bad endpoint", endpoint);
        goto done;
    }
    if (zmq_send(sock, frame, size, 0) < 0) {
        goto done; //  EAGAIN: the send timed out, no relay
    }

    int64_t deadline = s_now_ms() + timeout_ms;
    zmq_msg_t payload;
    zmq_msg_init(&payload);
    for (int64_t left = timeout_ms; left > 0; left = deadline - s_now_ms()) {
        zmq_pollitem_t items[2] = {{sock, 0, ZMQ_POLLIN, 0},
                                   {mon, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(items, 2, (long)left);
        if (n < 0 && zmq_errno() == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            refused = s_handshake_failure(mon);
            if (refused && !strncmp(refused, "the relay refused", 17))
                break; //  final: libzmq does not retry it
            continue;
        }
        if (s_recv_payload(sock, &payload)) {
            continue;
        }
        Evrelay__ControlReply *reply = evrelay__control_reply__unpack(
            NULL, zmq_msg_size(&payload), zmq_msg_data(&payload));
        if (!reply) {
            fprintf(stderr, "evrelayctl: undecodable answer from %s\n",
                    endpoint);
            rc = S_EXIT_ERROR;
            break;
        }
        if (reply->version != EVR_PROTOCOL_VERSION) {
            fprintf(stderr,
                    "evrelayctl: %s answers with protocol version %u, "
                    "expected %d\n",
                    endpoint, reply->version, EVR_PROTOCOL_VERSION);
            evrelay__control_reply__free_unpacked(reply, NULL);
            rc = S_EXIT_ERROR;
            break;
        }
        //  id 0 with an error: the relay could not read our request's id
        //  (undecodable or oversize frame); it is the answer to it.
        if (reply->id != request->id && !(reply->id == 0 && reply->error)) {
            //  Not ours (cannot happen on a fresh socket): keep waiting.
            evrelay__control_reply__free_unpacked(reply, NULL);
            continue;
        }
        *reply_p = reply;
        rc = 0;
        break;
    }
    zmq_msg_close(&payload);

done:
    if (rc == S_EXIT_NO_ANSWER && refused) {
        fprintf(stderr, "evrelayctl: no answer from %s: %s\n", endpoint,
                refused);
    } else if (rc == S_EXIT_NO_ANSWER) {
        fprintf(stderr, "evrelayctl: no answer from %s within %d ms\n",
                endpoint, timeout_ms);
    }
    if (sock) {
        zmq_close(sock);
    }
    if (mon) {
        zmq_close(mon);
    }
    if (ctx) {
        zmq_ctx_term(ctx);
    }
    free(frame);
    return rc;
}

//  --------------------------------------------------------------------------
//  Text tables

//  A table of strings printed in aligned columns, the last one unpadded.
typedef struct {
    size_t ncols;
    size_t nrows; //  rows held, the header included
    size_t alloc; //  rows allocated
    char **cells; //  nrows * ncols strings, owned
} s_table_t;

//  Creates a table with ncols columns; the first row added is the header.
static s_table_t *s_table_new(size_t ncols)
{
    s_table_t *self = calloc(1, sizeof *self);
    if (self) {
        self->ncols = ncols;
    }
    return self;
}

//  Destroys a table and its cells; sets *self_p to NULL.
static void s_table_destroy(s_table_t **self_p)
{
    s_table_t *self = *self_p;
    if (self) {
        for (size_t i = 0; i < self->nrows * self->ncols; i++) {
            free(self->cells[i]);
        }
        free(self->cells);
        free(self);
        *self_p = NULL;
    }
}

//  Adds a row of ncols cells and takes ownership of them (NULL cells print
//  as "-"). Returns 0, or -1 when out of memory.
static int s_table_add(s_table_t *self, char **row)
{
    if (self->nrows == self->alloc) {
        size_t alloc = self->alloc ? self->alloc * 2 : 16;
        char **cells =
            realloc(self->cells, alloc * self->ncols * sizeof *cells);
        if (!cells) {
            for (size_t c = 0; c < self->ncols; c++) {
                free(row[c]);
            }
            return -1;
        }
        self->cells = cells;
        self->alloc = alloc;
    }
    memcpy(self->cells + self->nrows * self->ncols, row,
           self->ncols * sizeof *row);
    self->nrows++;
    return 0;
}

//  Adds a row of constant strings (copied).
static int s_table_add_text(s_table_t *self, const char *const *texts)
{
    char *row[self->ncols];
    for (size_t c = 0; c < self->ncols; c++) {
        row[c] = texts[c] ? strdup(texts[c]) : NULL;
    }
    return s_table_add(self, row);
}

//  Number of data rows (the header not counted).
static size_t s_table_rows(s_table_t *self)
{
    return self->nrows ? self->nrows - 1 : 0;
}

//  Prints the table with columns two spaces apart.
static void s_table_print(s_table_t *self, FILE *out)
{
    size_t width[self->ncols];
    memset(width, 0, sizeof width);
    for (size_t r = 0; r < self->nrows; r++) {
        for (size_t c = 0; c < self->ncols; c++) {
            const char *cell = self->cells[r * self->ncols + c];
            size_t len = strlen(cell ? cell : "-");
            if (len > width[c]) {
                width[c] = len;
            }
        }
    }
    for (size_t r = 0; r < self->nrows; r++) {
        for (size_t c = 0; c < self->ncols; c++) {
            const char *cell = self->cells[r * self->ncols + c];
            if (c + 1 < self->ncols) {
                fprintf(out, "%-*s  ", (int)width[c], cell ? cell : "-");
            } else {
                fprintf(out, "%s\n", cell ? cell : "-");
            }
        }
    }
}

//  --------------------------------------------------------------------------
//  Result printers

//  Returns a JSON value as display text (new string): strings unquoted,
//  numbers and literals as JSON, containers as compact JSON. NULL in,
//  NULL out.
static char *s_json_text(json_t *value)
{
    char buf[64];
    switch (value ? json_typeof(value) : JSON_NULL) {
        case JSON_STRING:
            return strdup(json_string_value(value));
        case JSON_INTEGER:
            snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT,
                     json_integer_value(value));
            return strdup(buf);
        case JSON_REAL:
            snprintf(buf, sizeof buf, "%.6g", json_real_value(value));
            return strdup(buf);
        default:
            return value ? json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY)
                         : NULL;
    }
}

//  Adds one subscriber row (EVENT EXPIRE TTL SOCKET). Returns 0, or -1
//  when sub is not an object.
static int s_subscriber_row(s_table_t *table, json_t *event, json_t *sub)
{
    if (!json_is_object(sub)) {
        return -1;
    }
    char *row[4] = {s_json_text(json_object_get(event, "name")),
                    s_json_text(json_object_get(sub, "expire")),
                    s_json_text(json_object_get(sub, "ttl")),
                    s_json_text(json_object_get(sub, "socket"))};
    return s_table_add(table, row);
}

//  Adds the rows of one event object: "Subscribers" array or a single
//  "Subscriber". Returns 0, or -1 on an unexpected shape.
static int s_event_rows(s_table_t *table, json_t *event)
{
    if (!json_is_object(event)) {
        return -1;
    }
    json_t *one = json_object_get(event, "Subscriber");
    if (one) {
        return s_subscriber_row(table, event, one);
    }
    json_t *subs = json_object_get(event, "Subscribers");
    if (subs && !json_is_array(subs)) {
        return -1;
    }
    size_t i;
    json_t *sub;
    json_array_foreach(subs, i, sub)
    {
        if (s_subscriber_row(table, event, sub)) {
            return -1;
        }
    }
    return 0;
}

//  Prints a subscribers answer, {"Events":[...]} or {"Event":{...}}.
//  Returns 0, or -1 when the shape is not one of those.
static int s_print_subscribers(json_t *result)
{
    static const char *const head[] = {"EVENT", "EXPIRE", "TTL", "SOCKET"};
    s_table_t *table = s_table_new(4);
    if (!table || s_table_add_text(table, head)) {
        s_table_destroy(&table);
        return -1;
    }
    int rc = 0;
    json_t *events = json_object_get(result, "Events");
    if (events) {
        size_t i;
        json_t *event;
        if (!json_is_array(events)) {
            rc = -1;
        }
        json_array_foreach(events, i, event)
        {
            if (rc == 0) {
                rc = s_event_rows(table, event);
            }
        }
    } else {
        rc = s_event_rows(table, json_object_get(result, "Event"));
    }
    if (rc == 0) {
        if (s_table_rows(table)) {
            s_table_print(table, stdout);
        } else {
            printf("no subscribers\n");
        }
    }
    s_table_destroy(&table);
    return rc;
}

//  Prints an events list answer {"Events":[{"name","id"}...]} as ID NAME.
//  Returns 0, or -1 on an unexpected shape.
static int s_print_list(json_t *events)
{
    static const char *const head[] = {"ID", "NAME"};
    s_table_t *table = s_table_new(2);
    if (!table || s_table_add_text(table, head)) {
        s_table_destroy(&table);
        return -1;
    }
    int rc = 0;
    size_t i;
    json_t *event;
    json_array_foreach(events, i, event)
    {
        if (!json_is_object(event)) {
            rc = -1;
            break;
        }
        char *row[2] = {s_json_text(json_object_get(event, "id")),
                        s_json_text(json_object_get(event, "name"))};
        if (s_table_add(table, row)) {
            rc = -1;
            break;
        }
    }
    if (rc == 0) {
        if (s_table_rows(table)) {
            s_table_print(table, stdout);
        } else {
            printf("no events\n");
        }
    }
    s_table_destroy(&table);
    return rc;
}

//  True when value prints as a table: a non-empty array of objects.
static bool s_is_table(json_t *value)
{
    if (!json_is_array(value) || json_array_size(value) == 0) {
        return false;
    }
    size_t i;
    json_t *item;
    json_array_foreach(value, i, item)
    {
        if (!json_is_object(item)) {
            return false;
        }
    }
    return true;
}

//  Upper-cases a copy of text (a table header).
static char *s_upper(const char *text)
{
    char *copy = strdup(text);
    for (char *p = copy; p && *p; p++) {
        if (*p >= 'a' && *p <= 'z') {
            *p = (char)(*p - 'a' + 'A');
        }
    }
    return copy;
}

//  Deletes the keys of a table row whose values are objects (a target's
//  latency histogram): a cell cannot show them; --json does.
static void s_drop_nested(json_t *row)
{
    const char *key;
    json_t *value;
    void *tmp;
    json_object_foreach_safe(row, tmp, key, value)
    {
        if (json_is_object(value)) {
            json_object_del(row, key);
        }
    }
}

//  Flattens "children" arrays (a virtual target's child targets) into rows
//  right after their parent, the child's socket indented. Returns a new
//  array.
static json_t *s_flatten_children(json_t *array)
{
    json_t *flat = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(array, i, item)
    {
        json_t *row = json_deep_copy(item);
        json_t *children = json_object_get(item, "children");
        json_object_del(row, "children");
        s_drop_nested(row);
        json_array_append_new(flat, row);
        size_t j;
        json_t *child;
        json_array_foreach(children, j, child)
        {
            json_t *crow = json_deep_copy(child);
            const char *sock =
                json_string_value(json_object_get(child, "socket"));
            if (sock) {
                char indented[1200];
                snprintf(indented, sizeof indented, "  `- %s", sock);
                json_object_set_new(crow, "socket", json_string(indented));
            }
            json_object_del(crow, "children");
            s_drop_nested(crow);
            json_array_append_new(flat, crow);
        }
    }
    return flat;
}

//  Prints an array of objects as a table: the union of their keys as
//  columns in first-seen order, "socket" last (it is the widest). A
//  virtual target's children follow it, indented.
static void s_print_object_table(json_t *nested)
{
    json_t *array = s_flatten_children(nested);
    json_t *columns = json_array();
    bool has_socket = false;
    size_t i;
    json_t *item;
    json_array_foreach(array, i, item)
    {
        const char *key;
        json_t *unused;
        json_object_foreach(item, key, unused)
        {
            if (strcmp(key, "socket") == 0) {
                has_socket = true;
                continue;
            }
            size_t j;
            json_t *col;
            bool seen = false;
            json_array_foreach(columns, j, col)
            {
                seen = seen || strcmp(json_string_value(col), key) == 0;
            }
            if (!seen) {
                json_array_append_new(columns, json_string(key));
            }
        }
    }
    if (has_socket) {
        json_array_append_new(columns, json_string("socket"));
    }
    size_t ncols = json_array_size(columns);
    s_table_t *table = s_table_new(ncols);
    if (table) {
        char *head[ncols];
        for (size_t c = 0; c < ncols; c++) {
            head[c] = s_upper(json_string_value(json_array_get(columns, c)));
        }
        int rc = s_table_add(table, head);
        json_array_foreach(array, i, item)
        {
            char *row[ncols];
            for (size_t c = 0; c < ncols && rc == 0; c++) {
                const char *key = json_string_value(json_array_get(columns, c));
                row[c] = s_json_text(json_object_get(item, key));
            }
            if (rc == 0) {
                rc = s_table_add(table, row);
            }
        }
        if (rc == 0) {
            s_table_print(table, stdout);
        }
        s_table_destroy(&table);
    }
    json_decref(columns);
    json_decref(array);
}

//  Longest "prefix.key" label among the scalar leaves of an object, for
//  aligning the values of s_print_section.
static size_t s_label_width(json_t *object, size_t prefix_len)
{
    size_t width = 0;
    const char *key;
    json_t *value;
    json_object_foreach(object, key, value)
    {
        size_t len = prefix_len + (prefix_len ? 1 : 0) + strlen(key);
        if (json_is_object(value)) {
            len = s_label_width(value, len);
        } else if (s_is_table(value)) {
            len = 0;
        }
        if (len > width) {
            width = len;
        }
    }
    return width;
}

//  Prints an object generically, in two passes: first (tables false) its
//  scalars as "prefix.key  value" lines, nested objects recursively; then
//  (tables true) its arrays of objects as titled tables.
static void s_print_section(json_t *object, const char *prefix, int width,
                            bool tables)
{
    const char *key;
    json_t *value;
    json_object_foreach(object, key, value)
    {
        size_t size = strlen(prefix) + strlen(key) + 2;
        char label[size];
        snprintf(label, size, "%s%s%s", prefix, *prefix ? "." : "", key);
        if (json_is_object(value)) {
            s_print_section(value, label, width, tables);
        } else if (s_is_table(value)) {
            if (tables) {
                printf("%s%s:\n", width ? "\n" : "", label);
                s_print_object_table(value);
                width = 1; //  a blank line before any further table
            }
        } else if (!tables) {
            char *text = s_json_text(value);
            printf("%-*s  %s\n", width, label, text ? text : "null");
            free(text);
        }
    }
}

//  The columns of the members table of `cluster`: key, header.
static const char *const s_member_columns[][2] = {
    {"node", "NODE"},
    {"endpoint", "ENDPOINT"},
    {"state", "STATE"},
    {"ready", "READY"},
    {"instance", "INSTANCE"},
    {"seq", "SEQ"},
    {"applied_seq", "APPLIED"},
    {"hlc", "HLC"},
    {"records", "RECORDS"},
    {"digest", "DIGEST"},
    {"last_heartbeat_ms", "HEARTBEAT_MS"},
    {"last_sync_ms", "SYNC_MS"},
    {"deltas_in", "DELTAS_IN"},
    {"snapshots_pulled", "SNAPSHOTS"},
    {"gaps", "GAPS"},
};

#define S_MEMBER_COLUMNS (sizeof s_member_columns / sizeof *s_member_columns)

//  Prints a `cluster` answer: this relay's values as "key  value" lines
//  (store counters as store.KEY), then the members as a table. Returns 0,
//  or -1 when it is not an object.
static int s_print_cluster(json_t *result)
{
    if (!json_is_object(result)) {
        return -1;
    }
    json_t *copy = json_deep_copy(result);
    json_t *members = json_object_get(result, "members");
    json_object_del(copy, "members");
    int width = (int)s_label_width(copy, 0);
    s_print_section(copy, "", width, false);
    json_decref(copy);
    if (!json_is_array(members) || json_array_size(members) == 0) {
        printf("\nno members\n");
        return 0;
    }
    s_table_t *table = s_table_new(S_MEMBER_COLUMNS);
    const char *head[S_MEMBER_COLUMNS];
    for (size_t c = 0; c < S_MEMBER_COLUMNS; c++) {
        head[c] = s_member_columns[c][1];
    }
    int rc = table ? s_table_add_text(table, head) : -1;
    size_t i;
    json_t *member;
    json_array_foreach(members, i, member)
    {
        char *row[S_MEMBER_COLUMNS];
        for (size_t c = 0; c < S_MEMBER_COLUMNS; c++) {
            row[c] =
                s_json_text(json_object_get(member, s_member_columns[c][0]));
        }
        if (rc == 0) {
            rc = s_table_add(table, row);
        } else {
            for (size_t c = 0; c < S_MEMBER_COLUMNS; c++) {
                free(row[c]);
            }
        }
    }
    if (rc == 0) {
        printf("\nmembers:\n");
        s_table_print(table, stdout);
    }
    s_table_destroy(&table);
    return rc;
}

//  Prints a JSON value indented, the fallback for unknown shapes.
static void s_print_pretty(json_t *result)
{
    char *text = json_dumps(result, JSON_INDENT(2) | JSON_ENCODE_ANY);
    if (text) {
        printf("%s\n", text);
        free(text);
    }
}

//  Prints a result as text, picking the printer from its shape and the
//  command's kind.
static void s_print_result(const char *result_json, s_kind_t kind)
{
    json_error_t jerr;
    json_t *result = json_loads(result_json, JSON_DECODE_ANY, &jerr);
    if (!result) {
        printf("%s\n", result_json); //  not JSON: show it as it came
        return;
    }
    int rc = -1;
    json_t *events = json_object_get(result, "Events");
    if (json_is_string(result) &&
        strcmp(json_string_value(result), "OK") == 0) {
        printf("OK\n");
        rc = 0;
    } else if (json_is_array(events) &&
               (kind == S_KIND_SUBSCRIBERS ||
                (kind != S_KIND_LIST && s_is_table(events) &&
                 json_object_get(json_array_get(events, 0), "Subscribers")))) {
        rc = s_print_subscribers(result);
    } else if (json_is_array(events)) {
        rc = s_print_list(events);
    } else if (json_is_object(json_object_get(result, "Event"))) {
        rc = s_print_subscribers(result);
    } else if (kind == S_KIND_CLUSTER) {
        rc = s_print_cluster(result);
    } else if (kind == S_KIND_STATS && json_is_object(result)) {
        int width = (int)s_label_width(result, 0);
        s_print_section(result, "", width, false);
        s_print_section(result, "", width, true);
        rc = 0;
    }
    if (rc) {
        s_print_pretty(result);
    }
    json_decref(result);
}

//  Reports an error answer: "error CODE: MESSAGE[: DATA]" on stderr, and
//  with --json the JSON-RPC error object on stdout too.
static void s_print_error(const Evrelay__ControlReply__Error *error,
                          bool as_json)
{
    json_t *data = NULL;
    if (error->data_json) {
        data = json_loads(error->data_json, JSON_DECODE_ANY, NULL);
        if (!data) {
            data = json_string(error->data_json);
        }
    }
    if (as_json) {
        json_t *object = json_object();
        json_object_set_new(object, "code", json_integer(error->code));
        json_object_set_new(object, "message", json_string(error->message));
        if (data) {
            json_object_set(object, "data", data);
        }
        char *text = s_dump_steal(object);
        if (text) {
            printf("%s\n", text);
            free(text);
        }
    }
    fprintf(stderr, "error %d: %s", (int)error->code, error->message);
    if (error->data_json) {
        fprintf(stderr, ": %s",
                json_is_string(data) ? json_string_value(data)
                                     : error->data_json);
    }
    fprintf(stderr, "\n");
    json_decref(data);
}

//  --------------------------------------------------------------------------
//  keygen NAME [DIR [ENDPOINT]]: a certificate pair through czmq's zcert.
//  The secret file is written with mode 0600 whatever the umask.

static int s_keygen(int nargs, char **args)
{
    if (nargs < 1 || nargs > 3)
        return s_usage_error("wrong number of arguments",
                             "usage: keygen NAME [DIR [ENDPOINT]]");
    const char *name = args[0];
    const char *dir = nargs > 1 ? args[1] : ".";
    if (!*name || strchr(name, '/'))
        return s_usage_error("bad certificate name", name);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.cert", dir, name);
    if (access(path, F_OK) == 0)
        return s_usage_error("refusing to overwrite", path);
    zcert_t *cert = zcert_new();
    if (!cert) {
        fprintf(stderr, "evrelayctl: cannot make a key pair\n");
        return S_EXIT_ERROR;
    }
    zcert_set_meta(cert, "name", "%s", name);
    if (nargs > 2)
        zcert_set_meta(cert, "endpoint", "%s", args[2]);
    mode_t old = umask(077);
    int rc = zcert_save(cert, path);
    umask(old);
    char secret[4200];
    snprintf(secret, sizeof secret, "%s_secret", path);
    if (rc == 0)
        rc = chmod(secret, 0600) | chmod(path, 0644);
    if (rc) {
        fprintf(stderr, "evrelayctl: cannot write %s: %s\n", path,
                strerror(errno));
        zcert_destroy(&cert);
        return S_EXIT_ERROR;
    }
    printf("public key %s\n  %s (public: copy it where it is allowed)\n"
           "  %s (secret: keep it here, mode 0600)\n",
           zcert_public_txt(cert), path, secret);
    zcert_destroy(&cert);
    return 0;
}

//  --------------------------------------------------------------------------
//  Main

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"endpoint", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"cert", required_argument, NULL, 'k'},
        {"server-key", required_argument, NULL, 'K'},
        {NULL, 0, NULL, 0}};
    s_cert = getenv("EVRELAY_CERT");
    s_server_key = getenv("EVRELAY_SERVER_KEY");
    const char *endpoint = getenv("EVRELAY_CONTROL");
    if (!endpoint || !*endpoint) {
        endpoint = EVR_DEFAULT_CONTROL;
    }
    bool as_json = false;
    int timeout_ms = EVR_DEFAULT_CTL_TIMEOUT_MS;
    long long value;
    int opt;
    opterr = 0;
    //  '+': stop at the command, so "subscribe E S -1" keeps its "-1".
    while ((opt = getopt_long(argc, argv, "+:s:jt:h", longopts, NULL)) != -1) {
        switch (opt) {
            case 's':
                endpoint = optarg;
                break;
            case 'j':
                as_json = true;
                break;
            case 'k':
                s_cert = optarg;
                break;
            case 'K':
                s_server_key = optarg;
                break;
            case 't':
                if (s_parse_integer(optarg, &value) || value < 1 ||
                    value > 86400000) {
                    return s_usage_error("bad timeout", optarg);
                }
                timeout_ms = (int)value;
                break;
            case 'h':
                s_usage(stdout);
                return 0;
            default: {
                //  optopt names a short option; a long one is in argv
                char name[3] = {'-', (char)optopt, 0};
                return s_usage_error(opt == ':' ? "option needs a value"
                                                : "unknown option",
                                     optopt ? name : argv[optind - 1]);
            }
        }
    }
    if (optind >= argc) {
        return s_usage_error("missing COMMAND", NULL);
    }
    char *method = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;
    if (!strcmp(method, "keygen"))
        return s_keygen(nargs, args);
    if (s_cert && !*s_cert)
        s_cert = NULL;

    const s_command_t *command = s_command_lookup(method);
    char *params = NULL;
    if (command) {
        if (nargs < command->min_args || nargs > command->max_args) {
            char detail[128];
            snprintf(detail, sizeof detail, "usage: %s%s%s", method,
                     *command->args ? " " : "", command->args);
            return s_usage_error("wrong number of arguments", detail);
        }
        if (command->build(nargs, args, &params)) {
            return S_EXIT_USAGE;
        }
    } else if (nargs > 0 && !(params = s_string_array(nargs, args))) {
        return S_EXIT_USAGE;
    }

    Evrelay__ControlRequest request = EVRELAY__CONTROL_REQUEST__INIT;
    request.version = EVR_PROTOCOL_VERSION;
    request.id = s_request_id();
    request.method = method;
    request.params_json = params;

    Evrelay__ControlReply *reply = NULL;
    int rc = s_exchange(endpoint, timeout_ms, &request, &reply);
    free(params);
    if (rc) {
        return rc;
    }
    if (reply->error) {
        s_print_error(reply->error, as_json);
        rc = S_EXIT_ERROR;
    } else if (!reply->result_json) {
        fprintf(stderr, "evrelayctl: answer from %s has no result\n", endpoint);
        rc = S_EXIT_ERROR;
    } else if (as_json) {
        printf("%s\n", reply->result_json);
    } else {
        s_print_result(reply->result_json,
                       command ? command->kind : S_KIND_OTHER);
    }
    evrelay__control_reply__free_unpacked(reply, NULL);
    return rc;
}
