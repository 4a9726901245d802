/*  evr_tr_http.c - http:// and https:// targets: JSON webhooks.

    Each event is one POST of its JSON-RPC payload to the URL, with
    `Content-Type: application/json` and `X-Evrelay-Event-Id: ID` (the
    event id, docs/OPERATIONS.md; left out for an event without one). A 2xx answer is a delivery; anything
    else (another status, a timeout, a refused or broken connection) is a
    failure, counted and never retried (FAILOVER and ROUND-ROBIN move the
    event on to their next child). Redirects are not followed.

    The I/O runs through one libcurl multi handle per target, made lazily
    by the owning worker and driven by its reactor, never blocking it:
    curl's sockets (learnt through CURLMOPT_SOCKETFUNCTION) are handed out
    as poll items, curl_multi_timeout() gives the next timer, and
    curl_multi_socket_action() runs on readiness and on timers; finished
    requests come back from curl_multi_info_read(). The multi handle's
    connection cache keeps connections alive between requests (HTTP/1.1
    keep-alive; HTTP/2 multiplexing when an https server offers it), with
    at most S_MAX_CONNECTIONS connections to the host. At most
    S_MAX_INFLIGHT requests run at once; the rest waits in the target's
    queue. Requests in flight on several connections may complete, and
    reach the server, out of order.

    Timeouts: [relay] connect_timeout_ms bounds the connect (and TLS
    handshake), [http] timeout the whole request. https verifies the
    server against the system CA store (libcurl's default bundle, from
    ca-certificates) and checks the host name.

    curl_global_init() must have run before the workers start (evrelayd's
    main does it).
*/
#include "evr_transport.h"

#include <curl/curl.h>
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Requests in flight per target: enough to keep S_MAX_CONNECTIONS busy
//  with a slow server, bounded so a dead one fails at most this many per
//  timeout while the rest waits, counted, in the target's queue.
#define S_MAX_INFLIGHT 64

//  Connections per target (one host): parallelism for a slow webhook
//  without flooding it; kept alive and reused from curl's cache.
#define S_MAX_CONNECTIONS 4

//  When curl watches more sockets than the reactor polls for one target,
//  the rest are checked by a timer this often, microseconds.
#define S_OVERFLOW_CHECK_US 10000

//  One request: a delivery taken off the queue and its easy handle (kept
//  and reused, so its TLS session cache survives between requests).
typedef struct {
    CURL *easy;
    evr_delivery_t d;
    bool running;
    struct curl_slist *headers; //  the target's, plus the event id's
    char error[CURL_ERROR_SIZE];
} s_req_t;

//  A socket curl asked us to watch, and for what (CURL_POLL_*).
typedef struct {
    curl_socket_t fd;
    int what;
} s_sock_t;

typedef struct {
    const char *url;
    struct curl_slist *headers;
    CURLM *multi;                  //  made by the worker at the first flush
    s_req_t *reqs[S_MAX_INFLIGHT]; //  allocated on demand
    size_t nreqs;
    s_req_t *idle[S_MAX_INFLIGHT]; //  the requests not running
    size_t nidle;
    size_t inflight;
    s_sock_t *socks; //  what curl watches
    size_t nsocks, capsocks;
    size_t exposed; //  how many of socks the last poll_items handed out
    bool failing;   //  the last outcome was a failure (logged once)
} s_state_t;

//  Check the URL and prepare the state; curl handles are made by the
//  worker.
static int s_open(evr_target_t *t, char *err, size_t errlen)
{
    const char *url = evr_sockspec_endpoint(evr_target_spec(t));
    if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))) {
        snprintf(err, errlen, "http: not an http:// or https:// URL");
        return -1;
    }
    s_state_t *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    evr_target_set_state(t, st);
    st->url = url;
    struct curl_slist *h =
        curl_slist_append(NULL, "Content-Type: application/json");
    //  no "Expect: 100-continue" round trip before larger bodies
    struct curl_slist *h2 = h ? curl_slist_append(h, "Expect:") : NULL;
    if (!h2) {
        curl_slist_free_all(h);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    st->headers = h2;
    return 0;
}

