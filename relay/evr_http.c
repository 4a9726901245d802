/*  evr_http.c - the relay's HTTP face: MI, metrics, health.

    One request, one round trip to the core thread:
      POST /mi       body -> JSON-RPC checks -> ControlRequest(method,
                     params) -> ControlReply -> {"jsonrpc":"2.0",
                     "result"|"error":...,"id":ID}
      GET /metrics   ControlRequest("stats") -> evr_metrics_render
      GET /health    ControlRequest("health") -> its result; 503 unless
                     ready, or when the core does not answer
    JSON-RPC as OpenSIPS' MI answers it: parse error -32700 and invalid
    request -32600 with id null; a notification (no id) is run and gets an
    empty 204 answer. Unlike OpenSIPS, a body of any size up to max_body
    works (it is gathered across libmicrohttpd's upload callbacks).

    Each round trip sends two frames: the caller's operator name (from the
    request's credentials, or EVR_POLICY_LOCAL when none are configured),
    then the ControlRequest. Credentials are read when the headers are:
    basic ones with libmicrohttpd's own decoder, a bearer token from the
    Authorization header; the policy compares secrets in constant time.
*/
#include "evr_http.h"
#include "evr_defaults.h"
#include "evr_metrics.h"
#include "evr_mi.h"
#include "evrelay.pb-c.h"

#include <czmq.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <strings.h>
#include <sys/socket.h>

//  How often a round trip waiting for the core checks for shutdown, ms.
#define S_WAIT_SLICE_MS 100

#define S_JSON "application/json"
#define S_TEXT "text/plain; charset=utf-8"

struct _evr_http_t {
    struct MHD_Daemon *daemon;
    //  DEALER to the core. Made before the HTTP thread starts and closed
    //  after it has stopped; in between only the HTTP thread uses it.
    void *core;
    uint64_t next_id; //  ControlRequest ids (HTTP thread only)
    size_t max_body;
    int timeout_ms;
    int stopping;                     //  atomic: evr_http_destroy has begun
    const evr_policy_rules_t *policy; //  credentials (read-only)
    bool auth;                        //  credentials are configured
    uint64_t unauthorized;            //  atomic: 401 answers
    uint64_t too_large;               //  atomic: bodies over max_body (413)
    char *tls_cert, *tls_key;         //  PEM text for HTTPS, or NULL
    char *cert_path, *key_path;       //  where they are read from (reload)
    int fd;                           //  the listening socket
    bool ipv6;
};

//  Where a request goes.
typedef enum {
    S_MI,
    S_METRICS,
    S_HEALTH,
    S_NOT_FOUND,
    S_NOT_ALLOWED
} s_route_t;

//  One request: its route and, for POST /mi, the body gathered across
//  upload callbacks.
typedef struct {
    s_route_t route;
    const char *allow; //  S_NOT_ALLOWED: the methods the path takes
    char *data;
    size_t len, cap;
    bool too_large;    //  over max_body: the rest is discarded, 413
    bool unauthorized; //  credentials missing or wrong: body discarded, 401
    const char *who;   //  the operator (the policy's string, or local)
} s_request_t;

//  --- small helpers --------------------------------------------------------

//  libmicrohttpd's error log, into ours.
static void s_log(void *arg, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = 0;
    zsys_warning("http: %s", line);
}

//  Queue a response that takes body (malloc'd, may be NULL when len is 0).
static enum MHD_Result s_respond(struct MHD_Connection *conn,
                                 unsigned int status, const char *type,
                                 char *body, size_t len, const char *allow)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free(body);
        return MHD_NO;
    }
    if (type)
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (allow)
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result rc = MHD_queue_response(conn, status, response);
    MHD_destroy_response(response);
    return rc;
}

//  Queue a short text answer (404, 405, 503 ...).
static enum MHD_Result s_respond_text(struct MHD_Connection *conn,
                                      unsigned int status, const char *text,
                                      const char *allow)
{
    char *body = strdup(text);
    if (!body)
        return MHD_NO;
    return s_respond(conn, status, S_TEXT, body, strlen(body), allow);
}

