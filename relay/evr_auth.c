/*  evr_auth.c - CURVE on the relay's ZeroMQ sockets (see evr_auth.h).

    One thread polls: the ZAP socket (a ROUTER bound to
    inproc://zeromq.zap.01 in the relay's context, before any secure
    socket binds, so no handshake can slip through unchecked), a command
    pipe that hands it socket monitors, and the monitors themselves. Once
    a second it reloads a key directory whose modification time changed.
    Certificates are read with czmq's zcert.
*/
#include "evr_auth.h"
#include "evr_curve.h"
#include "evr_policy.h"
#include "evr_zap.h"

#include <arpa/inet.h>

#include <czmq.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define CMD_ENDPOINT "inproc://evr-auth-cmd"
#define MAX_MONITORS 16
#define RELOAD_MS 1000
#define MAX_FRAMES 8

static const char *const s_domains[EVR_AUTH_DOMAINS] = {"ingest", "control",
                                                        "cluster"};

//  A directory of public certificates and what was read from it.
typedef struct {
    const char *path; //  NULL = not configured
    int domain;       //  keyring domain, or -1 (backends: endpoints only)
    struct timespec mtime;
    zhashx_t *endpoints; //  "endpoint" metadata -> Z85 key (under lock)
    zhashx_t *keys;      //  the Z85 keys read (handler thread, after start)
    atomic_uint_fast64_t removals; //  reloads that lost a key
} s_dir_t;

typedef struct {
    atomic_uint_fast64_t allowed, denied, failed, revoked;
} s_counts_t;

typedef struct {
    void *sock;
    int domain;
} s_monitor_t;

struct _evr_auth_t {
    void *ctx;
    zcert_t *cert;
    evr_keyring_t *ring;
    s_dir_t dirs[EVR_AUTH_DOMAINS + 1]; //  the domains, then backends
    pthread_mutex_t lock;               //  guards dirs[].endpoints
    s_counts_t counts[EVR_AUTH_DOMAINS];
    void *zap;     //  thread: ZAP ROUTER
    void *cmd_in;  //  thread: command pipe
    void *cmd_out; //  core: command pipe
    s_monitor_t monitors[MAX_MONITORS];
    int nmonitors;   //  thread
    int monitor_seq; //  core
    pthread_t thread;
    bool started;
};

//  The name of domain d.
const char *evr_auth_domain_name(evr_auth_domain_t d)
{
    return d < EVR_AUTH_DOMAINS ? s_domains[d] : "?";
}

//  Whether a ZeroMQ endpoint stays on this host: ipc://, inproc://, or
//  tcp:// on a literal loopback address or "localhost" (any other name
//  could resolve anywhere).
bool evr_auth_endpoint_is_local(const char *endpoint)
{
    if (!strncmp(endpoint, "ipc://", 6) || !strncmp(endpoint, "inproc://", 9))
        return true;
    if (strncmp(endpoint, "tcp://", 6) || strchr(endpoint, ';'))
        return false; //  other transports; tcp://src;dst binds src
    char host[256];
    const char *start = endpoint + 6;
    const char *colon = strrchr(start, ':');
    if (!colon || (size_t)(colon - start) >= sizeof host)
        return false;
    size_t len = (size_t)(colon - start);
    if (len >= 2 && start[0] == '[' && start[len - 1] == ']') {
        start++;
        len -= 2;
    }
    memcpy(host, start, len);
    host[len] = 0;
    if (!strcmp(host, "localhost"))
        return true;
    struct sockaddr_in in4 = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, host, &in4.sin_addr) == 1)
        return evr_policy_loopback((struct sockaddr *)&in4);
    if (inet_pton(AF_INET6, host, &in6.sin6_addr) == 1)
        return evr_policy_loopback((struct sockaddr *)&in6);
    return false;
}