//  curl: a socket to watch (or to forget, CURL_POLL_REMOVE). Returns 0, or
//  -1 when out of memory (curl then fails the transfers).
static int s_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp,
                       void *socketp)
{
    s_state_t *st = userp;
    size_t i = 0;
    while (i < st->nsocks && st->socks[i].fd != fd)
        i++;
    if (what == CURL_POLL_REMOVE) {
        if (i < st->nsocks)
            st->socks[i] = st->socks[--st->nsocks];
        return 0;
    }
    if (i == st->nsocks) {
        if (st->nsocks == st->capsocks) {
            size_t cap = st->capsocks ? st->capsocks * 2 : 8;
            s_sock_t *grown = realloc(st->socks, cap * sizeof *grown);
            if (!grown)
                return -1;
            st->socks = grown;
            st->capsocks = cap;
        }
        st->socks[st->nsocks++].fd = fd;
    }
    st->socks[i].what = what;
    return 0;
}

//  curl: the response body, which nobody needs.
static size_t s_discard(char *data, size_t size, size_t n, void *arg)
{
    return size * n;
}

//  Worker: make the multi handle. Returns 0 or -1.
static int s_setup(s_state_t *st)
{
    st->multi = curl_multi_init();
    if (!st->multi)
        return -1;
    curl_multi_setopt(st->multi, CURLMOPT_SOCKETFUNCTION, s_socket_cb);
    curl_multi_setopt(st->multi, CURLMOPT_SOCKETDATA, st);
    curl_multi_setopt(st->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      (long)S_MAX_CONNECTIONS);
    curl_multi_setopt(st->multi, CURLMOPT_MAXCONNECTS, (long)S_MAX_CONNECTIONS);
    return 0;
}

//  Worker: a new request slot with its easy handle and the options every
//  request of the target shares. Returns NULL when out of memory.
static s_req_t *s_req_new(evr_target_t *t, s_state_t *st)
{
    const evr_target_opts_t *opts = evr_target_opts(t);
    s_req_t *req = calloc(1, sizeof *req);
    if (!req || !(req->easy = curl_easy_init())) {
        free(req);
        return NULL;
    }
    CURL *e = req->easy;
    curl_easy_setopt(e, CURLOPT_URL, st->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, st->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "evrelay");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)opts->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)opts->http_timeout_ms);
    if (opts->http_ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, opts->http_ca_file);
    if (opts->http_client_cert) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, opts->http_client_cert);
        curl_easy_setopt(e, CURLOPT_SSLKEY, opts->http_client_key);
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s_discard);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, req);
    st->reqs[st->nreqs++] = req;
    return req;
}

//  Worker: the request's headers: the target's, then the event id (when
//  that list cannot be made, the target's alone).
static void s_set_headers(s_state_t *st, s_req_t *req)
{
    curl_slist_free_all(req->headers);
    req->headers = NULL;
    const char *id = req->d.msg->id;
    if (id && id[0]) {
        char line[256];
        snprintf(line, sizeof line, "X-Evrelay-Event-Id: %.200s", id);
        struct curl_slist *h = NULL;
        for (struct curl_slist *o = st->headers; o; o = o->next) {
            struct curl_slist *grown = curl_slist_append(h, o->data);
            if (!grown)
                goto failed;
            h = grown;
        }
        struct curl_slist *grown = curl_slist_append(h, line);
        if (!grown)
            goto failed;
        req->headers = grown;
        curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, req->headers);
        return;
    failed:
        curl_slist_free_all(h);
    }
    curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, st->headers);
}

