/*  evr_cluster.c - the relay cluster: the replicated, persistent
    subscription table around evr_hlc, evr_repl and evr_store.

    Everything runs in the relay's core thread (evr_cluster.h). The pure
    modules decide (merge rule, version vector, digest, gc, on-disk
    format); this file moves messages between them and the sockets:

      local write   record -> table -> merge -> disk -> Delta on the PUB
      Delta (SUB)   hlc check -> version vector -> merge -> disk -> table
      Heartbeat     liveness, members, PUB endpoint, anti-entropy checks
      Snapshot      request on a DEALER; chunks streamed back from the
                    peer's ROUTER; the last one raises the version vector
      timers        heartbeats, liveness, pulls, join, gc, fsync, periodic
                    anti-entropy, compaction

    docs/CLUSTER.md explains the rules; docs/PROTOCOL.md section 11 the
    messages.
*/
#include "evr_cluster.h"
#include "evr_cmsg.h"
#include "evr_defaults.h"
#include "evr_hlc.h"
#include "evr_sockspec.h"
#include "evr_store.h"
#include "evr_table.h"
#include "evrelay.pb-c.h"

#include <czmq.h>
#include <inttypes.h>
#include <time.h>
#include <unistd.h>

//  How often the cluster's timers are looked at, ms.
#define S_TICK_MS 50

//  Messages handled per socket per poll round, so that the control socket
//  and ingest get their turn during a large snapshot.
#define S_BUDGET_SUB 512
#define S_BUDGET_ROUTER 64
#define S_BUDGET_DEALER 8

typedef enum { S_DEAD = 0, S_SUSPECT, S_ALIVE } s_state_t;

//  One entry of a version vector copy.
typedef struct {
    char *origin;
    uint64_t instance;
    uint64_t seq;
} s_seq_t;

//  A copy of a version vector (a peer's, from its heartbeat).
typedef struct {
    s_seq_t *v;
    size_t n, cap;
} s_vector_t;

//  A peer relay.
typedef struct {
    char *endpoint;  //  its ROUTER (cluster endpoint): the key
    bool configured; //  --peer / [cluster] peers: never forgotten
    bool doomed;     //  to be removed at the next tick (an alias, or us)
    void *dealer;
    char *node; //  from its heartbeats; NULL until heard
    uint64_t instance;
    char *pub;      //  its PUB endpoint, as the SUB is connected to it
    int64_t pub_ms; //  when the SUB was connected to it
    bool sub_live;  //  its welcome came through: our subscription is on
    uint64_t hlc, digest, records;
    bool peer_ready;
    s_vector_t seqs;      //  its version vector (last heartbeat)
    int64_t last_hb_ms;   //  0: never heard
    int64_t last_sync_ms; //  last snapshot from it merged; 0: never
    int64_t dead_ms;      //  when it was last found dead
    bool was_alive;       //  heard since it was last found dead
    bool resync;          //  came back: pull from it
    uint64_t req_id;      //  snapshot in flight (0: none)
    int64_t req_ms;
    int64_t next_pull_ms;
    bool pull_wanted;
    const char *pull_reason;
    s_vector_t want;         //  ahead check: what we must have by want_ms
    int64_t want_ms;         //  0: no check pending
    int64_t digest_since_ms; //  digests differ with equal versions since
    uint64_t deltas_in, snapshots_pulled, gaps;
} s_peer_t;

//  Seqs merged beyond a gap of one (origin, instance), ascending: once a
//  snapshot closes the gap they are accounted for in the version vector.
typedef struct {
    char *origin;
    uint64_t instance;
    uint64_t *seqs;
    size_t n, cap;
} s_gapbuf_t;

typedef struct {
    uint64_t deltas_out;
    uint64_t deltas_in;
    uint64_t stale;
    uint64_t refused_skew;
    uint64_t refused_lease;
    uint64_t snapshots_served;
    uint64_t snapshots_pulled;
    uint64_t gaps;
    uint64_t malformed;
    uint64_t bad_version;
    uint64_t apply_errors;
    uint64_t store_errors;
    uint64_t publish_dropped;
    uint64_t snapshot_timeouts;
    uint64_t snapshot_aborts;
    uint64_t node_conflicts;
    uint64_t gc_dropped;
    uint64_t loaded;
} s_counters_t;

struct _evr_cluster_t {
    const evr_config_t *cfg;
    char *node;
    uint64_t instance;
    uint64_t seq; //  deltas published by this instance
    void *ctx;
    evr_auth_t *auth;         //  CURVE, or NULL
    void *router, *pub, *sub; //  NULL without a listen endpoint
    char *pub_endpoint;
    s_peer_t *peers[EVR_CLUSTER_MAX_PEERS];
    size_t npeers;
    zlistx_t *aliases;   //  endpoints that turned out to be this relay
    zhashx_t *keyless;   //  endpoints warned about: no certificate
    uint64_t removals;   //  evr_auth_removals of the peers dir acted on
    zhashx_t *instances; //  origin -> newest instance known (uint64_t *)
    zhashx_t *gapbufs;   //  "origin\ninstance" -> s_gapbuf_t
    evr_hlc_t *hlc;
    evr_repl_t *repl;
    evr_store_t *store; //  NULL without a data directory
    evr_cluster_apply_fn *apply;
    void *arg;
    bool ready;
    int64_t start_ms;
    s_peer_t *join_peer; //  the peer a join snapshot is asked from
    bool dirty;          //  appended since the last flush
    bool sync_pending;   //  a local write waits for evr_cluster_sync
    int64_t next_tick_ms, next_hb_ms, next_gc_ms, next_ae_ms, next_flush_ms;
    size_t ae_cursor;
    void *poll_socks[EVR_CLUSTER_MAX_POLL];
    s_peer_t *poll_peers[EVR_CLUSTER_MAX_POLL];
    size_t npoll;
    uint64_t next_req_id;
    int64_t last_compact_ms; //  duration of the last compaction
    s_counters_t ct;
};

//  --------------------------------------------------------------------------
//  Small helpers

//  The wall clock, ms since the epoch (the relay's clock).
static int64_t s_now(void)
{
    return zclock_time();
}

//  A new instance id: the wall clock in microseconds, so that a restarted
//  relay's instance is larger than the one before.
static uint64_t s_new_instance(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

//  Free the entries of a vector copy (it stays usable, empty).
static void s_vector_clear(s_vector_t *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->v[i].origin);
    v->n = 0;
}

//  Free a vector copy entirely.
static void s_vector_free(s_vector_t *v)
{
    s_vector_clear(v);
    free(v->v);
    v->v = NULL;
    v->cap = 0;
}

//  Append an entry to a vector copy. Returns 0 or -1.
static int s_vector_add(s_vector_t *v, const char *origin, uint64_t instance,
                        uint64_t seq)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        s_seq_t *grown = realloc(v->v, cap * sizeof *grown);
        if (!grown)
            return -1;
        v->v = grown;
        v->cap = cap;
    }
    char *copy = strdup(origin);
    if (!copy)
        return -1;
    v->v[v->n++] = (s_seq_t){copy, instance, seq};
    return 0;
}

//  The seq of (origin, instance) in a vector copy, 0 when absent.
static uint64_t s_vector_get(const s_vector_t *v, const char *origin,
                             uint64_t instance)
{
    for (size_t i = 0; i < v->n; i++)
        if (v->v[i].instance == instance && !strcmp(v->v[i].origin, origin))
            return v->v[i].seq;
    return 0;
}

//  evr_repl_seq_foreach hook: copy an entry into a vector copy.
static void s_vector_collect(const char *origin, uint64_t instance,
                             uint64_t seq, void *arg)
{
    s_vector_add(arg, origin, instance, seq);
}

//  The PUB endpoint to bind next to the ROUTER's: the same host, any
//  port (tcp), or the ROUTER's path with ".pub" (ipc). NULL otherwise.
static char *s_pub_bind_endpoint(const char *listen)
{
    if (!strncmp(listen, "ipc://", 6))
        return zsys_sprintf("%s.pub", listen);
    const char *colon = strrchr(listen, ':');
    if (strncmp(listen, "tcp://", 6) || !colon || colon < listen + 6)
        return NULL;
    return zsys_sprintf("%.*s:*", (int)(colon - listen), listen);
}

//  The default node id: the host name, and the cluster port when there is
//  one ("relay1:7960"). New string.
static char *s_default_node(const char *listen)
{
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1))
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (colon && !strncmp(listen, "tcp://", 6))
        return zsys_sprintf("%s:%s", host, colon + 1);
    return strdup(host);
}

//  Key of a gap buffer: origin and instance.
static void s_gapkey(char *buf, size_t size, const char *origin,
                     uint64_t instance)
{
    snprintf(buf, size, "%s\n%" PRIu64, origin, instance);
}

//  zhashx destructor of gap buffers.
static void s_gapbuf_destroy(void **item)
{
    s_gapbuf_t *g = *item;
    *item = NULL;
    if (g) {
        free(g->origin);
        free(g->seqs);
        free(g);
    }
}

//  zhashx destructor of instance entries.
static void s_instance_destroy(void **item)
{
    free(*item);
    *item = NULL;
}

//  --------------------------------------------------------------------------
//  Records: wire form <-> evr_record_t, persistence, the table

//  Append a record to the log (when there is a store).
static void s_persist(evr_cluster_t *self, const evr_record_t *rec)
{
    if (!self->store)
        return;
    if (evr_store_append(self->store, rec)) {
        if (self->ct.store_errors++ % 1000 == 0)
            zsys_error("cluster: cannot append to the log in %s",
                       self->cfg->data_dir);
        return;
    }
    self->dirty = true;
}

