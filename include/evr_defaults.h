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

//  De-duplication window per producer, in sequence numbers; must exceed the
//  client's unacked window so a resend is always recognised.
#define EVR_DEFAULT_DEDUP_WINDOW 262144

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

//  Flatstore defaults from event_flatstore.
#define EVR_DEFAULT_FLAT_DELIMITER ","
#define EVR_DEFAULT_FLAT_MODE 0644

//  Largest datagram we attempt (IPv4 UDP payload limit).
#define EVR_MAX_DATAGRAM 65507

#endif