//  Log the first failure after a success, and the first success after
//  failures: the counters carry the rest.
static void s_note(evr_target_t *t, s_state_t *st, const s_req_t *req,
                   CURLcode rc, long status, bool ok)
{
    if (ok) {
        if (st->failing)
            zsys_info("%s: delivering again", evr_target_socket(t));
        st->failing = false;
        return;
    }
    if (!st->failing) {
        if (rc != CURLE_OK)
            zsys_warning("%s: %s", evr_target_socket(t),
                         req->error[0] ? req->error : curl_easy_strerror(rc));
        else
            zsys_warning("%s: HTTP status %ld", evr_target_socket(t), status);
    }
    st->failing = true;
}

//  Complete every request curl has finished: 2xx = delivered.
static void s_reap(evr_target_t *t, s_state_t *st)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(st->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *easy = m->easy_handle;
        CURLcode rc = m->data.result;
        char *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        s_req_t *req = (s_req_t *)priv;
        long status = 0;
        if (rc == CURLE_OK)
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(st->multi, easy);
        bool ok = rc == CURLE_OK && status >= 200 && status < 300;
        s_note(t, st, req, rc, status, ok);
        evr_delivery_t d = req->d;
        req->running = false;
        st->idle[st->nidle++] = req;
        st->inflight--;
        evr_target_complete(t, &d, ok);
    }
}

//  Start requests for the queue's head, up to S_MAX_INFLIGHT.
static void s_flush(evr_target_t *t, int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    if (!st->multi && s_setup(st)) {
        evr_target_complete_front(t, evr_target_queued(t), false);
        return;
    }
    while (st->inflight < S_MAX_INFLIGHT && evr_target_queued(t)) {
        s_req_t *req = st->nidle ? st->idle[--st->nidle] : s_req_new(t, st);
        if (!req) {
            evr_target_complete_front(t, 1, false);
            continue;
        }
        evr_target_take(t, &req->d);
        req->error[0] = 0;
        s_set_headers(st, req);
        //  the body stays in the message, referenced until completion
        const char *body = req->d.msg->data;
        curl_easy_setopt(req->easy, CURLOPT_POSTFIELDSIZE,
                         (long)req->d.msg->len);
        curl_easy_setopt(req->easy, CURLOPT_POSTFIELDS, body);
        if (curl_multi_add_handle(st->multi, req->easy) != CURLM_OK) {
            evr_delivery_t d = req->d;
            st->idle[st->nidle++] = req;
            evr_target_complete(t, &d, false);
            continue;
        }
        req->running = true;
        st->inflight++;
    }
}

//  Hand curl's sockets to the reactor, up to max of them (the rest are
//  checked by the overflow timer).
static int s_poll_items(evr_target_t *t, zmq_pollitem_t *items, int max)
{
    s_state_t *st = evr_target_state(t);
    size_t n = st->nsocks < (size_t)max ? st->nsocks : (size_t)max;
    for (size_t i = 0; i < n; i++) {
        short events = 0;
        if (st->socks[i].what & CURL_POLL_IN)
            events |= ZMQ_POLLIN;
        if (st->socks[i].what & CURL_POLL_OUT)
            events |= ZMQ_POLLOUT;
        items[i] = (zmq_pollitem_t){NULL, st->socks[i].fd, events, 0};
    }
    st->exposed = n;
    return (int)n;
}

//  Sockets are ready: let curl act on them, then complete what finished.
static void s_on_poll(evr_target_t *t, zmq_pollitem_t *items, int n,
                      int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    if (!st->multi)
        return;
    int running;
    for (int i = 0; i < n; i++) {
        if (!items[i].revents)
            continue;
        int mask = 0;
        if (items[i].revents & ZMQ_POLLIN)
            mask |= CURL_CSELECT_IN;
        if (items[i].revents & ZMQ_POLLOUT)
            mask |= CURL_CSELECT_OUT;
        if (items[i].revents & ZMQ_POLLERR)
            mask |= CURL_CSELECT_ERR;
        curl_multi_socket_action(st->multi, items[i].fd, mask, &running);
    }
    s_reap(t, st);
}