//  Queue a JSON answer built by evr_mi_jsonrpc_result or _error.
static enum MHD_Result s_respond_json(struct MHD_Connection *conn,
                                      unsigned int status, char *body)
{
    if (!body)
        return MHD_NO;
    return s_respond(conn, status, S_JSON, body, strlen(body), NULL);
}

//  --- the round trip to the core -------------------------------------------

//  Send one command of operator who to the core thread and wait at most
//  timeout_ms for its answer. Returns the reply (free with
//  evrelay__control_reply__free_unpacked), or NULL when none came.
static Evrelay__ControlReply *s_call(evr_http_t *self, const char *who,
                                     const char *method,
                                     const char *params_json)
{
    Evrelay__ControlRequest request = EVRELAY__CONTROL_REQUEST__INIT;
    request.version = EVR_PROTOCOL_VERSION;
    request.id = ++self->next_id;
    request.method = (char *)method;
    request.params_json = (char *)params_json;
    size_t size = evrelay__control_request__get_packed_size(&request);
    uint8_t *frame = malloc(size ? size : 1);
    if (!frame)
        return NULL;
    evrelay__control_request__pack(&request, frame);
    int sent = zmq_send(self->core, who, strlen(who), ZMQ_SNDMORE) < 0
                   ? -1
                   : zmq_send(self->core, frame, size, 0);
    free(frame);
    if (sent < 0)
        return NULL;
    int64_t deadline = zclock_mono() + self->timeout_ms;
    while (!__atomic_load_n(&self->stopping, __ATOMIC_RELAXED)) {
        int64_t left = deadline - zclock_mono();
        if (left <= 0)
            return NULL;
        zmq_pollitem_t item = {self->core, 0, ZMQ_POLLIN, 0};
        int n =
            zmq_poll(&item, 1, left < S_WAIT_SLICE_MS ? left : S_WAIT_SLICE_MS);
        if (n <= 0)
            continue; //  a slice passed, or EINTR
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, self->core, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            continue;
        }
        Evrelay__ControlReply *reply = evrelay__control_reply__unpack(
            NULL, zmq_msg_size(&msg), zmq_msg_data(&msg));
        zmq_msg_close(&msg);
        //  id 0 with an error: the core could not read the request's id
        if (reply && (reply->id == request.id || (!reply->id && reply->error)))
            return reply;
        //  the late answer to a request that timed out: not ours
        if (reply)
            evrelay__control_reply__free_unpacked(reply, NULL);
    }
    return NULL;
}

//  --- POST /mi -------------------------------------------------------------

//  Answer one MI call of operator who held in body.
static enum MHD_Result s_mi(evr_http_t *self, struct MHD_Connection *conn,
                            const char *who, const char *body, size_t len)
{
    evr_mi_call_t call;
    enum MHD_Result rc;
    if (evr_mi_jsonrpc_parse(body, len, &call)) {
        rc = s_respond_json(
            conn, MHD_HTTP_OK,
            evr_mi_jsonrpc_error(call.code, call.message, NULL, call.id_json));
        evr_mi_call_free(&call);
        return rc;
    }
    Evrelay__ControlReply *reply =
        s_call(self, who, call.method, call.params_json);
    if (call.notification)
        //  a notification: run, answered with nothing
        rc = s_respond(conn, MHD_HTTP_NO_CONTENT, NULL, NULL, 0, NULL);
    else if (!reply)
        rc = s_respond_json(
            conn, MHD_HTTP_SERVICE_UNAVAILABLE,
            evr_mi_jsonrpc_error(-32000, "Server error",
                                 "\"the relay did not answer in time\"",
                                 call.id_json));
    else if (reply->error)
        rc = s_respond_json(
            conn, MHD_HTTP_OK,
            evr_mi_jsonrpc_error(reply->error->code, reply->error->message,
                                 reply->error->data_json, call.id_json));
    else
        rc =
            s_respond_json(conn, MHD_HTTP_OK,
                           evr_mi_jsonrpc_result(
                               reply->result_json ? reply->result_json : "null",
                               call.id_json));
    if (reply)
        evrelay__control_reply__free_unpacked(reply, NULL);
    evr_mi_call_free(&call);
    return rc;
}

