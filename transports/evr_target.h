/*  evr_target.h - one delivery destination, as the relay core sees it.

    A target is a parsed socket turned into something that delivers
    payloads: a datagram socket, a file, a TCP JSON-RPC connection, an AMQP
    channel, a ZeroMQ socket, an HTTP client, or a virtual subscriber that
    spreads events over child targets. Subscriptions share targets (several
    events subscribed by one socket use one target).

    Threads: the relay's core thread creates targets and admits messages;
    exactly one delivery worker (evr_target_worker) does the target's I/O
    (see evr_transport.h for the worker side). Counters are atomics
    readable from any thread. Targets and messages are reference counted so
    a target can be unsubscribed while its messages are still queued.
*/
#ifndef EVR_TARGET_H_INCLUDED
#define EVR_TARGET_H_INCLUDED

#include "evr_sockspec.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Which payload encoding a target consumes.
typedef enum {
    EVR_FORMAT_JSONRPC = 0,
    EVR_FORMAT_LEGACY,
    EVR_FORMAT_FLATSTORE,
    EVR_FORMAT_COUNT
} evr_format_t;

//  An encoded payload shared by every target of one format. A bundle (len
//  0, parts set) carries one payload per format, for virtual targets whose
//  children consume different formats.
typedef struct _evr_msg_t evr_msg_t;
struct _evr_msg_t {
    int refs; //  atomic
    uint32_t len;
    int64_t raised_us; //  producer's raise time, 0 if unknown
    const char *event; //  event name (points into data or a bundle part)
    const char *id;    //  event id (docs/OPERATIONS.md), "" if unknown
    evr_msg_t *parts[EVR_FORMAT_COUNT]; //  bundle only
    char data[];
};

//  Allocate a message holding a copy of len bytes, with `refs` references.
//  event and id (copied after the payload; NULL = "") name the event and
//  its event id.
evr_msg_t *evr_msg_new(const void *data, size_t len, const char *event,
                       const char *id, int refs);

//  Allocate a bundle taking one reference to each non-NULL part.
evr_msg_t *evr_msg_bundle(evr_msg_t *parts[EVR_FORMAT_COUNT], int refs);

//  Drop one reference; frees the message (and a bundle's parts) at zero.
void evr_msg_unref(evr_msg_t *msg);

//  Take one more reference.
void evr_msg_ref(evr_msg_t *msg);

//  Settings shared by all targets, from the relay's configuration.
typedef struct {
    bool datagram_legacy; //  udp/unix get the <= 3.0 text format
    int file_mode;        //  permissions of flatstore files it creates
    int sndbuf; //  SO_SNDBUF for datagram sockets (0 = system default)
    int failover_timeout_s; //  virtual FAILOVER: skip a failed child
    bool tcp_reliable;      //  tcp: JSON-RPC requests with ids, replies checked
    int tcp_timeout_ms;     //  tcp: reply timeout in reliable mode
    const char *tcp_event_param;  //  tcp: event_param (NULL = none)
    int connect_timeout_ms;       //  every connecting transport
    int http_timeout_ms;          //  http: whole request
    const char *http_ca_file;     //  https: CA bundle (NULL = the system's)
    const char *http_client_cert; //  https: client certificate, or NULL
    const char *http_client_key;  //  https: its key
    int amqp_heartbeat_s;         //  rabbitmq: heartbeat (0 = off)
    size_t queue_limit;           //  per target; virtual children too
    void *zmq_ctx;                //  the relay's ZeroMQ context (zmq transport)
    struct _evr_auth_t *auth;     //  CURVE towards zmq subscribers, or NULL
    const char *flat_delimiter;   //  flatstore delimiter (evid: rewrites)
    bool flat_suppress_name;      //  flatstore lines without the name
} evr_target_opts_t;

typedef struct _evr_target_t evr_target_t;

//  Upper bounds (microseconds) of the raise->delivery latency histogram
//  buckets; a last, unbounded bucket follows. Latency is measured from
//  the producer's raise time, so it includes clock skew between hosts.
#define EVR_LATENCY_BUCKETS 16
extern const uint64_t evr_latency_bounds_us[EVR_LATENCY_BUCKETS];

//  Counters of one target (snapshot).
typedef struct {
    uint64_t delivered;
    uint64_t failed;
    uint64_t dropped;
    uint64_t queued;
    //  delivered messages with a known raise time, by latency bucket
    //  (not cumulative), and the sum of their latencies
    uint64_t latency_count[EVR_LATENCY_BUCKETS + 1];
    uint64_t latency_sum_us;
} evr_target_stats_t;

//  Create a target for spec (deep-copied) and prepare its I/O without
//  blocking on the network (a udp host is resolved once, as OpenSIPS does;
//  connections are made by the worker). worker is the index of the
//  delivery worker that will own it. opts must outlive the target. Returns
//  NULL with a reason in err on failure. Starts with one reference.
evr_target_t *evr_target_new(const evr_sockspec_t *spec,
                             const evr_target_opts_t *opts, int worker,
                             char *err, size_t errlen);

//  Take a reference.
void evr_target_ref(evr_target_t *self);

//  Drop a reference and NULL the pointer; closes and frees at zero.
void evr_target_unref(evr_target_t **self_p);

//  The canonical socket string.
const char *evr_target_socket(const evr_target_t *self);

//  The transport name ("udp", ...).
const char *evr_target_transport(const evr_target_t *self);

//  flatstore: the file path; NULL for others.
const char *evr_target_path(const evr_target_t *self);

//  The payload formats this target (and its children) consume, as a
//  bitmask of (1 << evr_format_t).
unsigned evr_target_formats(const evr_target_t *self);

//  The worker that owns the target's I/O.
int evr_target_worker(const evr_target_t *self);

//  Core thread: account for one message about to be queued. Returns 0, or
//  -1 when the target's queue is at its limit (the message is counted as
//  dropped and must not be queued).
int evr_target_admit(evr_target_t *self);

//  virtual: the number of children (0 for others) and child i (borrowed).
size_t evr_target_child_count(const evr_target_t *self);
const evr_target_t *evr_target_child(const evr_target_t *self, size_t i);

//  flatstore: reopen the file before the next write (rotation). Any
//  thread. Returns true when the target (or one of its children) writes
//  `path` (NULL = any flatstore).
bool evr_target_request_reopen(evr_target_t *self, const char *path);

//  Core thread: the last subscription of this target is gone. Its worker
//  drops what it still holds for it (counted) and closes its connections.
void evr_target_retire(evr_target_t *self);

//  Reopen every flatstore file before its next write (SIGHUP). Any thread.
void evr_target_reopen_all(void);

//  Snapshot the counters.
void evr_target_stats(const evr_target_t *self, evr_target_stats_t *stats);

#endif
