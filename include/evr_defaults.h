/*  evr_defaults.h - every tunable default of evrelay, in one place.

    Each constant carries the reason for its value. Config keys and flags
    override most of them at run time (see deploy/evrelayd.conf).
*/
#ifndef EVR_DEFAULTS_H_INCLUDED
#define EVR_DEFAULTS_H_INCLUDED

//  Wire protocol version carried by every message (docs/PROTOCOL.md).
#define EVR_PROTOCOL_VERSION 1

//  Default endpoints: loopback only, so a default install is not reachable
//  from the network.
#define EVR_DEFAULT_INGEST "tcp://127.0.0.1:7950"
#define EVR_DEFAULT_CONTROL "tcp://127.0.0.1:7951"

//  OpenSIPS MI default expire (DEFAULT_EXPIRE in evi), seconds.
#define EVR_DEFAULT_EXPIRE_S 3600

//  OpenSIPS limits event names to 64 characters.
#define EVR_MAX_EVENT_NAME 64

//  Longest event name accepted from producers and local subscribes
//  ([limits] max_name_length, at most EVR_MAX_EVENT_NAME): OpenSIPS' rule.
#define EVR_DEFAULT_MAX_NAME_LENGTH EVR_MAX_EVENT_NAME

//  The largest UDP payload OpenSIPS can send (~65457); a bigger event could
//  never reach a datagram subscriber, so it is refused at ingest.
#define EVR_DEFAULT_MAX_EVENT_BYTES 65000

//  A publish frame holds at most this many bytes; checked before decoding so
//  a hostile frame cannot make the relay allocate much.
#define EVR_DEFAULT_MAX_FRAME_BYTES (4 * 1024 * 1024)

//  Control requests are small; anything bigger is refused before decoding.
#define EVR_DEFAULT_MAX_CONTROL_BYTES (1024 * 1024)

//  Events per publish batch: large enough to amortise a ZeroMQ message and a
//  protobuf decode, small enough to keep a batch well under the frame limit.
#define EVR_DEFAULT_BATCH_EVENTS 256

//  Parameters per event: OpenSIPS' largest built-in events carry ~20.
#define EVR_DEFAULT_MAX_PARAMS 128

//  Bytes of one producer's DELIVERED batches accepted and not yet answered
//  (their deliveries in progress): a full client window (65536 events) of
//  1 KiB events, so one producer with slow subscribers cannot pin the
//  relay's queues and trackers for everybody.
#define EVR_DEFAULT_MAX_INFLIGHT_BYTES (64 * 1024 * 1024)

//  Subscriptions a relay holds (a local subscribe beyond it is refused):
//  about 50 MiB of table with persistence, and room for the cluster
//  bench's 100,000.
#define EVR_DEFAULT_MAX_SUBSCRIPTIONS 100000

//  Subscriptions of one event: every event is encoded once but queued per
//  subscriber, so this bounds the fan-out work of a single raise.
#define EVR_DEFAULT_MAX_SUBSCRIPTIONS_PER_EVENT 10000

//  Children of a virtual subscriber: the virtual transport keeps their
//  state in a 32-bit mask (EVR_MAX_CHILDREN), the hard ceiling.
#define EVR_DEFAULT_MAX_CHILDREN 32

//  De-duplication window per producer, in sequence numbers; must exceed the
//  client's unacked window so a resend is always recognised.
#define EVR_DEFAULT_DEDUP_WINDOW 262144

//  Events in one publish batch: libevrelay caps its unacked window, and so
//  every batch, at half the de-duplication window; a bigger batch is
//  refused as a whole before any of it is processed.
#define EVR_DEFAULT_MAX_BATCH_EVENTS (EVR_DEFAULT_DEDUP_WINDOW / 2)

//  Producers remembered by the de-duplication table before the least
//  recently seen one is forgotten.
#define EVR_DEFAULT_MAX_PRODUCERS 4096

//  Distinct event names the relay will remember; stops a producer that
//  invents names from growing memory without bound.
#define EVR_DEFAULT_MAX_EVENTS 65536

//  Delivery worker threads: the machines we target have 2 cores, and
//  ingest needs one of them.
#define EVR_DEFAULT_WORKERS 1

//  Events queued per target before new ones are dropped (and counted):
//  absorbs a burst of ~250k events (about 64 MiB of 200-byte payloads)
//  while a live backend catches up; a dead one just fills it and drops.
#define EVR_DEFAULT_TARGET_QUEUE 262144

//  event_virtual's failover_timeout: how long a failed FAILOVER or
//  ROUND-ROBIN child is skipped before it is probed again, seconds.
#define EVR_DEFAULT_FAILOVER_TIMEOUT_S 30

//  event_stream's timeout: how long a reliable-mode request may wait for
//  its JSON-RPC reply, milliseconds.
#define EVR_DEFAULT_TCP_TIMEOUT_MS 1000

//  Connecting transports (tcp, rabbitmq, http) give up a connect after
//  this long, milliseconds; tcp and rabbitmq then retry with back-off, an
//  http request simply fails.
#define EVR_DEFAULT_CONNECT_TIMEOUT_MS 2000

//  Reconnect back-off: first delay and cap, milliseconds.
#define EVR_DEFAULT_RECONNECT_MIN_MS 100
#define EVR_DEFAULT_RECONNECT_MAX_MS 5000

//  An HTTP webhook request (connect to last byte) may take this long, ms.
#define EVR_DEFAULT_HTTP_TIMEOUT_MS 5000

//  AMQP heartbeat, seconds: detects a dead broker connection (OpenSIPS
//  #81: without it a dead broker hangs the sender).
#define EVR_DEFAULT_AMQP_HEARTBEAT_S 10