//  Make the table agree with a record merged from elsewhere (a peer, the
//  disk, gc).
static void s_apply_remote(evr_cluster_t *self, const evr_record_t *rec,
                           bool live)
{
    char why[512];
    if (self->apply(self->arg, rec, live, true, why, sizeof why) == 0)
        return;
    if (self->ct.apply_errors++ % 100 == 0)
        zsys_warning("cluster: cannot apply %s %s from %s: %s", rec->event,
                     rec->tombstone ? "(unsubscribe)" : "", rec->origin, why);
}

//  Merge a record from a peer or from a snapshot; when it wins, persist
//  it and update the table. Returns what merge did.
static evr_repl_result_t s_merge_remote(evr_cluster_t *self,
                                        const evr_record_t *rec, int64_t now)
{
    evr_repl_result_t rc = evr_repl_merge(self->repl, rec);
    if (rc == EVR_REPL_APPLIED) {
        s_persist(self, rec);
        s_apply_remote(self, rec, evr_repl_live(rec, now));
    } else if (rc == EVR_REPL_REFUSED)
        self->ct.refused_lease++;
    return rc;
}

//  --------------------------------------------------------------------------
//  Version vector bookkeeping

//  Note that origin runs `instance`. Returns -1 when a newer instance of
//  origin is known (instance is an old boot), else 0; a newer instance
//  makes the vector forget the older ones of that origin.
static int s_note_instance(evr_cluster_t *self, const char *origin,
                           uint64_t instance)
{
    uint64_t *known = zhashx_lookup(self->instances, origin);
    if (known && *known > instance)
        return -1;
    if (known && *known == instance)
        return 0;
    if (!known) {
        known = malloc(sizeof *known);
        if (!known)
            return 0;
        zhashx_insert(self->instances, origin, known);
    }
    *known = instance;
    evr_repl_seq_forget_before(self->repl, origin, instance);
    //  gap buffers of older instances have nothing left to wait for
    for (s_gapbuf_t *g = zhashx_first(self->gapbufs); g;
         g = zhashx_next(self->gapbufs))
        if (!strcmp(g->origin, origin) && g->instance < instance)
            g->n = 0;
    return 0;
}

//  Remember a seq merged beyond a gap.
static void s_gap_remember(evr_cluster_t *self, const char *origin,
                           uint64_t instance, uint64_t seq)
{
    char key[300];
    s_gapkey(key, sizeof key, origin, instance);
    s_gapbuf_t *g = zhashx_lookup(self->gapbufs, key);
    if (!g) {
        g = calloc(1, sizeof *g);
        if (!g || !(g->origin = strdup(origin))) {
            free(g);
            return;
        }
        g->instance = instance;
        zhashx_insert(self->gapbufs, key, g);
    }
    if (g->n && g->seqs[g->n - 1] >= seq)
        return; //  out of order (cannot happen on one PUB stream): skip
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 64;
        if (cap > 1000000)
            return; //  a snapshot will be asked again later
        uint64_t *grown = realloc(g->seqs, cap * sizeof *grown);
        if (!grown)
            return;
        g->seqs = grown;
        g->cap = cap;
    }
    g->seqs[g->n++] = seq;
}

//  After the version vector was raised: account for the seqs merged
//  beyond gaps that are now contiguous.
static void s_gap_drain(evr_cluster_t *self)
{
    for (s_gapbuf_t *g = zhashx_first(self->gapbufs); g;
         g = zhashx_next(self->gapbufs)) {
        size_t used = 0;
        while (used < g->n) {
            evr_seq_result_t r = evr_repl_seq_check(self->repl, g->origin,
                                                    g->instance, g->seqs[used]);
            if (r == EVR_SEQ_GAP)
                break;
            used++;
        }
        memmove(g->seqs, g->seqs + used, (g->n - used) * sizeof *g->seqs);
        g->n -= used;
    }
}

//  --------------------------------------------------------------------------
//  Peers

//  A peer's liveness at now.
static s_state_t s_state(const evr_cluster_t *self, const s_peer_t *peer,
                         int64_t now)
{
    if (!peer->last_hb_ms)
        return S_DEAD;
    int64_t age = now - peer->last_hb_ms;
    int64_t hb = self->cfg->heartbeat_ms;
    if (age < EVR_CLUSTER_SUSPECT_BEATS * hb)
        return S_ALIVE;
    if (age < EVR_CLUSTER_DEAD_BEATS * hb)
        return S_SUSPECT;
    return S_DEAD;
}

//  The name of a state.
static const char *s_state_name(s_state_t state)
{
    return state == S_ALIVE ? "alive" : state == S_SUSPECT ? "suspect" : "dead";
}

//  A peer's name for logs: its node id, or its endpoint until heard.
static const char *s_peer_name(const s_peer_t *peer)
{
    return peer->node ? peer->node : peer->endpoint;
}

//  Whether endpoint is this relay's own (its listen endpoint, or one found
//  to lead back to it).
static bool s_is_self(evr_cluster_t *self, const char *endpoint)
{
    if (self->cfg->cluster && !strcmp(endpoint, self->cfg->cluster))
        return true;
    for (const char *a = zlistx_first(self->aliases); a;
         a = zlistx_next(self->aliases))
        if (!strcmp(a, endpoint))
            return true;
    return false;
}

//  The peer at endpoint, or NULL.
static s_peer_t *s_peer_by_endpoint(evr_cluster_t *self, const char *endpoint)
{
    for (size_t i = 0; i < self->npeers; i++)
        if (!strcmp(self->peers[i]->endpoint, endpoint))
            return self->peers[i];
    return NULL;
}

//  The peer whose node id is node, or NULL.
static s_peer_t *s_peer_by_node(evr_cluster_t *self, const char *node)
{
    for (size_t i = 0; i < self->npeers; i++)
        if (self->peers[i]->node && !self->peers[i]->doomed &&
            !strcmp(self->peers[i]->node, node))
            return self->peers[i];
    return NULL;
}

//  Free a peer: close its DEALER, disconnect the SUB from its PUB.
static void s_peer_destroy(evr_cluster_t *self, s_peer_t **peer_p)
{
    s_peer_t *peer = *peer_p;
    *peer_p = NULL;
    if (!peer)
        return;
    if (peer->dealer)
        zmq_close(peer->dealer);
    if (peer->pub && self->sub)
        zmq_disconnect(self->sub, peer->pub);
    if (self->join_peer == peer)
        self->join_peer = NULL;
    s_vector_free(&peer->seqs);
    s_vector_free(&peer->want);
    free(peer->endpoint);
    free(peer->node);
    free(peer->pub);
    free(peer);
}

//  With CURVE on, make sock a CURVE client of the peer whose cluster
//  endpoint is endpoint (its key from the peers directory). Returns 0, or
//  -1 when the peer has no certificate there (logged): no plain link.
static int s_secure(evr_cluster_t *self, void *sock, const char *endpoint)
{
    char key[41];
    if (!self->auth)
        return 0;
    if (evr_auth_endpoint_key(self->auth, true, endpoint, key) == 0 &&
        evr_auth_client(self->auth, sock, key) == 0) {
        zhashx_delete(self->keyless, endpoint);
        return 0;
    }
    //  once per endpoint: peers keep naming it in their member lists
    if (!zhashx_lookup(self->keyless, endpoint)) {
        zsys_warning("cluster: no certificate with endpoint = %s in "
                     "[security] peers: not connecting",
                     endpoint);
        zhashx_insert(self->keyless, endpoint, "");
    }
    return -1;
}

