/*  fuzz_cluster.c - libFuzzer target for the messages between relays.

    The input is one ClusterMsg frame, as a relay's ROUTER, SUB or DEALER
    receives it from a peer. It goes through evr_cmsg_decode, then what
    evr_cluster does with each body, on the pure modules only (a fixed
    wall clock, a fresh map per input):
    - Delta: evr_cmsg_delta; an accepted record must survive a round trip
      through its wire form (same fields, same match key), then goes
      through the clock (evr_hlc_update) and the map (evr_repl_merge) and
      the version vector (evr_repl_seq_check);
    - Heartbeat: evr_cmsg_heartbeat_ok, the PUB endpoint to connect to
      (a non-wildcard endpoint is kept as it is), its members, and its
      version vector raised into the map's;
    - SnapshotChunk: every record as a Delta's, then the vector.
    After the merges the map must be consistent: every merged record is
    found under its key at a version at least its own, foreach visits
    size() records, and gc far in the future empties it. abort() when a
    check fails.
*/
#include "evr_cmsg.h"
#include "evr_defaults.h"
#include "evr_hlc.h"
#include "evr_repl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The wall clock of the relay receiving the input (2023-11-14, ms).
#define S_NOW_MS 1700000000000LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

//  Abort with a message.
static void s_fail(const char *what)
{
    fprintf(stderr, "fuzz_cluster: %s\n", what);
    abort();
}

//  True if a and b are equal strings.
static bool s_same(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

//  A record must come back unchanged from its wire form.
static void s_round_trip(const evr_record_t *rec)
{
    Evrelay__Record pb;
    evr_cmsg_record_to_pb(rec, &pb);
    size_t len = evrelay__record__get_packed_size(&pb);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return;
    evrelay__record__pack(&pb, buf);
    Evrelay__Record *again = evrelay__record__unpack(NULL, len, buf);
    evr_record_t back;
    evr_sockspec_t *spec = NULL;
    if (!again || evr_cmsg_record_from_pb(again, &back, &spec))
        s_fail("a record does not survive its wire form");
    if (!s_same(back.event, rec->event) || !s_same(back.socket, rec->socket) ||
        !s_same(back.match_key, rec->match_key) ||
        !s_same(back.origin, rec->origin) || back.expire_s != rec->expire_s ||
        back.sub_time_ms != rec->sub_time_ms || back.hlc != rec->hlc ||
        back.tombstone != rec->tombstone)
        s_fail("a record changes through its wire form");
    evr_sockspec_destroy(&spec);
    evrelay__record__free_unpacked(again, NULL);
    free(buf);
}

//  A record from a peer: checked, round-tripped, merged as the cluster
//  does.
static void s_record(evr_hlc_t *hlc, evr_repl_t *repl, const evr_record_t *rec)
{
    if (rec->tombstone ? rec->expire_s != 0 : rec->expire_s == 0)
        s_fail("accepted record with a bad expire");
    s_round_trip(rec);
    if (evr_hlc_update(hlc, rec->hlc, S_NOW_MS))
        return; //  too far ahead: refused (counted)
    evr_repl_result_t rc = evr_repl_merge(repl, rec);
    const evr_record_t *found = evr_repl_find(repl, rec->event, rec->match_key);
    if (rc == EVR_REPL_APPLIED && (!found || found->hlc != rec->hlc ||
                                   !s_same(found->origin, rec->origin)))
        s_fail("merged record not found");
    if (rc == EVR_REPL_STALE && (!found || found->hlc < rec->hlc))
        s_fail("stale record newer than the one found");
}

//  A version vector entry from a peer.
static void s_seq(evr_repl_t *repl, const Evrelay__OriginSeq *e)
{
    if (!e || !e->origin || !*e->origin)
        return;
    evr_repl_seq_raise(repl, e->origin, e->instance, e->seq);
    if (evr_repl_seq_get(repl, e->origin, e->instance) < e->seq)
        s_fail("version vector not raised");
}

//  A Heartbeat: checks, PUB endpoint, members, vector.
static void s_heartbeat(evr_repl_t *repl, const Evrelay__Heartbeat *hb)
{
    if (!evr_cmsg_heartbeat_ok(hb))
        return;
    char *pub =
        evr_cmsg_pub_connect_endpoint(hb->pub_endpoint, hb->cluster_endpoint);
    if (pub && !evr_cmsg_wildcard_host(hb->pub_endpoint) &&
        strcmp(pub, hb->pub_endpoint))
        s_fail("a connectable PUB endpoint was changed");
    free(pub);
    for (size_t i = 0; i < hb->n_members; i++)
        evr_cmsg_wildcard_host(hb->members[i]);
    for (size_t i = 0; i < hb->n_seqs; i++)
        s_seq(repl, hb->seqs[i]);
}

//  Count foreach's records.
static void s_count(const evr_record_t *rec, void *arg)
{
    if (!rec->event || !rec->match_key || !rec->origin)
        s_fail("foreach: incomplete record");
    (*(size_t *)arg)++;
}

//  One fuzz input.
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    evr_cmsg_rc_t rc;
    Evrelay__ClusterMsg *msg =
        evr_cmsg_decode(data, size, EVR_CLUSTER_MAX_FRAME_BYTES, &rc);
    if ((msg != NULL) != (rc == EVR_CMSG_OK))
        s_fail("decode result and reason disagree");
    if (!msg)
        return 0;
    evr_hlc_t *hlc = evr_hlc_new(EVR_DEFAULT_MAX_SKEW_MS);
    evr_repl_t *repl =
        evr_repl_new(EVR_DEFAULT_MAX_LEASE_S * 1000LL, EVR_DEFAULT_MAX_SKEW_MS);
    if (!hlc || !repl)
        abort();
    evr_record_t rec;
    evr_sockspec_t *spec = NULL;
    switch (msg->body_case) {
        case EVRELAY__CLUSTER_MSG__BODY_DELTA:
            if (evr_cmsg_delta(msg->delta, &rec, &spec) == 0) {
                s_record(hlc, repl, &rec);
                evr_repl_seq_check(repl, msg->delta->origin,
                                   msg->delta->instance, msg->delta->seq);
            } else if (spec)
                s_fail("refused delta left a socket");
            evr_sockspec_destroy(&spec);
            break;
        case EVRELAY__CLUSTER_MSG__BODY_HEARTBEAT:
            s_heartbeat(repl, msg->heartbeat);
            break;
        case EVRELAY__CLUSTER_MSG__BODY_SNAPSHOT_CHUNK:
            for (size_t i = 0; i < msg->snapshot_chunk->n_records; i++) {
                if (evr_cmsg_record_from_pb(msg->snapshot_chunk->records[i],
                                            &rec, &spec) == 0)
                    s_record(hlc, repl, &rec);
                else if (spec)
                    s_fail("refused record left a socket");
                evr_sockspec_destroy(&spec);
            }
            for (size_t i = 0;
                 msg->snapshot_chunk->last && i < msg->snapshot_chunk->n_seqs;
                 i++)
                s_seq(repl, msg->snapshot_chunk->seqs[i]);
            break;
        default:
            break;
    }
    size_t n = 0;
    evr_repl_foreach(repl, s_count, &n);
    if (n != evr_repl_size(repl))
        s_fail("foreach and size disagree");
    evr_repl_digest(repl);
    evr_repl_gc(repl, INT64_MAX / 2, NULL, NULL);
    if (evr_repl_size(repl) != 0)
        s_fail("gc far in the future kept records");
    evr_repl_destroy(&repl);
    evr_hlc_destroy(&hlc);
    evrelay__cluster_msg__free_unpacked(msg, NULL);
    return 0;
}