//  Read one directory of public certificates into the keyring (its
//  domain) and its endpoint map. Returns 0, or -1 when it cannot be read.
static int s_load_dir(evr_auth_t *self, s_dir_t *dir, char *err, size_t errlen)
{
    struct stat st;
    DIR *d = opendir(dir->path);
    if (!d || stat(dir->path, &st)) {
        snprintf(err, errlen, "cannot read key directory %s: %s", dir->path,
                 strerror(errno));
        if (d)
            closedir(d);
        return -1;
    }
    dir->mtime = st.st_mtim;
    zhashx_t *endpoints = zhashx_new();
    zhashx_set_duplicator(endpoints, (zhashx_duplicator_fn *)strdup);
    zhashx_set_destructor(endpoints, (zhashx_destructor_fn *)zstr_free);
    zhashx_t *keys = zhashx_new();
    if (dir->domain >= 0)
        evr_keyring_begin(self->ring, dir->domain);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' ||
            (len > 7 && !strcmp(e->d_name + len - 7, "_secret")))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir->path, e->d_name);
        zcert_t *cert = zcert_load(path);
        if (!cert) {
            zsys_warning("security: %s is not a certificate: ignored", path);
            continue;
        }
        const char *key = zcert_public_txt(cert);
        if (dir->domain >= 0 &&
            evr_keyring_add(self->ring, key, zcert_meta(cert, "name")))
            zsys_warning("security: %s: bad public key: ignored", path);
        const char *endpoint = zcert_meta(cert, "endpoint");
        if (endpoint && *endpoint)
            zhashx_update(endpoints, endpoint, (void *)key);
        zhashx_update(keys, key, "");
        zcert_destroy(&cert);
    }
    closedir(d);
    //  a key that was there before and is not now: count a removal
    for (void *v = dir->keys ? zhashx_first(dir->keys) : NULL; v;
         v = zhashx_next(dir->keys))
        if (!zhashx_lookup(keys, zhashx_cursor(dir->keys))) {
            atomic_fetch_add(&dir->removals, 1);
            break;
        }
    zhashx_destroy(&dir->keys);
    dir->keys = keys;
    if (dir->domain >= 0)
        evr_keyring_commit(self->ring);
    pthread_mutex_lock(&self->lock);
    zhashx_destroy(&dir->endpoints);
    dir->endpoints = endpoints;
    pthread_mutex_unlock(&self->lock);
    return 0;
}

//  Reload the directories that changed.
static void s_reload(evr_auth_t *self)
{
    for (int i = 0; i <= EVR_AUTH_DOMAINS; i++) {
        s_dir_t *dir = &self->dirs[i];
        struct stat st;
        if (!dir->path || stat(dir->path, &st) ||
            (st.st_mtim.tv_sec == dir->mtime.tv_sec &&
             st.st_mtim.tv_nsec == dir->mtime.tv_nsec))
            continue;
        char err[512];
        if (s_load_dir(self, dir, err, sizeof err))
            zsys_warning("security: %s (keeping the keys read before)", err);
        else
            zsys_info("security: reloaded %s", dir->path);
    }
}

//  Answer one ZAP request waiting on the ZAP socket.
static void s_answer_zap(evr_auth_t *self)
{
    zmq_msg_t frames[MAX_FRAMES + 2];
    size_t n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, self->zap, 0) < 0) {
            zmq_msg_close(&part);
            break;
        }
        more = zmq_msg_more(&part);
        if (n < MAX_FRAMES + 2)
            frames[n++] = part;
        else
            zmq_msg_close(&part);
    }
    //  ROUTER envelope: the routing id, then an empty delimiter
    if (n >= 2) {
        const void *data[MAX_FRAMES];
        size_t len[MAX_FRAMES];
        size_t nreq = n - 2;
        for (size_t i = 0; i < nreq; i++) {
            data[i] = zmq_msg_data(&frames[i + 2]);
            len[i] = zmq_msg_size(&frames[i + 2]);
        }
        evr_zap_request_t req;
        evr_zap_reply_t reply;
        char err[128];
        bool ok = false;
        if (evr_zap_parse(data, len, nreq, &req, err, sizeof err) == 0)
            ok = evr_zap_decide(self->ring, &req, &reply);
        else {
            memset(&reply, 0, sizeof reply);
            reply.status = "500";
            reply.text = err;
            reply.domain = -1;
            req.request_id = "";
            req.request_id_len = 0;
        }
        if (reply.domain >= 0) {
            s_counts_t *c = &self->counts[reply.domain];
            atomic_fetch_add(ok ? &c->allowed : &c->denied, 1);
        }
        if (!ok)
            zsys_notice("security: %s refused %s (key %s): %s", req.domain,
                        req.address, reply.key_z85[0] ? reply.key_z85 : "none",
                        reply.text);
        zmq_send(self->zap, zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]),
                 ZMQ_SNDMORE);
        zmq_send(self->zap, "", 0, ZMQ_SNDMORE);
        zmq_send(self->zap, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(self->zap, req.request_id, req.request_id_len, ZMQ_SNDMORE);
        zmq_send(self->zap, reply.status, strlen(reply.status), ZMQ_SNDMORE);
        zmq_send(self->zap, reply.text, strlen(reply.text), ZMQ_SNDMORE);
        zmq_send(self->zap, reply.user_id, strlen(reply.user_id), ZMQ_SNDMORE);
        zmq_send(self->zap, "", 0, 0);
    }
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&frames[i]);
}

