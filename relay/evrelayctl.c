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
#include "evr_reply.h"
#include "evrelay.pb-c.h"
#include <czmq.h>

#define S_EXIT_ERROR 1
#define S_EXIT_USAGE 2
#define S_EXIT_NO_ANSWER 3

//  CURVE: this operator's secret certificate and the relay's public key
//  (--cert / $EVRELAY_CERT, --server-key / $EVRELAY_SERVER_KEY).
static const char *s_cert;
static const char *s_server_key;

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
    evr_reply_kind_t kind;
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
     .kind = EVR_REPLY_LIST},
    {.names = {"subscribers", "subscribers_list", "evi:subscribers"},
     .args = "[EVENT [SOCKET]]",
     .help = "list all subscribers, those of EVENT, or one subscriber",
     .max_args = 2,
     .build = s_build_strings,
     .kind = EVR_REPLY_SUBSCRIBERS},
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
     .kind = EVR_REPLY_STATS},
    {.names = {"cluster"},
     .args = "",
     .help = "show the relay cluster: members, their state, sequences and "
             "versions, counters",
     .build = s_build_none,
     .kind = EVR_REPLY_CLUSTER},
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
    if (evr_reply_print(reply, command ? command->kind : EVR_REPLY_OTHER,
                        as_json, endpoint, stdout, stderr)) {
        rc = S_EXIT_ERROR;
    }
    evrelay__control_reply__free_unpacked(reply, NULL);
    return rc;
}