//  The answer to a body over max_body.
static enum MHD_Result s_too_large(evr_http_t *self,
                                   struct MHD_Connection *conn)
{
    char data[96];
    __atomic_add_fetch(&self->too_large, 1, __ATOMIC_RELAXED);
    snprintf(data, sizeof data, "\"request body over %zu bytes\"",
             self->max_body);
    return s_respond_json(
        conn, MHD_HTTP_CONTENT_TOO_LARGE,
        evr_mi_jsonrpc_error(-32600, "Invalid Request", data, NULL));
}

//  Add upload data to a body, or discard it once the body is too large.
static void s_body_add(evr_http_t *self, s_request_t *up, const char *data,
                       size_t size)
{
    if (up->too_large)
        return;
    if (up->len + size > self->max_body) {
        up->too_large = true;
        free(up->data);
        up->data = NULL;
        up->len = up->cap = 0;
        return;
    }
    if (up->len + size > up->cap) {
        size_t cap = up->cap ? up->cap : 4096;
        while (cap < up->len + size)
            cap *= 2;
        char *grown = realloc(up->data, cap);
        if (!grown) {
            up->too_large = true; //  cannot hold it either way
            return;
        }
        up->data = grown;
        up->cap = cap;
    }
    memcpy(up->data + up->len, data, size);
    up->len += size;
}

//  --- GET /metrics, GET /health -----------------------------------------

//  The answer to an MI error of the core for a GET: 403 for a refusal of
//  the access policy, else 500; the text is the message and its data.
static enum MHD_Result
s_respond_error(struct MHD_Connection *conn,
                const Evrelay__ControlReply__Error *error)
{
    json_t *data = error->data_json
                       ? json_loads(error->data_json, JSON_DECODE_ANY, NULL)
                       : NULL;
    char *body =
        zsys_sprintf("%s: %s\n", error->message ? error->message : "",
                     json_is_string(data) ? json_string_value(data) : "");
    json_decref(data);
    if (!body)
        return MHD_NO;
    return s_respond(conn,
                     error->code == 403 ? MHD_HTTP_FORBIDDEN
                                        : MHD_HTTP_INTERNAL_SERVER_ERROR,
                     S_TEXT, body, strlen(body), NULL);
}

//  Prometheus text from the core's stats, for operator who.
static enum MHD_Result s_metrics(evr_http_t *self, struct MHD_Connection *conn,
                                 const char *who)
{
    Evrelay__ControlReply *reply = s_call(self, who, "stats", NULL);
    char *text = NULL;
    size_t len = 0;
    if (reply && reply->error) {
        enum MHD_Result rc = s_respond_error(conn, reply->error);
        evrelay__control_reply__free_unpacked(reply, NULL);
        return rc;
    }
    if (reply && reply->result_json)
        text = evr_metrics_render(reply->result_json,
                                  strlen(reply->result_json), &len);
    if (reply)
        evrelay__control_reply__free_unpacked(reply, NULL);
    if (!text)
        return s_respond_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                              "the relay did not answer in time\n", NULL);
    return s_respond(conn, MHD_HTTP_OK, EVR_METRICS_CONTENT_TYPE, text, len,
                     NULL);
}

//  Live and ready, as the core sees it; 503 unless ready.
static enum MHD_Result s_health(evr_http_t *self, struct MHD_Connection *conn)
{
    Evrelay__ControlReply *reply =
        s_call(self, EVR_POLICY_LOCAL, "health", NULL);
    json_t *health = reply && reply->result_json
                         ? json_loads(reply->result_json, 0, NULL)
                         : NULL;
    if (reply)
        evrelay__control_reply__free_unpacked(reply, NULL);
    if (!json_is_object(health)) {
        json_decref(health);
        health = json_pack("{s:s,s:b,s:b}", "status", "unavailable", "live", 0,
                           "ready", 0);
    }
    bool ready = json_is_true(json_object_get(health, "ready"));
    char *body = json_dumps(health, JSON_COMPACT);
    json_decref(health);
    return s_respond_json(
        conn, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, body);
}

//  --- libmicrohttpd callbacks ------------------------------------------------