//  How often expired subscriptions are swept, milliseconds.
#define EVR_DEFAULT_SWEEP_MS 1000

//  Client: events waiting in the caller-side queue before the oldest is
//  dropped; never blocks the raising thread.
#define EVR_DEFAULT_CLIENT_QUEUE 131072

//  Client: events sent but not yet acknowledged.
#define EVR_DEFAULT_CLIENT_WINDOW 65536

//  Client: how long a batch may wait for more events before it is sent, ms.
#define EVR_DEFAULT_LINGER_MS 1

//  Client: resend an unacknowledged batch after this long, ms (doubles up to
//  EVR_DEFAULT_RESEND_MAX_MS).
#define EVR_DEFAULT_RESEND_MS 1000
#define EVR_DEFAULT_RESEND_MAX_MS 8000

//  evrelayctl: how long to wait for a control reply, ms.
#define EVR_DEFAULT_CTL_TIMEOUT_MS 5000

//  HTTP face: how long a request waits for the core thread's answer, ms
//  (the control client's timeout: the same commands, the same core).
#define EVR_DEFAULT_HTTP_CORE_TIMEOUT_MS 5000

//  HTTP face: concurrent connections, enough for a scraper, health probes
//  and a few operators; more are refused by the HTTP server.
#define EVR_DEFAULT_HTTP_CONNECTIONS 64

//  HTTP face: an idle keep-alive connection is closed after this long, s.
#define EVR_DEFAULT_HTTP_IDLE_S 30

//  --- access policy (docs/SECURITY.md) ----------------------------------------

//  The operator name of a caller that did not authenticate: the control
//  socket without CURVE, or the HTTP face without [http_auth] credentials.
#define EVR_POLICY_LOCAL "local"

//  The longest operator name a [policy] or [http_auth] key may have: room
//  for a certificate's name metadata and a 40-character Z85 key.
#define EVR_POLICY_NAME_MAX 128

//  The realm the HTTP face's 401 answers name in WWW-Authenticate.
#define EVR_HTTP_REALM "evrelay"

//  Flatstore defaults from event_flatstore.
#define EVR_DEFAULT_FLAT_DELIMITER ","
#define EVR_DEFAULT_FLAT_MODE 0644

//  Largest datagram we attempt (IPv4 UDP payload limit).
#define EVR_MAX_DATAGRAM 65507

//  --- cluster (docs/CLUSTER.md) ---------------------------------------------

//  Heartbeat period between relays, ms: a peer is suspect after 3 silent
//  periods and dead after 10 (5 s), which is Zyre's "evasive/expired"
//  pair and quick enough for an operator watching `evrelayctl cluster`.
#define EVR_DEFAULT_HEARTBEAT_MS 500
#define EVR_CLUSTER_SUSPECT_BEATS 3
#define EVR_CLUSTER_DEAD_BEATS 10

//  A remote clock more than this far ahead of ours is refused (and
//  counted): NTP keeps real skew in the milliseconds, a clock minutes off
//  is a broken host whose writes would win every conflict.
#define EVR_DEFAULT_MAX_SKEW_MS 5000

//  The longest lease (expire) a replicated subscription may have, s: a
//  tombstone is kept max_lease + max_skew, so this bounds how long an
//  unsubscribe is remembered; a day covers every OpenSIPS-style refresher.
#define EVR_DEFAULT_MAX_LEASE_S 86400

//  Periodic anti-entropy, s: repairs what a lost delta and a missed
//  heartbeat check both left behind; a snapshot a peer costs is cheap at
//  this rate (and only pulled when the digests differ).
#define EVR_DEFAULT_ANTIENTROPY_S 30

//  A joining relay that reaches no peer this long is ready anyway (it may
//  be the first one up), ms: several heartbeat periods plus a TCP connect.
#define EVR_DEFAULT_JOIN_TIMEOUT_MS 3000

//  BATCH fsync period of the log, ms (and before every control reply):
//  remote writes reach the disk within this, at ~10 fsyncs a second.
#define EVR_CLUSTER_FLUSH_MS 100

//  Records per snapshot chunk, and the byte size at which a chunk is cut
//  earlier: one chunk stays a small ZeroMQ message.
#define EVR_CLUSTER_CHUNK_RECORDS 1000
#define EVR_CLUSTER_CHUNK_BYTES (1024 * 1024)

//  A peer is asked for a snapshot at most this often, ms (and only one at a
//  time): a burst of gaps costs one snapshot, not one per delta.
#define EVR_CLUSTER_PULL_INTERVAL_MS 500

//  A snapshot not complete after this long is given up and asked again,
//  ms: 100k records stream in well under a second on a LAN.
#define EVR_CLUSTER_SNAPSHOT_TIMEOUT_MS 10000

//  A heartbeat that shows a peer ahead of us (or a different digest with
//  equal versions) triggers a pull only if that is still so this much
//  later, ms: deltas travel on another connection than heartbeats and
//  usually arrive meanwhile.
#define EVR_CLUSTER_AE_GRACE_MS 2000

//  Peers one relay talks to: heartbeats are full mesh, so clusters are
//  meant to be a handful of relays; 64 leaves ample room.
#define EVR_CLUSTER_MAX_PEERS 64

//  A peer learned from another's member list and dead this long is
//  forgotten, ms (configured peers never are).
#define EVR_CLUSTER_FORGET_MS (10 * 60 * 1000)

//  Largest cluster frame accepted before decoding: a snapshot chunk is cut
//  at EVR_CLUSTER_CHUNK_BYTES, plus one record of at most a control frame.
#define EVR_CLUSTER_MAX_FRAME_BYTES (4 * 1024 * 1024)

#endif
