/*  evr_auth.h - CURVE on the relay's ZeroMQ sockets.

    With a relay certificate configured ([security] cert), every server
    socket (ingest, control, the cluster links) is a CURVE server whose
    ZAP domain names its own key list: the public certificates in the
    producers, operators and peers directories ([security]). A thread
    answers ZAP (the decision is evr_zap.c's), reloads a directory when it
    changes, and counts handshakes through socket monitors: allowed,
    denied (a key that is not listed) and failed (a plain client, or one
    that used the wrong server key).

    Revocation: deleting a certificate refuses new connections with that
    key at once; messages on connections opened before are refused by
    evr_auth_permits (the core asks it for every message) and counted.

    The relay is a CURVE client too: towards cluster peers and zmq
    subscribers it presents its own certificate and needs the server's
    public key, found in the peers directory (cluster) or the backends
    directory (zmq) by the certificate's "endpoint" metadata.

    Every function accepts a NULL evr_auth_t (no certificate: plain
    sockets) and then does nothing, or allows.
*/
#ifndef EVR_AUTH_H_INCLUDED
#define EVR_AUTH_H_INCLUDED

#include "evr_config.h"
#include <stdbool.h>
#include <stdint.h>
#include <zmq.h>

typedef enum {
    EVR_AUTH_INGEST = 0,
    EVR_AUTH_CONTROL,
    EVR_AUTH_CLUSTER,
    EVR_AUTH_DOMAINS
} evr_auth_domain_t;

typedef struct {
    uint64_t allowed;          //  handshakes the ZAP handler allowed
    uint64_t denied;           //  handshakes refused: key not listed
    uint64_t handshake_failed; //  plain clients, wrong server key, ...
    uint64_t revoked;          //  messages refused: key revoked since
    size_t keys;               //  keys the domain allows now
} evr_auth_counts_t;

typedef struct _evr_auth_t evr_auth_t;

//  Load the relay's certificate and the key directories, and start the
//  ZAP handler on ctx. Returns NULL with *err empty when cfg has no
//  certificate (CURVE off), or NULL with a reason in err.
evr_auth_t *evr_auth_new(void *ctx, const evr_config_t *cfg, char *err,
                         size_t errlen);

//  Stop the handler, free, NULL the pointer.
void evr_auth_destroy(evr_auth_t **self_p);

//  Before bind: make sock a CURVE server of domain d and watch its
//  handshakes. Returns 0, or -1 with a reason.
int evr_auth_server(evr_auth_t *self, void *sock, evr_auth_domain_t d,
                    char *err, size_t errlen);

//  Before connect: make sock a CURVE client towards the server whose
//  public key (Z85) is server_key. Returns 0 or -1.
int evr_auth_client(evr_auth_t *self, void *sock, const char *server_key);

//  The public key (Z85, into key[41]) of the certificate whose "endpoint"
//  metadata is endpoint, from the peers directory (cluster = true) or the
//  backends directory. Returns 0, or -1 when there is none.
int evr_auth_endpoint_key(evr_auth_t *self, bool cluster, const char *endpoint,
                          char *key);

//  Whether the client that sent msg on a domain-d socket is still
//  allowed (its certificate was not deleted since its handshake).
//  Counts a refusal.
bool evr_auth_permits(evr_auth_t *self, evr_auth_domain_t d, zmq_msg_t *msg);

//  How many times a reload of domain d's key directory found a key gone
//  (any thread; 0 for NULL): a change tells the owner of long-lived links
//  (the cluster) to drop those of revoked keys.
uint64_t evr_auth_removals(evr_auth_t *self, evr_auth_domain_t d);

//  The counters of domain d.
void evr_auth_counts(evr_auth_t *self, evr_auth_domain_t d,
                     evr_auth_counts_t *out);

//  The name of domain d ("ingest", "control", "cluster").
const char *evr_auth_domain_name(evr_auth_domain_t d);

//  Whether a ZeroMQ endpoint stays on this host (ipc://, inproc://, or
//  tcp:// on a loopback address or localhost).
bool evr_auth_endpoint_is_local(const char *endpoint);

#endif
