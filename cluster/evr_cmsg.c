/*  evr_cmsg.c - the cluster's messages between relays: decoding, checks,
    records in wire form.
*/
#include "evr_cmsg.h"
#include "evr_defaults.h"
#include "evr_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Decode one ClusterMsg frame and check its version.
Evrelay__ClusterMsg *evr_cmsg_decode(const void *frame, size_t size,
                                     size_t max_bytes, evr_cmsg_rc_t *rc)
{
    *rc = EVR_CMSG_MALFORMED;
    if (size > max_bytes)
        return NULL;
    Evrelay__ClusterMsg *msg = evrelay__cluster_msg__unpack(NULL, size, frame);
    if (!msg)
        return NULL;
    if (msg->version != EVR_PROTOCOL_VERSION) {
        *rc = EVR_CMSG_BAD_VERSION;
        evrelay__cluster_msg__free_unpacked(msg, NULL);
        return NULL;
    }
    *rc = EVR_CMSG_OK;
    return msg;
}

//  Whether a node id is 1..EVR_CMSG_MAX_NODE bytes.
static bool s_node_ok(const char *node)
{
    return node && *node && strlen(node) <= EVR_CMSG_MAX_NODE;
}

//  Check a wire Record and view it as an evr_record_t.
int evr_cmsg_record_from_pb(const Evrelay__Record *pb, evr_record_t *rec,
                            evr_sockspec_t **spec)
{
    char why[256];
    *spec = NULL;
    if (!pb || !pb->event || !pb->socket || !s_node_ok(pb->origin) ||
        !evr_table_valid_name(pb->event))
        return -1;
    bool tombstone = pb->has_tombstone && pb->tombstone;
    if (!tombstone && pb->expire_s == 0)
        return -1;
    *spec = evr_sockspec_parse(pb->socket, why, sizeof why);
    if (!*spec)
        return -1;
    *rec = (evr_record_t){.event = pb->event,
                          .socket = pb->socket,
                          .match_key = evr_sockspec_match_key(*spec),
                          .expire_s = tombstone ? 0 : pb->expire_s,
                          .sub_time_ms = pb->sub_time_ms,
                          .hlc = pb->hlc,
                          .origin = pb->origin,
                          .tombstone = tombstone};
    return 0;
}

//  Fill a wire Record from rec (strings borrowed).
void evr_cmsg_record_to_pb(const evr_record_t *rec, Evrelay__Record *pb)
{
    evrelay__record__init(pb);
    pb->event = (char *)rec->event;
    pb->socket = (char *)rec->socket;
    pb->expire_s = rec->tombstone ? 0 : rec->expire_s;
    pb->sub_time_ms = rec->sub_time_ms;
    pb->hlc = rec->hlc;
    pb->origin = (char *)rec->origin;
    pb->has_tombstone = rec->tombstone;
    pb->tombstone = rec->tombstone;
}

//  Check a Delta and its record.
int evr_cmsg_delta(const Evrelay__Delta *delta, evr_record_t *rec,
                   evr_sockspec_t **spec)
{
    *spec = NULL;
    if (!delta || !s_node_ok(delta->origin) || delta->seq == 0)
        return -1;
    return evr_cmsg_record_from_pb(delta->record, rec, spec);
}

//  Whether a Heartbeat names its node and endpoints.
bool evr_cmsg_heartbeat_ok(const Evrelay__Heartbeat *hb)
{
    return hb && hb->node && *hb->node && hb->cluster_endpoint &&
           hb->pub_endpoint;
}

//  The host part of a tcp:// endpoint into buf ("" when there is none).
static void s_endpoint_host(const char *endpoint, char *buf, size_t size)
{
    buf[0] = 0;
    if (!endpoint || strncmp(endpoint, "tcp://", 6))
        return;
    const char *host = endpoint + 6;
    const char *colon = strrchr(host, ':');
    if (!colon)
        return;
    snprintf(buf, size, "%.*s", (int)(colon - host), host);
}

//  Whether a tcp endpoint's host is a wildcard (not connectable).
bool evr_cmsg_wildcard_host(const char *endpoint)
{
    char host[256];
    s_endpoint_host(endpoint, host, sizeof host);
    return !strcmp(host, "*") || !strcmp(host, "0.0.0.0") ||
           !strcmp(host, "[::]") || !strcmp(host, "::");
}

//  The endpoint to connect the SUB to for a peer's advertised PUB
//  endpoint.
char *evr_cmsg_pub_connect_endpoint(const char *advertised,
                                    const char *peer_endpoint)
{
    if (!evr_cmsg_wildcard_host(advertised))
        return strdup(advertised);
    char host[256];
    s_endpoint_host(peer_endpoint, host, sizeof host);
    const char *port = strrchr(advertised, ':');
    size_t size = strlen("tcp://") + strlen(host) + strlen(port) + 1;
    char *endpoint = malloc(size);
    if (endpoint)
        snprintf(endpoint, size, "tcp://%s%s", host, port);
    return endpoint;
}