//  Count one monitor event (two frames: event + value, then endpoint).
static void s_read_monitor(evr_auth_t *self, s_monitor_t *m)
{
    zmq_msg_t first, second;
    zmq_msg_init(&first);
    zmq_msg_init(&second);
    if (zmq_msg_recv(&first, m->sock, 0) >= 0 && zmq_msg_more(&first))
        zmq_msg_recv(&second, m->sock, 0);
    if (zmq_msg_size(&first) >= 2) {
        uint16_t event;
        memcpy(&event, zmq_msg_data(&first), 2);
        //  a ZAP refusal was counted by the handler already
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
            event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            atomic_fetch_add(&self->counts[m->domain].failed, 1);
    }
    zmq_msg_close(&first);
    zmq_msg_close(&second);
}

//  The handler thread.
static void *s_run(void *arg)
{
    evr_auth_t *self = arg;
    int64_t next_reload = zclock_mono() + RELOAD_MS;
    while (true) {
        zmq_pollitem_t items[2 + MAX_MONITORS];
        items[0] = (zmq_pollitem_t){self->zap, 0, ZMQ_POLLIN, 0};
        items[1] = (zmq_pollitem_t){self->cmd_in, 0, ZMQ_POLLIN, 0};
        for (int i = 0; i < self->nmonitors; i++)
            items[2 + i] =
                (zmq_pollitem_t){self->monitors[i].sock, 0, ZMQ_POLLIN, 0};
        long wait = (long)(next_reload - zclock_mono());
        if (zmq_poll(items, 2 + self->nmonitors, wait < 0 ? 0 : wait) < 0 &&
            zmq_errno() == ETERM)
            break;
        if (items[0].revents & ZMQ_POLLIN)
            s_answer_zap(self);
        if (items[1].revents & ZMQ_POLLIN) {
            s_monitor_t m;
            if (zmq_recv(self->cmd_in, &m, sizeof m, 0) != sizeof m || !m.sock)
                break; //  stop
            if (self->nmonitors < MAX_MONITORS)
                self->monitors[self->nmonitors++] = m;
            else
                zmq_close(m.sock);
        }
        for (int i = 0; i < self->nmonitors; i++)
            if (items[2 + i].revents & ZMQ_POLLIN)
                s_read_monitor(self, &self->monitors[i]);
        if (zclock_mono() >= next_reload) {
            s_reload(self);
            next_reload = zclock_mono() + RELOAD_MS;
        }
    }
    for (int i = 0; i < self->nmonitors; i++)
        zmq_close(self->monitors[i].sock);
    return NULL;
}

//  A socket with linger 0.
static void *s_socket(void *ctx, int type)
{
    void *sock = zmq_socket(ctx, type);
    int linger = 0;
    if (sock)
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    return sock;
}

//  Load the certificate and the directories, start the handler.
evr_auth_t *evr_auth_new(void *ctx, const evr_config_t *cfg, char *err,
                         size_t errlen)
{
    err[0] = 0;
    if (!cfg->cert)
        return NULL;
    evr_auth_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->ctx = ctx;
    pthread_mutex_init(&self->lock, NULL);
    self->ring = evr_keyring_new(s_domains, EVR_AUTH_DOMAINS);
    self->cert = zcert_load(cfg->cert);
    if (!self->cert || zcert_secret_txt(self->cert)[0] == 0 ||
        !strcmp(zcert_secret_txt(self->cert),
                "0000000000000000000000000000000000000000")) {
        snprintf(err, errlen,
                 "cannot load the secret certificate %s (make one with "
                 "evrelayctl keygen)",
                 cfg->cert);
        evr_auth_destroy(&self);
        return NULL;
    }
    const char *paths[EVR_AUTH_DOMAINS + 1] = {cfg->producers, cfg->operators,
                                               cfg->peer_keys, cfg->backends};
    for (int i = 0; i <= EVR_AUTH_DOMAINS; i++) {
        self->dirs[i].path = paths[i];
        self->dirs[i].domain = i < EVR_AUTH_DOMAINS ? i : -1;
        if (paths[i] && s_load_dir(self, &self->dirs[i], err, errlen)) {
            evr_auth_destroy(&self);
            return NULL;
        }
    }
    self->zap = s_socket(ctx, ZMQ_ROUTER);
    self->cmd_in = s_socket(ctx, ZMQ_PAIR);
    self->cmd_out = s_socket(ctx, ZMQ_PAIR);
    if (!self->ring || !self->zap || !self->cmd_in || !self->cmd_out ||
        zmq_bind(self->zap, ZAP_ENDPOINT) ||
        zmq_bind(self->cmd_in, CMD_ENDPOINT) ||
        zmq_connect(self->cmd_out, CMD_ENDPOINT) ||
        pthread_create(&self->thread, NULL, s_run, self)) {
        snprintf(err, errlen, "cannot start the ZAP handler: %s",
                 zmq_strerror(zmq_errno()));
        evr_auth_destroy(&self);
        return NULL;
    }
    self->started = true;
    zsys_info("security: CURVE on, relay key %s", zcert_public_txt(self->cert));
    return self;
}

