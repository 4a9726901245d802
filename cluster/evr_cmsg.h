/*  evr_cmsg.h - the cluster's messages between relays: decoding, checks,
    records in wire form.

    Pure module (no I/O), used by the cluster shell (evr_cluster) for
    everything a peer sends, and fuzzed (fuzz_cluster):
    - evr_cmsg_decode: one ClusterMsg frame (size bound, protobuf,
      protocol version);
    - evr_cmsg_record_from_pb / _to_pb: a wire Record <-> evr_record_t,
      with the checks a replicated record must pass and its match key from
      the socket parser;
    - evr_cmsg_delta, evr_cmsg_heartbeat_ok: the checks of a Delta and of a
      Heartbeat;
    - evr_cmsg_wildcard_host, evr_cmsg_pub_connect_endpoint: the endpoint
      strings peers advertise.
*/
#ifndef EVR_CMSG_H_INCLUDED
#define EVR_CMSG_H_INCLUDED

#include "evr_repl.h"
#include "evr_sockspec.h"
#include "evrelay.pb-c.h"

#include <stdbool.h>
#include <stddef.h>

//  The longest node id (a record's origin, a delta's origin).
#define EVR_CMSG_MAX_NODE 255

//  What evr_cmsg_decode found.
typedef enum {
    EVR_CMSG_OK = 0,
    EVR_CMSG_MALFORMED,  //  over max_bytes, or not a ClusterMsg
    EVR_CMSG_BAD_VERSION //  another protocol version
} evr_cmsg_rc_t;

//  Decode one ClusterMsg frame of size bytes. Returns the message (free
//  with evrelay__cluster_msg__free_unpacked) and sets *rc to OK; or NULL
//  with the reason in *rc.
Evrelay__ClusterMsg *evr_cmsg_decode(const void *frame, size_t size,
                                     size_t max_bytes, evr_cmsg_rc_t *rc);

//  Check a wire Record and view it as an evr_record_t (strings borrowed
//  from pb): event a valid name, socket a valid socket string, origin
//  1..EVR_CMSG_MAX_NODE bytes, expire_s >= 1 unless a tombstone. The
//  match key comes from parsing the socket: *spec gets the parsed socket,
//  which the caller destroys after use. Returns 0, or -1 (nothing to
//  destroy).
int evr_cmsg_record_from_pb(const Evrelay__Record *pb, evr_record_t *rec,
                            evr_sockspec_t **spec);

//  Fill a wire Record from rec (strings borrowed).
void evr_cmsg_record_to_pb(const evr_record_t *rec, Evrelay__Record *pb);

//  Check a Delta (origin 1..EVR_CMSG_MAX_NODE bytes, seq >= 1) and its
//  record, as evr_cmsg_record_from_pb. Returns 0, or -1.
int evr_cmsg_delta(const Evrelay__Delta *delta, evr_record_t *rec,
                   evr_sockspec_t **spec);

//  Whether a Heartbeat names its node (not empty), its cluster endpoint
//  and its PUB endpoint.
bool evr_cmsg_heartbeat_ok(const Evrelay__Heartbeat *hb);

//  Whether a tcp:// endpoint's host is a wildcard (not connectable).
bool evr_cmsg_wildcard_host(const char *endpoint);

//  The endpoint to connect to for a peer's advertised PUB endpoint: a
//  wildcard host is replaced by the host of peer_endpoint (where we reach
//  the peer's ROUTER). New string, NULL when out of memory.
char *evr_cmsg_pub_connect_endpoint(const char *advertised,
                                    const char *peer_endpoint);

#endif