//  True when a GET (or HEAD) request, the methods of /metrics and /health.
static bool s_is_get(const char *method)
{
    return !strcmp(method, MHD_HTTP_METHOD_GET) ||
           !strcmp(method, MHD_HTTP_METHOD_HEAD);
}

//  The operator the request's credentials name: a basic user and
//  password (libmicrohttpd decodes them), or a bearer token. NULL when
//  they are missing or match no [http_auth] credential.
static const char *s_authenticate(evr_http_t *self, struct MHD_Connection *conn)
{
    char *password = NULL;
    char *user = MHD_basic_auth_get_username_password(conn, &password);
    if (user) {
        const char *name =
            evr_policy_basic(self->policy, user, password ? password : "");
        if (password) {
            sodium_memzero(password, strlen(password));
            MHD_free(password);
        }
        MHD_free(user);
        return name;
    }
    const char *header = MHD_lookup_connection_value(
        conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!header || strncasecmp(header, "Bearer ", 7))
        return NULL;
    const char *token = header + 7;
    while (*token == ' ')
        token++;
    return evr_policy_bearer(self->policy, token);
}

//  Answer 401 with a challenge for each kind of credential configured.
static enum MHD_Result s_unauthorized(evr_http_t *self,
                                      struct MHD_Connection *conn)
{
    __atomic_add_fetch(&self->unauthorized, 1, __ATOMIC_RELAXED);
    static const char text[] = "unauthorized\n";
    struct MHD_Response *response = MHD_create_response_from_buffer(
        strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, S_TEXT);
    if (evr_policy_credentials(self->policy, true))
        MHD_add_response_header(response, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"" EVR_HTTP_REALM "\"");
    enum MHD_Result rc =
        evr_policy_credentials(self->policy, false)
            ? MHD_queue_basic_auth_fail_response(conn, EVR_HTTP_REALM, response)
            : MHD_queue_response(conn, MHD_HTTP_UNAUTHORIZED, response);
    MHD_destroy_response(response);
    return rc;
}

//  First call of a request (headers read): route it, authenticate it and
//  keep both in a new request state. The answer comes on a later call,
//  once any body is read (answering now would close the connection).
static enum MHD_Result s_begin(evr_http_t *self, struct MHD_Connection *conn,
                               const char *url, const char *method,
                               void **state)
{
    s_request_t *req = calloc(1, sizeof *req);
    if (!req)
        return MHD_NO;
    *state = req;
    if (!strcmp(url, "/metrics") || !strcmp(url, "/health")) {
        req->route = url[1] == 'm' ? S_METRICS : S_HEALTH;
        if (!s_is_get(method)) {
            req->route = S_NOT_ALLOWED;
            req->allow = "GET, HEAD";
        }
    } else if (!strcmp(url, "/mi")) {
        req->route = S_MI;
        if (strcmp(method, MHD_HTTP_METHOD_POST)) {
            req->route = S_NOT_ALLOWED;
            req->allow = "POST";
        }
    } else
        req->route = S_NOT_FOUND;
    //  /mi and /metrics act for an operator; /health is open
    req->who = EVR_POLICY_LOCAL;
    if (self->auth && (req->route == S_MI || req->route == S_METRICS)) {
        req->who = s_authenticate(self, conn);
        req->unauthorized = !req->who;
    }
    //  A client that waits for "100 Continue" before it sends a body too
    //  large (or one that is not authenticated) is refused now. Others are
    //  sending it already: it is read and discarded (refusing now would
    //  close the connection under them).
    const char *length = MHD_lookup_connection_value(
        conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_EXPECT);
    bool waits = expect && !strcasecmp(expect, "100-continue");
    if (req->unauthorized && waits)
        return s_unauthorized(self, conn);
    if (req->route == S_MI && length &&
        strtoull(length, NULL, 10) > self->max_body) {
        if (waits)
            return s_too_large(self, conn);
        req->too_large = true;
    }
    return MHD_YES;
}