//  Stop the handler, free, NULL the pointer.
void evr_auth_destroy(evr_auth_t **self_p)
{
    evr_auth_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    if (self->started) {
        s_monitor_t stop = {NULL, -1};
        zmq_send(self->cmd_out, &stop, sizeof stop, 0);
        pthread_join(self->thread, NULL);
    }
    if (self->zap)
        zmq_close(self->zap);
    if (self->cmd_in)
        zmq_close(self->cmd_in);
    if (self->cmd_out)
        zmq_close(self->cmd_out);
    for (int i = 0; i <= EVR_AUTH_DOMAINS; i++) {
        zhashx_destroy(&self->dirs[i].endpoints);
        zhashx_destroy(&self->dirs[i].keys);
    }
    evr_keyring_destroy(&self->ring);
    zcert_destroy(&self->cert);
    pthread_mutex_destroy(&self->lock);
    free(self);
}

//  Make sock a CURVE server of domain d and watch its handshakes.
int evr_auth_server(evr_auth_t *self, void *sock, evr_auth_domain_t d,
                    char *err, size_t errlen)
{
    if (!self)
        return 0;
    int one = 1;
    const char *domain = s_domains[d];
    if (!self->dirs[d].path) {
        snprintf(err, errlen,
                 "CURVE is on but [security] %s names no key directory",
                 d == EVR_AUTH_INGEST    ? "producers"
                 : d == EVR_AUTH_CONTROL ? "operators"
                                         : "peers");
        return -1;
    }
    if (zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, zcert_secret_key(self->cert),
                       32)) {
        snprintf(err, errlen, "cannot make a CURVE server: %s",
                 zmq_strerror(zmq_errno()));
        return -1;
    }
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://evr-auth-mon-%d",
             self->monitor_seq++);
    s_monitor_t m = {s_socket(self->ctx, ZMQ_PAIR), (int)d};
    if (!m.sock ||
        zmq_socket_monitor(sock, endpoint,
                           ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) ||
        zmq_connect(m.sock, endpoint) ||
        zmq_send(self->cmd_out, &m, sizeof m, 0) != sizeof m) {
        snprintf(err, errlen, "cannot monitor a CURVE server: %s",
                 zmq_strerror(zmq_errno()));
        if (m.sock)
            zmq_close(m.sock);
        return -1;
    }
    return 0;
}

//  Make sock a CURVE client towards server_key.
int evr_auth_client(evr_auth_t *self, void *sock, const char *server_key)
{
    if (!self)
        return 0;
    uint8_t server[32];
    if (!server_key || strlen(server_key) != 40 ||
        !zmq_z85_decode(server, server_key))
        return -1;
    return evr_curve_apply(sock, self->cert, server_key);
}

//  The public key of the certificate naming endpoint.
int evr_auth_endpoint_key(evr_auth_t *self, bool cluster, const char *endpoint,
                          char *key)
{
    if (!self)
        return -1;
    s_dir_t *dir = &self->dirs[cluster ? EVR_AUTH_CLUSTER : EVR_AUTH_DOMAINS];
    pthread_mutex_lock(&self->lock);
    const char *found =
        dir->endpoints ? zhashx_lookup(dir->endpoints, endpoint) : NULL;
    if (found)
        snprintf(key, 41, "%s", found);
    pthread_mutex_unlock(&self->lock);
    return found ? 0 : -1;
}

//  Whether msg's sender is still allowed.
bool evr_auth_permits(evr_auth_t *self, evr_auth_domain_t d, zmq_msg_t *msg)
{
    if (!self)
        return true;
    const char *name = zmq_msg_gets(msg, "User-Id");
    if (name && evr_keyring_has_name(self->ring, (int)d, name))
        return true;
    atomic_fetch_add(&self->counts[d].revoked, 1);
    return false;
}

//  The counters of domain d.
void evr_auth_counts(evr_auth_t *self, evr_auth_domain_t d,
                     evr_auth_counts_t *out)
{
    memset(out, 0, sizeof *out);
    if (!self)
        return;
    s_counts_t *c = &self->counts[d];
    out->allowed = atomic_load(&c->allowed);
    out->denied = atomic_load(&c->denied);
    out->handshake_failed = atomic_load(&c->failed);
    out->revoked = atomic_load(&c->revoked);
    out->keys = evr_keyring_size(self->ring, (int)d);
}

//  How many reloads of the directory behind domain d dropped a key.
uint64_t evr_auth_removals(evr_auth_t *self, evr_auth_domain_t d)
{
    return self ? atomic_load(&self->dirs[d].removals) : 0;
}