//  Add a peer at endpoint and connect a DEALER to it. Returns the peer
//  (an existing one for a known endpoint), or NULL (ourselves, full,
//  cannot connect).
static s_peer_t *s_peer_add(evr_cluster_t *self, const char *endpoint,
                            bool configured)
{
    if (!self->router || !*endpoint || s_is_self(self, endpoint) ||
        evr_cmsg_wildcard_host(endpoint))
        return NULL;
    s_peer_t *peer = s_peer_by_endpoint(self, endpoint);
    if (peer) {
        peer->configured |= configured;
        return peer;
    }
    if (self->npeers == EVR_CLUSTER_MAX_PEERS) {
        zsys_warning("cluster: more than %d peers: ignoring %s",
                     EVR_CLUSTER_MAX_PEERS, endpoint);
        return NULL;
    }
    peer = calloc(1, sizeof *peer);
    if (!peer || !(peer->endpoint = strdup(endpoint))) {
        free(peer);
        return NULL;
    }
    peer->configured = configured;
    peer->dealer = zmq_socket(self->ctx, ZMQ_DEALER);
    int linger = 0, immediate = 1, sndhwm = 1000, rcvhwm = 100000;
    int ivl = 100, ivl_max = 1000;
    int64_t maxmsg = EVR_CLUSTER_MAX_FRAME_BYTES;
    zmq_setsockopt(peer->dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(peer->dealer, ZMQ_IMMEDIATE, &immediate, sizeof immediate);
    zmq_setsockopt(peer->dealer, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm);
    zmq_setsockopt(peer->dealer, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    zmq_setsockopt(peer->dealer, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(peer->dealer, ZMQ_RECONNECT_IVL_MAX, &ivl_max,
                   sizeof ivl_max);
    zmq_setsockopt(peer->dealer, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (s_secure(self, peer->dealer, endpoint) ||
        zmq_connect(peer->dealer, endpoint)) {
        zsys_warning("cluster: cannot connect to peer %s: %s", endpoint,
                     zmq_strerror(zmq_errno()));
        s_peer_destroy(self, &peer);
        return NULL;
    }
    self->peers[self->npeers++] = peer;
    zsys_info("cluster: peer %s%s", endpoint, configured ? "" : " (learned)");
    return peer;
}

//  Forget an endpoint as a peer for good: it is this relay, or another
//  name of a peer we know.
static void s_alias(evr_cluster_t *self, s_peer_t *peer, const char *why)
{
    if (!peer->doomed)
        zsys_info("cluster: %s is %s: not a separate peer", peer->endpoint,
                  why);
    peer->doomed = true;
    if (!s_is_self(self, peer->endpoint)) {
        char *copy = strdup(peer->endpoint);
        if (copy)
            zlistx_add_end(self->aliases, copy);
    }
}

//  --------------------------------------------------------------------------
//  Messages out

//  Pack a ClusterMsg into a new buffer; *len gets its size.
static void *s_pack(Evrelay__ClusterMsg *msg, size_t *len)
{
    msg->version = EVR_PROTOCOL_VERSION;
    *len = evrelay__cluster_msg__get_packed_size(msg);
    void *buf = malloc(*len ? *len : 1);
    if (buf)
        evrelay__cluster_msg__pack(msg, buf);
    return buf;
}

//  This relay's heartbeat, packed (new buffer).
static void *s_heartbeat_pack(evr_cluster_t *self, size_t *len)
{
    Evrelay__Heartbeat hb = EVRELAY__HEARTBEAT__INIT;
    hb.node = self->node;
    hb.instance = self->instance;
    hb.cluster_endpoint = self->cfg->cluster;
    hb.pub_endpoint = self->pub_endpoint;
    hb.digest = evr_repl_digest(self->repl);
    hb.records = evr_repl_size(self->repl);
    hb.has_ready = true;
    hb.ready = self->ready;
    hb.has_hlc = true;
    hb.hlc = evr_hlc_last(self->hlc);
    s_vector_t vec = {0};
    evr_repl_seq_foreach(self->repl, s_vector_collect, &vec);
    Evrelay__OriginSeq *seqs = calloc(vec.n + 1, sizeof *seqs);
    Evrelay__OriginSeq **seqp = calloc(vec.n + 1, sizeof *seqp);
    char **members = calloc(self->npeers + 2, sizeof *members);
    void *buf = NULL;
    if (seqs && seqp && members) {
        for (size_t i = 0; i < vec.n; i++) {
            evrelay__origin_seq__init(&seqs[i]);
            seqs[i].origin = vec.v[i].origin;
            seqs[i].instance = vec.v[i].instance;
            seqs[i].seq = vec.v[i].seq;
            seqp[i] = &seqs[i];
        }
        hb.n_seqs = vec.n;
        hb.seqs = seqp;
        size_t n = 0;
        members[n++] = self->cfg->cluster;
        int64_t now = s_now();
        for (size_t i = 0; i < self->npeers; i++) {
            s_peer_t *peer = self->peers[i];
            if (!peer->doomed && s_state(self, peer, now) != S_DEAD)
                members[n++] = peer->endpoint;
        }
        hb.n_members = n;
        hb.members = members;
        Evrelay__ClusterMsg msg = EVRELAY__CLUSTER_MSG__INIT;
        msg.body_case = EVRELAY__CLUSTER_MSG__BODY_HEARTBEAT;
        msg.heartbeat = &hb;
        buf = s_pack(&msg, len);
    }
    free(members);
    free(seqp);
    free(seqs);
    s_vector_free(&vec);
    return buf;
}

//  Send a heartbeat to every peer, or only to those never heard from
//  (dropped when a peer's connection is not up or its queue is full: the
//  next one follows soon).
static void s_send_heartbeats(evr_cluster_t *self, bool unheard_only)
{
    size_t n = 0;
    for (size_t i = 0; i < self->npeers; i++)
        n += !self->peers[i]->doomed &&
             (!unheard_only || !self->peers[i]->last_hb_ms);
    if (!n)
        return;
    size_t len;
    void *buf = s_heartbeat_pack(self, &len);
    if (!buf)
        return;
    for (size_t i = 0; i < self->npeers; i++)
        if (!self->peers[i]->doomed &&
            (!unheard_only || !self->peers[i]->last_hb_ms))
            zmq_send(self->peers[i]->dealer, buf, len, ZMQ_DONTWAIT);
    free(buf);
}

//  Publish a local write as a Delta.
static void s_publish(evr_cluster_t *self, const evr_record_t *rec)
{
    if (!self->pub)
        return;
    Evrelay__Record record;
    evr_cmsg_record_to_pb(rec, &record);
    Evrelay__Delta delta = EVRELAY__DELTA__INIT;
    delta.origin = self->node;
    delta.instance = self->instance;
    delta.seq = self->seq;
    delta.record = &record;
    Evrelay__ClusterMsg msg = EVRELAY__CLUSTER_MSG__INIT;
    msg.body_case = EVRELAY__CLUSTER_MSG__BODY_DELTA;
    msg.delta = &delta;
    size_t len;
    void *buf = s_pack(&msg, &len);
    if (buf && zmq_send(self->pub, buf, len, ZMQ_DONTWAIT) == (int)len)
        self->ct.deltas_out++;
    else
        self->ct.publish_dropped++;
    free(buf);
}

//  Ask a peer for a snapshot when one is wanted and allowed: one in
//  flight per peer, not more often than EVR_CLUSTER_PULL_INTERVAL_MS, and
//  only from a peer that is not dead.
static void s_try_pull(evr_cluster_t *self, s_peer_t *peer, int64_t now)
{
    if (!peer->pull_wanted || peer->req_id || peer->doomed ||
        now < peer->next_pull_ms || s_state(self, peer, now) == S_DEAD)
        return;
    Evrelay__SnapshotRequest req = EVRELAY__SNAPSHOT_REQUEST__INIT;
    req.id = ++self->next_req_id;
    Evrelay__ClusterMsg msg = EVRELAY__CLUSTER_MSG__INIT;
    msg.body_case = EVRELAY__CLUSTER_MSG__BODY_SNAPSHOT_REQUEST;
    msg.snapshot_request = &req;
    size_t len;
    void *buf = s_pack(&msg, &len);
    int rc = buf ? zmq_send(peer->dealer, buf, len, ZMQ_DONTWAIT) : -1;
    free(buf);
    if (rc != (int)len)
        return; //  not connected right now: tried again at the next tick
    peer->req_id = req.id;
    peer->req_ms = now;
    peer->next_pull_ms = now + EVR_CLUSTER_PULL_INTERVAL_MS;
    peer->pull_wanted = false;
    if (self->cfg->verbose || strcmp(peer->pull_reason, "periodic"))
        zsys_info("cluster: snapshot from %s (%s)", s_peer_name(peer),
                  peer->pull_reason);
}

//  Want a snapshot from a peer (sent now or as soon as allowed).
static void s_want_pull(evr_cluster_t *self, s_peer_t *peer, const char *why,
                        int64_t now)
{
    if (!peer || peer->doomed)
        return;
    if (!peer->pull_wanted)
        peer->pull_reason = why;
    peer->pull_wanted = true;
    s_try_pull(self, peer, now);
}

//  The peer to repair a gap of origin from: the origin itself when it is
//  alive, else any alive peer (a ready one first).
static s_peer_t *s_repair_peer(evr_cluster_t *self, const char *origin,
                               int64_t now)
{
    s_peer_t *peer = s_peer_by_node(self, origin);
    if (peer && s_state(self, peer, now) == S_ALIVE)
        return peer;
    s_peer_t *any = NULL;
    for (size_t i = 0; i < self->npeers; i++) {
        s_peer_t *p = self->peers[i];
        if (p->doomed || s_state(self, p, now) != S_ALIVE)
            continue;
        if (p->peer_ready)
            return p;
        if (!any)
            any = p;
    }
    return any;
}

//  --------------------------------------------------------------------------
//  Messages in

//  A Delta from a peer's PUB.
static void s_on_delta(evr_cluster_t *self, const Evrelay__Delta *delta)
{
    int64_t now = s_now();
    evr_record_t rec;
    evr_sockspec_t *spec;
    if (evr_cmsg_delta(delta, &rec, &spec)) {
        self->ct.malformed++;
        return;
    }
    if (!strcmp(delta->origin, self->node)) {
        evr_sockspec_destroy(&spec); //  our own, through an alias
        return;
    }
    self->ct.deltas_in++;
    s_peer_t *peer = s_peer_by_node(self, delta->origin);
    if (peer)
        peer->deltas_in++;
    if (evr_hlc_update(self->hlc, rec.hlc, now)) {
        self->ct.refused_skew++;
        evr_sockspec_destroy(&spec);
        return;
    }
    evr_seq_result_t seq = EVR_SEQ_NEXT;
    if (s_note_instance(self, delta->origin, delta->instance) == 0)
        seq = evr_repl_seq_check(self->repl, delta->origin, delta->instance,
                                 delta->seq);
    if (seq == EVR_SEQ_OLD) {
        self->ct.stale++;
        evr_sockspec_destroy(&spec);
        return;
    }
    if (s_merge_remote(self, &rec, now) == EVR_REPL_STALE)
        self->ct.stale++;
    if (seq == EVR_SEQ_GAP) {
        //  merged anyway (order does not matter); what was missed comes
        //  with a snapshot
        self->ct.gaps++;
        if (peer)
            peer->gaps++;
        s_gap_remember(self, delta->origin, delta->instance, delta->seq);
        s_want_pull(self, s_repair_peer(self, delta->origin, now), "gap", now);
    }
    evr_sockspec_destroy(&spec);
}

//  Whether a heartbeat's vector entry refers to an old boot of its origin
//  (or to us): not something to compare.
static bool s_obsolete(evr_cluster_t *self, const char *origin,
                       uint64_t instance)
{
    if (!strcmp(origin, self->node))
        return true;
    uint64_t *known = zhashx_lookup(self->instances, origin);
    return known && *known > instance;
}

//  Whether peer's vector (from its heartbeat) lacks something ours has.
static bool s_peer_behind(evr_cluster_t *self, s_peer_t *peer)
{
    s_vector_t ours = {0};
    evr_repl_seq_foreach(self->repl, s_vector_collect, &ours);
    bool behind = false;
    for (size_t i = 0; i < ours.n && !behind; i++) {
        const s_seq_t *e = &ours.v[i];
        if (strcmp(e->origin, self->node) &&
            s_obsolete(self, e->origin, e->instance))
            continue;
        behind = s_vector_get(&peer->seqs, e->origin, e->instance) < e->seq;
    }
    s_vector_free(&ours);
    return behind;
}

//  Whether we lack something of vector v.
static bool s_we_lack(evr_cluster_t *self, const s_vector_t *v)
{
    for (size_t i = 0; i < v->n; i++) {
        const s_seq_t *e = &v->v[i];
        if (s_obsolete(self, e->origin, e->instance))
            continue;
        if (evr_repl_seq_get(self->repl, e->origin, e->instance) < e->seq)
            return true;
    }
    return false;
}

//  Anti-entropy on a heartbeat: a peer ahead of us on some origin, or
//  with another digest while its versions are not behind ours, is pulled
//  from if that is still so EVR_CLUSTER_AE_GRACE_MS later (deltas on the
//  PUB usually close the difference meanwhile).
static void s_check_peer(evr_cluster_t *self, s_peer_t *peer, int64_t now)
{
    if (!self->ready || peer->req_id || peer->pull_wanted)
        return;
    if (s_we_lack(self, &peer->seqs)) {
        if (!peer->want_ms) {
            s_vector_clear(&peer->want);
            for (size_t i = 0; i < peer->seqs.n; i++)
                s_vector_add(&peer->want, peer->seqs.v[i].origin,
                             peer->seqs.v[i].instance, peer->seqs.v[i].seq);
            peer->want_ms = now + EVR_CLUSTER_AE_GRACE_MS;
        }
        peer->digest_since_ms = 0;
        return;
    }
    if (peer->digest == evr_repl_digest(self->repl) ||
        s_peer_behind(self, peer)) {
        peer->digest_since_ms = 0;
        return;
    }
    if (!peer->digest_since_ms)
        peer->digest_since_ms = now;
    else if (now - peer->digest_since_ms >= EVR_CLUSTER_AE_GRACE_MS) {
        peer->digest_since_ms = 0;
        s_want_pull(self, peer, "digest", now);
    }
}

//  A Heartbeat, from a peer's DEALER through our ROUTER (peer NULL) or in
//  answer to ours on our DEALER to it (peer set). Returns the peer it is
//  from, or NULL when it is to be ignored.
static s_peer_t *s_on_heartbeat(evr_cluster_t *self,
                                const Evrelay__Heartbeat *hb, s_peer_t *peer)
{
    int64_t now = s_now();
    if (!evr_cmsg_heartbeat_ok(hb)) {
        self->ct.malformed++;
        return NULL;
    }
    if (!strcmp(hb->node, self->node)) {
        if (hb->instance != self->instance) {
            if (self->ct.node_conflicts++ % 100 == 0)
                zsys_error("cluster: another relay (%s) uses this relay's "
                           "node id %s: node ids must be unique",
                           hb->cluster_endpoint, self->node);
        } else if (peer)
            s_alias(self, peer, "this relay");
        return NULL;
    }
    if (!peer) {
        peer = s_peer_by_endpoint(self, hb->cluster_endpoint);
        if (!peer)
            peer = s_peer_by_node(self, hb->node);
        if (!peer)
            peer = s_peer_add(self, hb->cluster_endpoint, false);
        if (!peer)
            return NULL;
    } else {
        s_peer_t *twin = s_peer_by_node(self, hb->node);
        if (twin && twin != peer) {
            //  one relay known under two endpoints: keep the one it calls
            //  itself
            if (!strcmp(hb->cluster_endpoint, peer->endpoint))
                s_alias(self, twin, "known under another endpoint");
            else {
                s_alias(self, peer, "known under another endpoint");
                return NULL;
            }
        }
    }
    if (peer->doomed || (peer->instance && hb->instance < peer->instance))
        return NULL; //  an alias, or a late word of a boot that is gone
    //  who it is, which boot
    if (!peer->node || strcmp(peer->node, hb->node)) {
        free(peer->node);
        peer->node = strdup(hb->node);
    }
    if (peer->instance && hb->instance > peer->instance) {
        zsys_info("cluster: peer %s restarted", hb->node);
        s_want_pull(self, peer, "restarted", now);
    }
    if (hb->instance >= peer->instance) {
        peer->instance = hb->instance;
        s_note_instance(self, hb->node, hb->instance);
    }
    //  its delta stream
    char *pub = evr_cmsg_pub_connect_endpoint(hb->pub_endpoint, peer->endpoint);
    if (pub && (!peer->pub || strcmp(peer->pub, pub))) {
        if (peer->pub)
            zmq_disconnect(self->sub, peer->pub);
        free(peer->pub);
        peer->pub = NULL;
        peer->sub_live = false;
        if (s_secure(self, self->sub, peer->endpoint) == 0 &&
            zmq_connect(self->sub, pub) == 0) {
            peer->pub = pub;
            peer->pub_ms = now;
            pub = NULL;
        } else
            zsys_warning("cluster: cannot connect to %s's deltas at %s: %s",
                         hb->node, hb->pub_endpoint, zmq_strerror(zmq_errno()));
    }
    free(pub);
    //  liveness
    s_state_t before = s_state(self, peer, now);
    bool first = !peer->last_hb_ms;
    peer->last_hb_ms = now;
    if (before == S_DEAD) {
        if (peer->resync) {
            zsys_info("cluster: peer %s is back", hb->node);
            s_want_pull(self, peer, "back from dead", now);
        } else if (!peer->was_alive)
            zsys_info("cluster: peer %s (%s) is alive", hb->node,
                      peer->endpoint);
        peer->resync = false;
    }
    peer->was_alive = true;
    //  what it holds
    peer->hlc = hb->has_hlc ? hb->hlc : 0;
    peer->digest = hb->digest;
    peer->records = hb->records;
    peer->peer_ready = hb->has_ready && hb->ready;
    s_vector_clear(&peer->seqs);
    for (size_t i = 0; i < hb->n_seqs; i++) {
        const Evrelay__OriginSeq *e = hb->seqs[i];
        if (e && e->origin && *e->origin)
            s_vector_add(&peer->seqs, e->origin, e->instance, e->seq);
    }
    //  the members it knows
    for (size_t i = 0; i < hb->n_members; i++)
        if (hb->members[i] && !s_peer_by_endpoint(self, hb->members[i]))
            s_peer_add(self, hb->members[i], false);
    if (first && self->ready && peer->peer_ready &&
        peer->digest != evr_repl_digest(self->repl))
        //  we were up before we knew it (a relay without peers of its
        //  own, restarted): take what it has now rather than in 2 s
        s_want_pull(self, peer, "first contact", now);
    s_check_peer(self, peer, now);
    return peer;
}

//  One record of a snapshot chunk.
static void s_on_chunk_record(evr_cluster_t *self, const Evrelay__Record *pb,
                              int64_t now)
{
    evr_record_t rec;
    evr_sockspec_t *spec;
    if (evr_cmsg_record_from_pb(pb, &rec, &spec)) {
        self->ct.malformed++;
        return;
    }
    if (evr_hlc_update(self->hlc, rec.hlc, now))
        self->ct.refused_skew++;
    else
        s_merge_remote(self, &rec, now);
    evr_sockspec_destroy(&spec);
}

//  A snapshot chunk from the peer we asked.
static void s_on_chunk(evr_cluster_t *self, s_peer_t *peer,
                       const Evrelay__SnapshotChunk *chunk)
{
    int64_t now = s_now();
    if (!peer->req_id || chunk->id != peer->req_id)
        return; //  an answer we gave up on
    for (size_t i = 0; i < chunk->n_records; i++)
        s_on_chunk_record(self, chunk->records[i], now);
    if (!chunk->last)
        return;
    //  everything the peer had applied up to its vector is merged now
    for (size_t i = 0; i < chunk->n_seqs; i++) {
        const Evrelay__OriginSeq *e = chunk->seqs[i];
        if (!e || !e->origin || !*e->origin || !strcmp(e->origin, self->node))
            continue;
        if (s_note_instance(self, e->origin, e->instance) == 0)
            evr_repl_seq_raise(self->repl, e->origin, e->instance, e->seq);
    }
    s_gap_drain(self);
    peer->req_id = 0;
    peer->last_sync_ms = now;
    peer->snapshots_pulled++;
    self->ct.snapshots_pulled++;
    peer->want_ms = 0;
    peer->digest_since_ms = 0;
    if (self->store && self->dirty) {
        evr_store_flush(self->store);
        self->dirty = false;
    }
    if (!self->ready) {
        self->ready = true;
        self->join_peer = NULL;
        zsys_info("cluster: joined from %s in %" PRId64 " ms: %zu records, "
                  "ready",
                  s_peer_name(peer), now - self->start_ms,
                  evr_repl_size(self->repl));
    }
}

//  State of a snapshot being served.
typedef struct {
    evr_cluster_t *self;
    zmq_msg_t *rid; //  the requester's routing id
    uint64_t id;
    Evrelay__Record recs[EVR_CLUSTER_CHUNK_RECORDS];
    Evrelay__Record *ptrs[EVR_CLUSTER_CHUNK_RECORDS];
    size_t n, bytes;
    bool failed;
} s_serve_t;

//  Send the records gathered so far as one chunk (the last one carries
//  our version vector).
static void s_serve_flush(s_serve_t *sv, bool last)
{
    if (sv->failed)
        return;
    evr_cluster_t *self = sv->self;
    Evrelay__SnapshotChunk chunk = EVRELAY__SNAPSHOT_CHUNK__INIT;
    chunk.id = sv->id;
    chunk.n_records = sv->n;
    chunk.records = sv->ptrs;
    chunk.last = last;
    s_vector_t vec = {0};
    Evrelay__OriginSeq *seqs = NULL;
    Evrelay__OriginSeq **seqp = NULL;
    if (last) {
        evr_repl_seq_foreach(self->repl, s_vector_collect, &vec);
        seqs = calloc(vec.n + 1, sizeof *seqs);
        seqp = calloc(vec.n + 1, sizeof *seqp);
        for (size_t i = 0; seqs && seqp && i < vec.n; i++) {
            evrelay__origin_seq__init(&seqs[i]);
            seqs[i].origin = vec.v[i].origin;
            seqs[i].instance = vec.v[i].instance;
            seqs[i].seq = vec.v[i].seq;
            seqp[i] = &seqs[i];
        }
        chunk.n_seqs = seqs && seqp ? vec.n : 0;
        chunk.seqs = seqp;
    }
    Evrelay__ClusterMsg msg = EVRELAY__CLUSTER_MSG__INIT;
    msg.body_case = EVRELAY__CLUSTER_MSG__BODY_SNAPSHOT_CHUNK;
    msg.snapshot_chunk = &chunk;
    size_t len;
    void *buf = s_pack(&msg, &len);
    if (!buf ||
        zmq_send(self->router, zmq_msg_data(sv->rid), zmq_msg_size(sv->rid),
                 ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(self->router, buf, len, ZMQ_DONTWAIT) != (int)len)
        sv->failed = true;
    free(buf);
    free(seqs);
    free(seqp);
    s_vector_free(&vec);
    sv->n = 0;
    sv->bytes = 0;
}

//  evr_repl_foreach hook: add a record to the chunk being built.
static void s_serve_record(const evr_record_t *rec, void *arg)
{
    s_serve_t *sv = arg;
    evr_cmsg_record_to_pb(rec, &sv->recs[sv->n]);
    sv->ptrs[sv->n] = &sv->recs[sv->n];
    sv->n++;
    sv->bytes +=
        strlen(rec->event) + strlen(rec->socket) + strlen(rec->origin) + 40;
    if (sv->n == EVR_CLUSTER_CHUNK_RECORDS ||
        sv->bytes >= EVR_CLUSTER_CHUNK_BYTES)
        s_serve_flush(sv, false);
}

//  A SnapshotRequest: stream every record, ~1000 per chunk, all at once
//  (the core thread builds it in one go, so the snapshot is the state of
//  one instant, consistent with the vector in the last chunk).
static void s_serve_snapshot(evr_cluster_t *self, zmq_msg_t *rid, uint64_t id)
{
    s_serve_t *sv = calloc(1, sizeof *sv);
    if (!sv)
        return;
    sv->self = self;
    sv->rid = rid;
    sv->id = id;
    evr_repl_foreach(self->repl, s_serve_record, sv);
    s_serve_flush(sv, true);
    if (sv->failed)
        self->ct.snapshot_aborts++;
    else
        self->ct.snapshots_served++;
    free(sv);
}

//  Decode a ClusterMsg frame, checking size and version. NULL (counted)
//  when it is not one we take.
static Evrelay__ClusterMsg *s_decode(evr_cluster_t *self, zmq_msg_t *frame)
{
    evr_cmsg_rc_t rc;
    Evrelay__ClusterMsg *msg =
        evr_cmsg_decode(zmq_msg_data(frame), zmq_msg_size(frame),
                        EVR_CLUSTER_MAX_FRAME_BYTES, &rc);
    if (rc == EVR_CMSG_MALFORMED)
        self->ct.malformed++;
    else if (rc == EVR_CMSG_BAD_VERSION)
        self->ct.bad_version++;
    return msg;
}

//  Read one message of up to two frames. Returns the number of frames, 0
//  when nothing was waiting. Extra frames are discarded.
static int s_recv(void *sock, zmq_msg_t *first, zmq_msg_t *second)
{
    zmq_msg_init(first);
    zmq_msg_init(second);
    if (zmq_msg_recv(first, sock, ZMQ_DONTWAIT) < 0)
        return 0;
    int n = 1;
    if (zmq_msg_more(first)) {
        zmq_msg_recv(second, sock, 0);
        n = 2;
        zmq_msg_t extra;
        bool more = zmq_msg_more(second);
        while (more) {
            zmq_msg_init(&extra);
            zmq_msg_recv(&extra, sock, 0);
            more = zmq_msg_more(&extra);
            zmq_msg_close(&extra);
            n = 3;
        }
    }
    return n;
}

//  Requests from peers on the ROUTER: [routing id][ClusterMsg].
static void s_drain_router(evr_cluster_t *self)
{
    for (int round = 0; round < S_BUDGET_ROUTER; round++) {
        zmq_msg_t rid, frame;
        int n = s_recv(self->router, &rid, &frame);
        if (n == 0) {
            zmq_msg_close(&rid);
            zmq_msg_close(&frame);
            return;
        }
        bool permitted = evr_auth_permits(self->auth, EVR_AUTH_CLUSTER, &frame);
        Evrelay__ClusterMsg *msg =
            n == 2 && permitted ? s_decode(self, &frame) : NULL;
        if (n != 2)
            self->ct.malformed++;
        if (msg && msg->body_case == EVRELAY__CLUSTER_MSG__BODY_HEARTBEAT) {
            s_on_heartbeat(self, msg->heartbeat, NULL);
            size_t len;
            void *buf = s_heartbeat_pack(self, &len);
            if (buf &&
                zmq_send(self->router, zmq_msg_data(&rid), zmq_msg_size(&rid),
                         ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0)
                zmq_send(self->router, buf, len, ZMQ_DONTWAIT);
            free(buf);
        } else if (msg && msg->body_case ==
                              EVRELAY__CLUSTER_MSG__BODY_SNAPSHOT_REQUEST)
            s_serve_snapshot(self, &rid, msg->snapshot_request->id);
        else if (msg)
            self->ct.malformed++;
        if (msg)
            evrelay__cluster_msg__free_unpacked(msg, NULL);
        zmq_msg_close(&rid);
        zmq_msg_close(&frame);
    }
}

//  Answers from one peer on its DEALER: heartbeats and snapshot chunks.
static void s_drain_dealer(evr_cluster_t *self, s_peer_t *peer)
{
    for (int round = 0; round < S_BUDGET_DEALER && !peer->doomed; round++) {
        zmq_msg_t frame, extra;
        int n = s_recv(peer->dealer, &frame, &extra);
        zmq_msg_close(&extra);
        if (n == 0) {
            zmq_msg_close(&frame);
            return;
        }
        Evrelay__ClusterMsg *msg = n == 1 ? s_decode(self, &frame) : NULL;
        if (n != 1)
            self->ct.malformed++;
        if (msg && msg->body_case == EVRELAY__CLUSTER_MSG__BODY_HEARTBEAT)
            s_on_heartbeat(self, msg->heartbeat, peer);
        else if (msg &&
                 msg->body_case == EVRELAY__CLUSTER_MSG__BODY_SNAPSHOT_CHUNK)
            s_on_chunk(self, peer, msg->snapshot_chunk);
        else if (msg)
            self->ct.malformed++;
        if (msg)
            evrelay__cluster_msg__free_unpacked(msg, NULL);
        zmq_msg_close(&frame);
    }
}

//  A peer's welcome on our SUB (its XPUB sends it when our subscription
//  reaches it): from now on none of its deltas can be missed by design,
//  so a snapshot asked now and the stream together hold everything.
static void s_on_welcome(evr_cluster_t *self, const Evrelay__Heartbeat *hb)
{
    s_peer_t *peer = hb->node ? s_peer_by_node(self, hb->node) : NULL;
    if (peer && peer->instance == hb->instance)
        peer->sub_live = true;
}

//  Deltas from every peer's PUB on our SUB.
static void s_drain_sub(evr_cluster_t *self)
{
    for (int round = 0; round < S_BUDGET_SUB; round++) {
        zmq_msg_t frame, extra;
        int n = s_recv(self->sub, &frame, &extra);
        zmq_msg_close(&extra);
        if (n == 0) {
            zmq_msg_close(&frame);
            return;
        }
        Evrelay__ClusterMsg *msg = n == 1 ? s_decode(self, &frame) : NULL;
        if (n != 1)
            self->ct.malformed++;
        if (msg && msg->body_case == EVRELAY__CLUSTER_MSG__BODY_DELTA &&
            msg->delta)
            s_on_delta(self, msg->delta);
        else if (msg &&
                 msg->body_case == EVRELAY__CLUSTER_MSG__BODY_HEARTBEAT &&
                 msg->heartbeat)
            s_on_welcome(self, msg->heartbeat);
        else if (msg)
            self->ct.malformed++;
        if (msg)
            evrelay__cluster_msg__free_unpacked(msg, NULL);
        zmq_msg_close(&frame);
    }
}

//  --------------------------------------------------------------------------
//  Timers

//  evr_repl_gc hook: a record dropped at the end of its shadow window. It
//  expired long before, and the table's own sweep removed it then; the
//  unsubscribe only makes sure the table agrees.
static void s_on_gc(const evr_record_t *rec, void *arg)
{
    evr_cluster_t *self = arg;
    self->ct.gc_dropped++;
    if (!rec->tombstone)
        s_apply_remote(self, rec, false);
}

//  Once a second: gc, and compaction when the log has grown.
static void s_gc(evr_cluster_t *self, int64_t now)
{
    evr_repl_gc(self->repl, now, s_on_gc, self);
    if (self->store && evr_store_wants_compaction(self->store)) {
        int64_t t0 = zclock_usecs();
        if (evr_store_compact(self->store, self->repl))
            zsys_error("cluster: compaction of %s failed", self->cfg->data_dir);
        self->last_compact_ms = (zclock_usecs() - t0) / 1000;
        zsys_info("cluster: compacted %zu records in %" PRId64 " ms",
                  evr_repl_size(self->repl), self->last_compact_ms);
        self->dirty = false;
    }
}

//  Liveness transitions, request timeouts, pending checks and pulls of
//  every peer; removal of doomed and long-dead learned peers.
static void s_peers_tick(evr_cluster_t *self, int64_t now)
{
    for (size_t i = 0; i < self->npeers; i++) {
        s_peer_t *peer = self->peers[i];
        s_state_t state = s_state(self, peer, now);
        if (state == S_DEAD && peer->was_alive) {
            zsys_warning("cluster: peer %s is dead (silent %" PRId64 " ms)",
                         s_peer_name(peer), now - peer->last_hb_ms);
            peer->was_alive = false;
            peer->resync = true;
            peer->dead_ms = now;
            peer->req_id = 0;
            peer->want_ms = 0;
        }
        if (peer->req_id &&
            now - peer->req_ms > EVR_CLUSTER_SNAPSHOT_TIMEOUT_MS) {
            zsys_warning("cluster: snapshot from %s timed out",
                         s_peer_name(peer));
            self->ct.snapshot_timeouts++;
            peer->req_id = 0;
            if (self->join_peer == peer)
                self->join_peer = NULL;
            else
                s_want_pull(self, peer, "retry", now);
        }
        if (peer->want_ms && now >= peer->want_ms) {
            peer->want_ms = 0;
            if (s_we_lack(self, &peer->want))
                s_want_pull(self, peer, "behind", now);
        }
        s_try_pull(self, peer, now);
        bool forget = !peer->configured && state == S_DEAD && peer->dead_ms &&
                      now - peer->dead_ms > EVR_CLUSTER_FORGET_MS;
        if (peer->doomed || forget) {
            if (forget)
                zsys_info("cluster: forgetting peer %s", s_peer_name(peer));
            s_peer_destroy(self, &self->peers[i]);
            self->peers[i] = self->peers[--self->npeers];
            i--;
        }
    }
}

//  Joining: ask a snapshot of the first ready peer that answers (a peer
//  that is itself joining only after the join timeout); alone, or with
//  nobody answering within the join timeout, be ready anyway.
static void s_join_tick(evr_cluster_t *self, int64_t now)
{
    if (self->ready || self->join_peer)
        return;
    if (self->npeers == 0 && !(self->cfg->peers && *self->cfg->peers)) {
        self->ready = true;
        zsys_info("cluster: no peer configured: ready with %zu records",
                  evr_repl_size(self->repl));
        return;
    }
    bool late = now - self->start_ms >= self->cfg->join_timeout_ms;
    s_peer_t *pick = NULL;
    for (size_t i = 0; i < self->npeers && !pick; i++) {
        s_peer_t *p = self->peers[i];
        //  subscribed to its deltas first (its welcome came, or it is
        //  long enough since we connected), then its snapshot
        bool subscribed = p->pub && (p->sub_live || now - p->pub_ms >= 1000);
        if (!p->doomed && subscribed && s_state(self, p, now) == S_ALIVE &&
            (p->peer_ready || late))
            pick = p;
    }
    if (pick) {
        self->join_peer = pick;
        pick->next_pull_ms = 0;
        s_want_pull(self, pick, "join", now);
    } else if (late) {
        self->ready = true;
        zsys_warning("cluster: no peer answered within %d ms: ready alone "
                     "with %zu records (the first relay up?)",
                     self->cfg->join_timeout_ms, evr_repl_size(self->repl));
    }
}

//  Every antientropy_s: pull from the next alive peer whose digest
//  differs from ours.
static void s_antientropy(evr_cluster_t *self, int64_t now)
{
    uint64_t digest = evr_repl_digest(self->repl);
    for (size_t k = 0; k < self->npeers; k++) {
        s_peer_t *peer = self->peers[(self->ae_cursor + k) % self->npeers];
        if (peer->doomed || s_state(self, peer, now) != S_ALIVE ||
            peer->digest == digest)
            continue;
        self->ae_cursor = (self->ae_cursor + k + 1) % self->npeers;
        s_want_pull(self, peer, "periodic", now);
        return;
    }
}

static void s_revoke_links(evr_cluster_t *self);
static int s_pub_open(evr_cluster_t *self, char *err, size_t errlen);

//  Run what is due.
static void s_tick(evr_cluster_t *self, int64_t now)
{
    if (self->router) {
        uint64_t removals = evr_auth_removals(self->auth, EVR_AUTH_CLUSTER);
        if (removals != self->removals) {
            self->removals = removals;
            s_revoke_links(self);
        } else if (!self->pub) {
            //  the reopen failed: try again each tick
            char err[512];
            if (s_pub_open(self, err, sizeof err) == 0)
                zsys_info("cluster: deltas now on %s", self->pub_endpoint);
        }
        //  the XPUB hands up its subscribers' (un)subscriptions: unused
        char sub[64];
        for (int n = 0; self->pub && n < 1000; n++)
            if (zmq_recv(self->pub, sub, sizeof sub, ZMQ_DONTWAIT) < 0)
                break;
        if (now >= self->next_hb_ms) {
            s_send_heartbeats(self, false);
            self->next_hb_ms = now + self->cfg->heartbeat_ms;
        } else if (!self->ready)
            //  joining: say hello as soon as a connection is up (a send
            //  is dropped until then)
            s_send_heartbeats(self, true);
        s_peers_tick(self, now);
        s_join_tick(self, now);
        if (now >= self->next_ae_ms) {
            if (self->ready)
                s_antientropy(self, now);
            self->next_ae_ms = now + (int64_t)self->cfg->antientropy_s * 1000;
        }
    }
    if (now >= self->next_gc_ms) {
        s_gc(self, now);
        //  on the next second boundary: every relay collects the same
        //  records at about the same time, so digests agree
        self->next_gc_ms = (now / 1000 + 1) * 1000 + 20;
    }
    if (self->dirty && self->store && now >= self->next_flush_ms) {
        evr_store_flush(self->store);
        self->dirty = false;
        self->next_flush_ms = now + EVR_CLUSTER_FLUSH_MS;
    }
    self->next_tick_ms = now + S_TICK_MS;
}

//  --------------------------------------------------------------------------
//  Construction

//  evr_store_load hook: merge one record from the disk.
static void s_on_load(const evr_record_t *stored, void *arg)
{
    evr_cluster_t *self = arg;
    char why[256];
    evr_sockspec_t *spec = evr_sockspec_parse(stored->socket, why, sizeof why);
    if (!spec) {
        self->ct.malformed++;
        return;
    }
    evr_record_t rec = *stored;
    rec.match_key = evr_sockspec_match_key(spec);
    evr_hlc_update(self->hlc, rec.hlc, s_now());
    evr_repl_merge(self->repl, &rec);
    evr_sockspec_destroy(&spec);
}

//  evr_repl_foreach hook: apply a loaded record to the table.
static void s_apply_loaded(const evr_record_t *rec, void *arg)
{
    evr_cluster_t *self = arg;
    if (evr_repl_live(rec, s_now()))
        s_apply_remote(self, rec, true);
}

//  Open the data directory and load it into the map and the table.
static int s_open_store(evr_cluster_t *self, char *err, size_t errlen)
{
    const evr_config_t *cfg = self->cfg;
    char why[512];
    self->store = evr_store_open(cfg->data_dir, cfg->fsync, why, sizeof why);
    if (!self->store) {
        snprintf(err, errlen, "data directory %s: %s", cfg->data_dir, why);
        return -1;
    }
    int64_t t0 = zclock_usecs();
    long n = evr_store_load(self->store, s_on_load, self);
    if (n < 0) {
        snprintf(err, errlen, "data directory %s: cannot read it",
                 cfg->data_dir);
        return -1;
    }
    evr_repl_gc(self->repl, s_now(), NULL, NULL);
    self->ct.loaded = evr_repl_size(self->repl);
    evr_repl_foreach(self->repl, s_apply_loaded, self);
    zsys_info("cluster: loaded %ld records from %s in %" PRId64 " ms: %zu kept",
              n, cfg->data_dir, (zclock_usecs() - t0) / 1000,
              evr_repl_size(self->repl));
    return 0;
}

//  Create a socket with the options every cluster socket shares.
static void *s_socket(evr_cluster_t *self, int type)
{
    void *sock = zmq_socket(self->ctx, type);
    int linger = 0, hwm = 100000;
    int64_t maxmsg = EVR_CLUSTER_MAX_FRAME_BYTES;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    return sock;
}

//  The XPUB's welcome: a heartbeat naming this relay, which every new
//  subscriber receives first once its subscription is in place.
static void s_set_welcome(evr_cluster_t *self)
{
    Evrelay__Heartbeat hb = EVRELAY__HEARTBEAT__INIT;
    hb.node = self->node;
    hb.instance = self->instance;
    hb.cluster_endpoint = self->cfg->cluster;
    hb.pub_endpoint = self->pub_endpoint;
    Evrelay__ClusterMsg msg = EVRELAY__CLUSTER_MSG__INIT;
    msg.body_case = EVRELAY__CLUSTER_MSG__BODY_HEARTBEAT;
    msg.heartbeat = &hb;
    size_t len;
    void *buf = s_pack(&msg, &len);
    if (buf)
        zmq_setsockopt(self->pub, ZMQ_XPUB_WELCOME_MSG, buf, len);
    free(buf);
}

//  Create the XPUB, make it a CURVE server, bind it next to the ROUTER on
//  any port, and set its welcome. Returns 0, or -1 with a reason (the
//  socket is then closed).
static int s_pub_open(evr_cluster_t *self, char *err, size_t errlen)
{
    char *pub_bind = s_pub_bind_endpoint(self->cfg->cluster);
    self->pub = s_socket(self, ZMQ_XPUB);
    int rc = 0;
    if (!pub_bind || !self->pub) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    } else if (evr_auth_server(self->auth, self->pub, EVR_AUTH_CLUSTER, err,
                               errlen))
        rc = -1;
    else if (zmq_bind(self->pub, pub_bind)) {
        snprintf(err, errlen, "cannot bind %s: %s", pub_bind,
                 zmq_strerror(zmq_errno()));
        rc = -1;
    } else {
        char last[1024];
        size_t size = sizeof last;
        zmq_getsockopt(self->pub, ZMQ_LAST_ENDPOINT, last, &size);
        free(self->pub_endpoint);
        self->pub_endpoint = strdup(last);
        s_set_welcome(self);
    }
    free(pub_bind);
    if (rc && self->pub) {
        zmq_close(self->pub);
        self->pub = NULL;
    }
    return rc;
}

//  Bind the ROUTER and the PUB, create the SUB.
static int s_bind(evr_cluster_t *self, char *err, size_t errlen)
{
    const char *listen = self->cfg->cluster;
    if (evr_cmsg_wildcard_host(listen)) {
        //  peers learn each other from this string: it must lead here
        snprintf(err, errlen,
                 "--cluster %s: give an address the peers can connect to, "
                 "not a wildcard",
                 listen);
        return -1;
    }
    char *pub_bind = s_pub_bind_endpoint(listen);
    if (!pub_bind) {
        snprintf(err, errlen,
                 "--cluster %s: expected tcp://HOST:PORT or ipc://PATH",
                 listen);
        return -1;
    }
    free(pub_bind);
    self->router = s_socket(self, ZMQ_ROUTER);
    self->sub = s_socket(self, ZMQ_SUB);
    if (evr_auth_server(self->auth, self->router, EVR_AUTH_CLUSTER, err,
                        errlen))
        return -1;
    if (zmq_bind(self->router, listen)) {
        snprintf(err, errlen, "cannot bind %s: %s", listen,
                 zmq_strerror(zmq_errno()));
        return -1;
    }
    zmq_setsockopt(self->sub, ZMQ_SUBSCRIBE, "", 0);
    return s_pub_open(self, err, errlen);
}

//  A peer certificate left the peers directory: drop the links of the
//  peers whose certificate is gone, and reopen the XPUB on a new port.
//  libzmq cannot disconnect one subscriber, and a revoked relay must not
//  go on receiving deltas over the connection it made before; the peers
//  still listed follow the new endpoint from our heartbeats and pull what
//  they missed meanwhile (a sequence gap).
static void s_revoke_links(evr_cluster_t *self)
{
    for (size_t i = 0; i < self->npeers; i++) {
        s_peer_t *peer = self->peers[i];
        char key[41];
        if (peer->doomed ||
            evr_auth_endpoint_key(self->auth, true, peer->endpoint, key) == 0)
            continue;
        zsys_warning("cluster: the certificate of peer %s left [security] "
                     "peers: disconnected",
                     s_peer_name(peer));
        zhashx_insert(self->keyless, peer->endpoint, "");
        peer->doomed = true; //  destroyed by s_peers_tick
    }
    zmq_close(self->pub);
    self->pub = NULL;
    char err[512];
    if (s_pub_open(self, err, sizeof err))
        zsys_error("cluster: cannot reopen the delta PUB: %s (retried "
                   "each tick; meanwhile peers pull)",
                   err);
    else
        zsys_info("cluster: deltas now on %s", self->pub_endpoint);
}

//  Create the cluster.
evr_cluster_t *evr_cluster_new(void *ctx, evr_auth_t *auth,
                               const evr_config_t *cfg,
                               evr_cluster_apply_fn *apply, void *arg,
                               char *err, size_t errlen)
{
    assert(cfg->cluster || cfg->data_dir);
    evr_cluster_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->cfg = cfg;
    self->ctx = ctx;
    self->auth = auth;
    self->apply = apply;
    self->arg = arg;
    self->start_ms = s_now();
    self->instance = s_new_instance();
    self->node =
        cfg->node_id ? strdup(cfg->node_id) : s_default_node(cfg->cluster);
    self->hlc = evr_hlc_new(cfg->max_skew_ms);
    self->repl =
        evr_repl_new((int64_t)cfg->max_lease_s * 1000, cfg->max_skew_ms);
    self->aliases = zlistx_new();
    self->keyless = zhashx_new();
    self->instances = zhashx_new();
    self->gapbufs = zhashx_new();
    if (!self->node || !self->hlc || !self->repl || !self->aliases ||
        !self->keyless || !self->instances || !self->gapbufs) {
        snprintf(err, errlen, "out of memory");
        evr_cluster_destroy(&self);
        return NULL;
    }
    zlistx_set_destructor(self->aliases, (zlistx_destructor_fn *)zstr_free);
    zhashx_set_destructor(self->instances, s_instance_destroy);
    zhashx_set_destructor(self->gapbufs, s_gapbuf_destroy);
    if (!*self->node || strlen(self->node) > 255) {
        snprintf(err, errlen, "--node-id: 1 to 255 characters");
        evr_cluster_destroy(&self);
        return NULL;
    }
    s_note_instance(self, self->node, self->instance);
    if ((cfg->data_dir && s_open_store(self, err, errlen)) ||
        (cfg->cluster && s_bind(self, err, errlen))) {
        evr_cluster_destroy(&self);
        return NULL;
    }
    for (char **p = cfg->peers; cfg->cluster && p && *p; p++)
        s_peer_add(self, *p, true);
    if (!cfg->cluster) {
        self->ready = true; //  persistence only: nothing to join
        zsys_info("cluster: node %s, persistence in %s (not clustered)",
                  self->node, cfg->data_dir);
    } else
        zsys_info("cluster: node %s instance %" PRIu64
                  ": peers at %s, deltas on %s, %zu peer(s) configured",
                  self->node, self->instance, cfg->cluster, self->pub_endpoint,
                  self->npeers);
    int64_t now = s_now();
    self->next_hb_ms = now;
    self->next_gc_ms = (now / 1000 + 1) * 1000 + 20;
    self->next_ae_ms = now + (int64_t)cfg->antientropy_s * 1000;
    s_tick(self, now);
    return self;
}

//  Close the sockets, flush and close the store, free, NULL the pointer.
void evr_cluster_destroy(evr_cluster_t **self_p)
{
    evr_cluster_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    for (size_t i = 0; i < self->npeers; i++)
        s_peer_destroy(self, &self->peers[i]);
    if (self->router)
        zmq_close(self->router);
    if (self->pub)
        zmq_close(self->pub);
    if (self->sub)
        zmq_close(self->sub);
    evr_store_destroy(&self->store);
    evr_repl_destroy(&self->repl);
    evr_hlc_destroy(&self->hlc);
    zlistx_destroy(&self->aliases);
    zhashx_destroy(&self->keyless);
    zhashx_destroy(&self->instances);
    zhashx_destroy(&self->gapbufs);
    free(self->pub_endpoint);
    free(self->node);
    free(self);
}

//  --------------------------------------------------------------------------
//  The core loop's side

//  Fill items with the sockets to poll.
size_t evr_cluster_poll_items(evr_cluster_t *self, zmq_pollitem_t *items,
                              size_t max)
{
    size_t n = 0;
    if (self->router && max >= 2) {
        self->poll_socks[n] = self->router;
        self->poll_peers[n++] = NULL;
        self->poll_socks[n] = self->sub;
        self->poll_peers[n++] = NULL;
        for (size_t i = 0; i < self->npeers && n < max; i++)
            if (!self->peers[i]->doomed) {
                self->poll_socks[n] = self->peers[i]->dealer;
                self->poll_peers[n++] = self->peers[i];
            }
    }
    for (size_t i = 0; i < n; i++)
        items[i] = (zmq_pollitem_t){self->poll_socks[i], 0, ZMQ_POLLIN, 0};
    self->npoll = n;
    return n;
}

//  Handle what the poll found, then the timers.
void evr_cluster_poll_handle(evr_cluster_t *self, const zmq_pollitem_t *items,
                             size_t n)
{
    for (size_t i = 0; i < n && i < self->npoll; i++) {
        if (!(items[i].revents & ZMQ_POLLIN) ||
            items[i].socket != self->poll_socks[i])
            continue;
        if (self->poll_socks[i] == self->router)
            s_drain_router(self);
        else if (self->poll_socks[i] == self->sub)
            s_drain_sub(self);
        else if (!self->poll_peers[i]->doomed)
            s_drain_dealer(self, self->poll_peers[i]);
    }
    self->npoll = 0; //  peers may go at the tick: the items are stale now
    int64_t now = s_now();
    if (now >= self->next_tick_ms)
        s_tick(self, now);
}

//  Milliseconds until the next timer.
long evr_cluster_timeout(evr_cluster_t *self)
{
    int64_t left = self->next_tick_ms - s_now();
    return left > 0 ? (long)left : 0;
}

//  A local subscribe or unsubscribe.
int evr_cluster_write(evr_cluster_t *self, const char *event,
                      const char *socket, int64_t expire_s, char *err,
                      size_t errlen)
{
    if (expire_s < 0) {
        snprintf(err, errlen, "Negative expire value");
        return -1;
    }
    if (expire_s > self->cfg->max_lease_s) {
        self->ct.refused_lease++;
        snprintf(err, errlen,
                 "expire %lld s is above the cluster's max lease of %d s "
                 "([cluster] max_lease_s)",
                 (long long)expire_s, self->cfg->max_lease_s);
        return -1;
    }
    //  (the event name is checked by the table, through apply below)
    evr_sockspec_t *spec = evr_sockspec_parse(socket, err, errlen);
    if (!spec)
        return -1;
    int64_t now = s_now();
    evr_record_t rec = {.event = event,
                        .socket = socket,
                        .match_key = evr_sockspec_match_key(spec),
                        .expire_s = (uint32_t)expire_s,
                        .sub_time_ms = (uint64_t)now,
                        .hlc = evr_hlc_now(self->hlc, now),
                        .origin = self->node,
                        .tombstone = expire_s == 0};
    //  the table first: a socket this relay cannot serve is refused
    //  before anything is replicated
    if (self->apply(self->arg, &rec, expire_s > 0, false, err, errlen)) {
        evr_sockspec_destroy(&spec);
        return -1;
    }
    evr_repl_result_t rc = evr_repl_merge(self->repl, &rec);
    if (rc == EVR_REPL_APPLIED) {
        s_persist(self, &rec);
        self->sync_pending = self->store != NULL;
        self->seq++;
        evr_repl_seq_raise(self->repl, self->node, self->instance, self->seq);
        s_publish(self, &rec);
    } else {
        //  a newer version exists (our clock went back): the table
        //  follows the map
        const evr_record_t *cur =
            evr_repl_find(self->repl, event, evr_sockspec_match_key(spec));
        zsys_warning("cluster: local write to %s lost to a newer version "
                     "(%s)",
                     event, rc == EVR_REPL_STALE ? "stale" : "refused");
        if (cur)
            s_apply_remote(self, cur, evr_repl_live(cur, now));
        self->ct.stale += rc == EVR_REPL_STALE;
    }
    evr_sockspec_destroy(&spec);
    return 0;
}

//  Put the local writes made since the last call on disk.
void evr_cluster_sync(evr_cluster_t *self)
{
    if (!self->sync_pending)
        return;
    self->sync_pending = false;
    if (self->cfg->fsync == EVR_FSYNC_BATCH) {
        evr_store_flush(self->store);
        self->dirty = false;
    }
}

//  Joined.
bool evr_cluster_ready(evr_cluster_t *self)
{
    return self->ready;
}

//  This relay's node id.
const char *evr_cluster_node(evr_cluster_t *self)
{
    return self->node;
}

//  A digest as 16 hex digits (JSON integers are signed 64-bit).
static json_t *s_hex(uint64_t value)
{
    char text[20];
    snprintf(text, sizeof text, "%016" PRIx64, value);
    return json_string(text);
}

//  Milliseconds since t, or -1 when t is 0 (never).
static json_int_t s_age(int64_t now, int64_t t)
{
    return t ? (json_int_t)(now - t) : -1;
}

//  The counters shared by `cluster` and `stats`.
static void s_counters_json(evr_cluster_t *self, json_t *o)
{
    const s_counters_t *c = &self->ct;
    static const char *const names[] = {"deltas_out",
                                        "deltas_in",
                                        "stale",
                                        "refused_skew",
                                        "refused_lease",
                                        "snapshots_served",
                                        "snapshots_pulled",
                                        "gaps",
                                        "malformed",
                                        "bad_version",
                                        "apply_errors",
                                        "store_errors",
                                        "publish_dropped",
                                        "snapshot_timeouts",
                                        "snapshot_aborts",
                                        "node_conflicts",
                                        "gc_dropped",
                                        "loaded"};
    const uint64_t values[] = {c->deltas_out,
                               c->deltas_in,
                               c->stale,
                               c->refused_skew,
                               c->refused_lease,
                               c->snapshots_served,
                               c->snapshots_pulled,
                               c->gaps,
                               c->malformed,
                               c->bad_version,
                               c->apply_errors,
                               c->store_errors,
                               c->publish_dropped,
                               c->snapshot_timeouts,
                               c->snapshot_aborts,
                               c->node_conflicts,
                               c->gc_dropped,
                               c->loaded};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        json_object_set_new(o, names[i], json_integer((json_int_t)values[i]));
}

//  The store's counters as an object (empty without a store).
static json_t *s_store_json(evr_cluster_t *self)
{
    json_t *o = json_object();
    if (!self->store)
        return o;
    evr_store_stats_t st;
    evr_store_stats(self->store, &st);
    json_object_set_new(o, "appended", json_integer((json_int_t)st.appended));
    json_object_set_new(o, "fsyncs", json_integer((json_int_t)st.fsyncs));
    json_object_set_new(o, "compactions",
                        json_integer((json_int_t)st.compactions));
    json_object_set_new(o, "torn", json_integer((json_int_t)st.torn));
    json_object_set_new(o, "log_frames",
                        json_integer((json_int_t)st.log_frames));
    json_object_set_new(o, "snapshot_records",
                        json_integer((json_int_t)st.snapshot_records));
    json_object_set_new(o, "last_compaction_ms",
                        json_integer(self->last_compact_ms));
    return o;
}

//  The seq a peer advertises for its own current instance.
static uint64_t s_peer_seq(const s_peer_t *peer)
{
    return peer->node ? s_vector_get(&peer->seqs, peer->node, peer->instance)
                      : 0;
}

//  The `cluster` command's result.
json_t *evr_cluster_status(evr_cluster_t *self)
{
    int64_t now = s_now();
    json_t *o = json_object();
    json_object_set_new(o, "node", json_string(self->node));
    json_object_set_new(o, "instance",
                        json_integer((json_int_t)self->instance));
    json_object_set_new(o, "ready", json_boolean(self->ready));
    json_object_set_new(o, "hlc",
                        json_integer((json_int_t)evr_hlc_last(self->hlc)));
    json_object_set_new(o, "seq", json_integer((json_int_t)self->seq));
    json_object_set_new(o, "records",
                        json_integer((json_int_t)evr_repl_size(self->repl)));
    json_object_set_new(o, "digest", s_hex(evr_repl_digest(self->repl)));
    json_object_set_new(o, "endpoint",
                        self->cfg->cluster ? json_string(self->cfg->cluster)
                                           : json_null());
    json_object_set_new(o, "pub_endpoint",
                        self->pub_endpoint ? json_string(self->pub_endpoint)
                                           : json_null());
    json_object_set_new(o, "data_dir",
                        self->cfg->data_dir ? json_string(self->cfg->data_dir)
                                            : json_null());
    s_counters_json(self, o);
    json_object_set_new(o, "store", s_store_json(self));
    json_t *members = json_array();
    for (size_t i = 0; i < self->npeers; i++) {
        s_peer_t *p = self->peers[i];
        if (p->doomed)
            continue;
        json_t *m = json_object();
        json_object_set_new(m, "node",
                            p->node ? json_string(p->node) : json_null());
        json_object_set_new(m, "endpoint", json_string(p->endpoint));
        json_object_set_new(m, "state",
                            json_string(s_state_name(s_state(self, p, now))));
        json_object_set_new(m, "ready", json_boolean(p->peer_ready));
        json_object_set_new(m, "subscribed", json_boolean(p->sub_live));
        json_object_set_new(m, "instance",
                            json_integer((json_int_t)p->instance));
        json_object_set_new(m, "seq", json_integer((json_int_t)s_peer_seq(p)));
        json_object_set_new(
            m, "applied_seq",
            json_integer(
                (json_int_t)(p->node ? evr_repl_seq_get(self->repl, p->node,
                                                        p->instance)
                                     : 0)));
        json_object_set_new(m, "hlc", json_integer((json_int_t)p->hlc));
        json_object_set_new(m, "records", json_integer((json_int_t)p->records));
        json_object_set_new(m, "digest", s_hex(p->digest));
        json_object_set_new(m, "last_heartbeat_ms",
                            json_integer(s_age(now, p->last_hb_ms)));
        json_object_set_new(m, "last_sync_ms",
                            json_integer(s_age(now, p->last_sync_ms)));
        json_object_set_new(m, "deltas_in",
                            json_integer((json_int_t)p->deltas_in));
        json_object_set_new(m, "snapshots_pulled",
                            json_integer((json_int_t)p->snapshots_pulled));
        json_object_set_new(m, "gaps", json_integer((json_int_t)p->gaps));
        json_array_append_new(members, m);
    }
    json_object_set_new(o, "members", members);
    return o;
}

//  The counters for `stats`.
json_t *evr_cluster_stats(evr_cluster_t *self)
{
    int64_t now = s_now();
    json_t *o = json_object();
    json_object_set_new(o, "ready", json_integer(self->ready));
    json_object_set_new(o, "records",
                        json_integer((json_int_t)evr_repl_size(self->repl)));
    size_t alive = 0, members = 0;
    for (size_t i = 0; i < self->npeers; i++)
        if (!self->peers[i]->doomed) {
            members++;
            alive += s_state(self, self->peers[i], now) == S_ALIVE;
        }
    json_object_set_new(o, "members", json_integer((json_int_t)members));
    json_object_set_new(o, "members_alive", json_integer((json_int_t)alive));
    s_counters_json(self, o);
    if (self->store) {
        json_t *store = s_store_json(self);
        const char *key;
        json_t *value;
        json_object_foreach(store, key, value)
        {
            char name[64];
            snprintf(name, sizeof name, "store_%s", key);
            json_object_set(o, name, value);
        }
        json_decref(store);
    }
    json_t *peers = json_array();
    for (size_t i = 0; i < self->npeers; i++) {
        s_peer_t *p = self->peers[i];
        if (p->doomed)
            continue;
        json_t *m = json_object();
        json_object_set_new(m, "node", json_string(s_peer_name(p)));
        json_object_set_new(m, "alive",
                            json_integer(s_state(self, p, now) == S_ALIVE));
        json_object_set_new(m, "deltas_in",
                            json_integer((json_int_t)p->deltas_in));
        json_object_set_new(m, "snapshots_pulled",
                            json_integer((json_int_t)p->snapshots_pulled));
        json_object_set_new(m, "gaps", json_integer((json_int_t)p->gaps));
        json_object_set_new(m, "last_heartbeat_ms",
                            json_integer(s_age(now, p->last_hb_ms)));
        json_array_append_new(peers, m);
    }
    json_object_set_new(o, "peers", peers);
    return o;
}