//  libmicrohttpd's access handler: called once with the headers, then for
//  each piece of the body, then once more with no data: the answer.
static enum MHD_Result s_on_request(void *cls, struct MHD_Connection *conn,
                                    const char *url, const char *method,
                                    const char *version,
                                    const char *upload_data,
                                    size_t *upload_data_size, void **state)
{
    evr_http_t *self = cls;
    s_request_t *req = *state;
    if (!req)
        return s_begin(self, conn, url, method, state);
    if (*upload_data_size) {
        if (req->route == S_MI && !req->unauthorized)
            s_body_add(self, req, upload_data, *upload_data_size);
        *upload_data_size = 0; //  other routes ignore a body
        return MHD_YES;
    }
    if (req->unauthorized)
        return s_unauthorized(self, conn);
    switch (req->route) {
        case S_METRICS:
            return s_metrics(self, conn, req->who);
        case S_HEALTH:
            return s_health(self, conn);
        case S_NOT_FOUND:
            return s_respond_text(conn, MHD_HTTP_NOT_FOUND, "not found\n",
                                  NULL);
        case S_NOT_ALLOWED:
            return s_respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                  "method not allowed\n", req->allow);
        case S_MI:
        default:
            break;
    }
    if (req->too_large)
        return s_too_large(self, conn);
    return s_mi(self, conn, req->who, req->data ? req->data : "", req->len);
}

//  libmicrohttpd's completion callback: free the request state.
static void s_on_completed(void *cls, struct MHD_Connection *conn, void **state,
                           enum MHD_RequestTerminationCode why)
{
    s_request_t *req = *state;
    *state = NULL;
    if (req) {
        free(req->data);
        free(req);
    }
}

//  --- construction -----------------------------------------------------------