//  When curl wants to run next: its own timeout (0 = due now, which is
//  "in the past" for the reactor), or sooner while sockets overflow the
//  poll items.
static int64_t s_next_timer(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    if (!st->multi || !st->inflight)
        return INT64_MAX;
    long ms = -1;
    curl_multi_timeout(st->multi, &ms);
    int64_t when = ms < 0    ? INT64_MAX
                   : ms == 0 ? 0
                             : zclock_usecs() + ms * 1000;
    if (st->nsocks > st->exposed) {
        int64_t check = zclock_usecs() + S_OVERFLOW_CHECK_US;
        if (check < when)
            when = check;
    }
    return when;
}

//  curl's timer is due (timeouts, connects, retries): run it, and let curl
//  check any socket the reactor did not poll.
static void s_on_timer(evr_target_t *t, int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    if (!st->multi)
        return;
    int running;
    if (st->nsocks > st->exposed) {
        //  copy first: socket_action may change the list
        curl_socket_t fds[S_MAX_INFLIGHT];
        size_t n = 0;
        for (size_t i = st->exposed; i < st->nsocks && n < S_MAX_INFLIGHT; i++)
            fds[n++] = st->socks[i].fd;
        for (size_t i = 0; i < n; i++)
            curl_multi_socket_action(st->multi, fds[i], 0, &running);
    }
    curl_multi_socket_action(st->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    s_reap(t, st);
}

//  Requests in flight need the reactor. Idle kept-alive connections do
//  not: curl checks them when it reuses them.
static bool s_busy(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    return st && st->inflight > 0;
}

//  Stop every request and free the curl handles (closing connections).
//  Returns the deliveries that were in flight in out (n of them), for the
//  caller to complete or release.
static size_t s_teardown(s_state_t *st, evr_delivery_t *out)
{
    size_t n = 0;
    for (size_t i = 0; i < st->nreqs; i++) {
        s_req_t *req = st->reqs[i];
        if (req->running) {
            curl_multi_remove_handle(st->multi, req->easy);
            out[n++] = req->d;
        }
        curl_easy_cleanup(req->easy);
        curl_slist_free_all(req->headers);
        free(req);
    }
    if (st->multi)
        curl_multi_cleanup(st->multi);
    st->multi = NULL;
    st->nreqs = st->nidle = st->inflight = 0;
    st->nsocks = st->exposed = 0;
    return n;
}

//  Worker: fail every request in flight and close the connections (the
//  multi handle is made again if deliveries come later).
static void s_abort(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    if (!st)
        return;
    evr_delivery_t gone[S_MAX_INFLIGHT];
    size_t n = s_teardown(st, gone);
    for (size_t i = 0; i < n; i++)
        evr_target_complete(t, &gone[i], false);
}

//  Free the state. Requests in flight were completed by abort already;
//  any left would only be released. No thread uses the handles any more
//  (the last reference is gone), and libcurl handles may be freed from
//  any thread that does not share them.
static void s_close(evr_target_t *t)
{
    s_state_t *st = evr_target_state(t);
    if (!st)
        return;
    evr_delivery_t gone[S_MAX_INFLIGHT];
    size_t n = s_teardown(st, gone);
    for (size_t i = 0; i < n; i++)
        evr_delivery_forget(&gone[i]);
    curl_slist_free_all(st->headers);
    free(st->socks);
    free(st);
}

const evr_transport_ops_t evr_tr_http = {
    .name = "http",
    .open = s_open,
    .close = s_close,
    .flush = s_flush,
    .poll_items = s_poll_items,
    .on_poll = s_on_poll,
    .next_timer = s_next_timer,
    .on_timer = s_on_timer,
    .busy = s_busy,
    .abort = s_abort,
};