//  Bind and listen on "ADDR:PORT" or "[ADDR6]:PORT". Returns the socket,
//  or -1 with a reason in err; *ipv6 tells the address family, *loopback
//  whether the address is a loopback one.
static int s_listen(const char *listen_at, bool *ipv6, bool *loopback,
                    char *err, size_t errlen)
{
    char host[256];
    const char *port;
    if (listen_at[0] == '[') {
        const char *close = strchr(listen_at, ']');
        size_t n = close ? (size_t)(close - listen_at - 1) : 0;
        if (!close || close[1] != ':' || n == 0 || n >= sizeof host) {
            snprintf(err, errlen, "expected [ADDR]:PORT, got '%s'", listen_at);
            return -1;
        }
        memcpy(host, listen_at + 1, n);
        host[n] = 0;
        port = close + 2;
    } else {
        const char *colon = strrchr(listen_at, ':');
        size_t n = colon ? (size_t)(colon - listen_at) : 0;
        if (!colon || n == 0 || n >= sizeof host || memchr(listen_at, ':', n)) {
            snprintf(err, errlen,
                     "expected ADDR:PORT or [ADDR6]:PORT, got '%s'", listen_at);
            return -1;
        }
        memcpy(host, listen_at, n);
        host[n] = 0;
        port = colon + 1;
    }
    char *end;
    long number = strtol(port, &end, 10);
    if (!*port || *end || number < 1 || number > 65535) {
        snprintf(err, errlen, "bad port in '%s'", listen_at);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *found = NULL;
    int gai = getaddrinfo(host, port, &hints, &found);
    if (gai) {
        snprintf(err, errlen, "cannot resolve '%.200s': %s", host,
                 gai_strerror(gai));
        return -1;
    }
    int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        if (found->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    }
    if (fd < 0 || bind(fd, found->ai_addr, found->ai_addrlen) ||
        listen(fd, 64)) {
        snprintf(err, errlen, "cannot listen on %s: %s", listen_at,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(found);
        return -1;
    }
    *ipv6 = found->ai_family == AF_INET6;
    *loopback = evr_policy_loopback(found->ai_addr);
    freeaddrinfo(found);
    return fd;
}

//  Start serving on a duplicate of self->fd with the current certificate,
//  if any: the daemon, or NULL. libmicrohttpd owns the duplicate (it
//  closes it on a failed start too), so self->fd outlives every daemon.
static struct MHD_Daemon *s_start(evr_http_t *self)
{
    int fd = fcntl(self->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    //  The HTTP thread inherits a blocked signal mask: signals go to the
    //  core thread, whose poll they interrupt.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    //  MHD_USE_ITC: a reload quiesces the daemon to take its socket back
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                         MHD_USE_AUTO | MHD_USE_ITC |
                         (self->ipv6 ? MHD_USE_IPv6 : 0) |
                         (self->tls_cert ? MHD_USE_TLS : 0);
    //  Without TLS the key and certificate options are left out: the list
    //  ends at the first MHD_OPTION_END.
    struct MHD_Daemon *daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, s_on_request, self, MHD_OPTION_EXTERNAL_LOGGER,
        s_log, self, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_NOTIFY_COMPLETED, s_on_completed, self,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)EVR_DEFAULT_HTTP_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)EVR_DEFAULT_HTTP_IDLE_S,
        self->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END,
        self->tls_cert, MHD_OPTION_HTTPS_MEM_KEY, self->tls_key,
        MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return daemon;
}

//  Free a PEM key, wiping it first.
static void s_free_key(char **key_p)
{
    if (*key_p)
        sodium_memzero(*key_p, strlen(*key_p));
    free(*key_p);
    *key_p = NULL;
}

//  Read a PEM file (at most 1 MiB) into a string. NULL with a reason in
//  err on failure.
static char *s_read_pem(const char *path, const char *what, char *err,
                        size_t errlen)
{
    errno = 0;
    zchunk_t *chunk = zchunk_slurp(path, 1 << 20);
    size_t size = chunk ? zchunk_size(chunk) : 0;
    char *text = size ? malloc(size + 1) : NULL;
    if (text) {
        memcpy(text, zchunk_data(chunk), size);
        text[size] = 0;
    }
    zchunk_destroy(&chunk);
    if (!text || !strstr(text, "-----BEGIN ")) {
        snprintf(err, errlen, "http: cannot read the TLS %s %s: %s", what, path,
                 !size && errno ? strerror(errno) : "not a PEM file");
        free(text);
        return NULL;
    }
    return text;
}

//  Bind listen and start serving.
evr_http_t *evr_http_new(const evr_http_opts_t *opts, void *zmq_ctx,
                         const char *core_endpoint, char *err, size_t errlen)
{
    const char *listen = opts->listen;
    evr_http_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->fd = -1;
    if (!opts->tls_cert != !opts->tls_key) {
        snprintf(err, errlen,
                 "http: TLS needs both a certificate "
                 "(http_cert) and its key (http_key)");
        evr_http_destroy(&self);
        return NULL;
    }
    if (opts->tls_cert &&
        (!(self->cert_path = strdup(opts->tls_cert)) ||
         !(self->key_path = strdup(opts->tls_key)) ||
         !(self->tls_cert =
               s_read_pem(opts->tls_cert, "certificate", err, errlen)) ||
         !(self->tls_key = s_read_pem(opts->tls_key, "key", err, errlen)))) {
        evr_http_destroy(&self);
        return NULL;
    }
    self->policy = opts->policy;
    self->auth = evr_policy_credentials(self->policy, true) ||
                 evr_policy_credentials(self->policy, false);
    if (self->auth && sodium_init() < 0) {
        snprintf(err, errlen, "http: cannot initialise libsodium");
        evr_http_destroy(&self);
        return NULL;
    }
    self->max_body = opts->max_body;
    self->timeout_ms = EVR_DEFAULT_HTTP_CORE_TIMEOUT_MS;
    self->core = zmq_socket(zmq_ctx, ZMQ_DEALER);
    int linger = 0;
    if (!self->core ||
        zmq_setsockopt(self->core, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(self->core, ZMQ_SNDTIMEO, &self->timeout_ms,
                       sizeof self->timeout_ms) ||
        zmq_connect(self->core, core_endpoint)) {
        snprintf(err, errlen, "http: cannot connect to %s: %s", core_endpoint,
                 zmq_strerror(zmq_errno()));
        evr_http_destroy(&self);
        return NULL;
    }
    bool ipv6 = false, loopback = false;
    char why[512];
    int fd = s_listen(listen, &ipv6, &loopback, why, sizeof why);
    if (fd < 0) {
        snprintf(err, errlen, "http: %s", why);
        evr_http_destroy(&self);
        return NULL;
    }
    if (!loopback && !self->auth && !opts->insecure) {
        snprintf(err, errlen,
                 "http: %s is not a loopback address and [http_auth] has no "
                 "credentials: add credentials, bind to loopback, or start "
                 "with --insecure",
                 listen);
        close(fd);
        evr_http_destroy(&self);
        return NULL;
    }
    if (!loopback && !self->auth)
        zsys_warning("http: %s is beyond loopback and has no credentials "
                     "(--insecure): whoever reaches it acts as operator '%s'",
                     listen, EVR_POLICY_LOCAL);
    if (!loopback && self->auth && !self->tls_cert)
        zsys_warning("http: %s is beyond loopback without TLS: credentials "
                     "and events cross the network in clear (set "
                     "[security] http_cert and http_key)",
                     listen);
    self->fd = fd;
    self->ipv6 = ipv6;
    self->daemon = s_start(self);
    if (!self->daemon) {
        snprintf(err, errlen, "http: cannot serve on %s%s", listen,
                 self->tls_cert ? " (is the TLS key the certificate's?)" : "");
        evr_http_destroy(&self); //  closes fd
        return NULL;
    }
    zsys_info("http: serving %s on %s (POST /mi, GET /metrics, GET "
              "/health)%s",
              self->tls_cert ? "HTTPS" : "HTTP", listen,
              self->auth ? ", credentials required" : "");
    return self;
}

//  How many requests were answered 401.
uint64_t evr_http_unauthorized(const evr_http_t *self)
{
    return self ? __atomic_load_n(&self->unauthorized, __ATOMIC_RELAXED) : 0;
}

//  Stop serving, close, free, NULL the pointer.
void evr_http_destroy(evr_http_t **self_p)
{
    evr_http_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    __atomic_store_n(&self->stopping, 1, __ATOMIC_RELAXED);
    if (self->daemon)
        MHD_stop_daemon(self->daemon); //  joins the HTTP thread
    if (self->fd >= 0)
        close(self->fd);
    if (self->core)
        zmq_close(self->core);
    s_free_key(&self->tls_key);
    free(self->tls_cert);
    free(self->cert_path);
    free(self->key_path);
    free(self);
}

//  Read the certificate and key again and serve with them.
int evr_http_reload(evr_http_t *self, char *err, size_t errlen)
{
    if (!self || !self->cert_path)
        return 0;
    char *cert = s_read_pem(self->cert_path, "certificate", err, errlen);
    char *key = cert ? s_read_pem(self->key_path, "key", err, errlen) : NULL;
    if (!key) {
        free(cert);
        return -1;
    }
    if (self->daemon) {
        MHD_socket fd = MHD_quiesce_daemon(self->daemon);
        if (fd == MHD_INVALID_SOCKET) {
            snprintf(err, errlen,
                     "http: cannot take the listening socket back");
            free(cert);
            s_free_key(&key);
            return -1;
        }
        MHD_stop_daemon(self->daemon); //  joins the HTTP thread
        close(fd);                     //  its duplicate of self->fd
        self->daemon = NULL;
    }
    char *old_cert = self->tls_cert, *old_key = self->tls_key;
    self->tls_cert = cert;
    self->tls_key = key;
    self->daemon = s_start(self);
    if (self->daemon) {
        free(old_cert);
        s_free_key(&old_key);
        zsys_info("http: serving HTTPS with the certificate read again "
                  "from %s",
                  self->cert_path);
        return 0;
    }
    //  the new pair does not go together: serve on with the old one
    free(self->tls_cert);
    s_free_key(&self->tls_key);
    self->tls_cert = old_cert;
    self->tls_key = old_key;
    self->daemon = s_start(self);
    snprintf(err, errlen,
             "http: cannot serve with the certificate and key read again "
             "(is the TLS key the certificate's?): %s",
             self->daemon ? "kept the ones read before" : "not serving");
    return -1;
}

//  How many request bodies over max_body were refused so far.
uint64_t evr_http_too_large(const evr_http_t *self)
{
    return __atomic_load_n(&self->too_large, __ATOMIC_RELAXED);
}
