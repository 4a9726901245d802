/*  evr_http.h - the relay's HTTP face: MI, metrics, health.

    Serves, through libmicrohttpd in its own internal polling thread:
      POST /mi       OpenSIPS mi_http-compatible JSON-RPC 2.0 MI calls
      GET  /metrics  Prometheus text format (evr_metrics)
      GET  /health   {"status":"ok","live":true,"ready":true}
    The HTTP thread never touches the relay's state. Every request becomes
    a ControlRequest sent over one DEALER socket (used by the HTTP thread
    only) to a ROUTER the core thread binds and answers with
    evr_control_frame, exactly like the control socket: one implementation
    of every command, two faces. The HTTP thread turns the ControlReply
    into the JSON-RPC answer, the metrics text or the health answer.

    Authentication: with [http_auth] credentials configured, POST /mi and
    GET /metrics need a valid bearer token or basic credentials (401 with
    WWW-Authenticate otherwise, counted); the credentials' operator name
    travels to the core as a frame before the request, and the core's
    access policy decides (GET /metrics needs the `list` action). Without
    credentials the caller is the operator EVR_POLICY_LOCAL. GET /health
    stays open: it says live and ready, nothing else. Bound beyond loopback
    without credentials, the face refuses to start unless insecure is set.

    TLS: with a certificate and its key (PEM files), the face serves HTTPS
    only (libmicrohttpd over GnuTLS), so credentials and call data never
    cross the network in clear.
*/
#ifndef EVR_HTTP_H_INCLUDED
#define EVR_HTTP_H_INCLUDED

#include "evr_policy.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  The inproc endpoint of the core's ROUTER for the HTTP face.
#define EVR_HTTP_CORE_ENDPOINT "inproc://evr-http"

typedef struct _evr_http_t evr_http_t;

//  What the face serves and how.
typedef struct {
    const char *listen; //  "ADDR:PORT" or "[ADDR6]:PORT", ADDR may be a name
    size_t max_body;    //  request bodies over it are refused (413)
    //  credentials (read-only, must outlive the face)
    const evr_policy_rules_t *policy;
    bool insecure; //  serve beyond loopback without credentials
    //  PEM files: the certificate (chain) and its unencrypted key; both
    //  NULL = plain HTTP
    const char *tls_cert, *tls_key;
} evr_http_opts_t;

//  Bind opts->listen and start serving. Requests go to the core over a
//  DEALER connected to core_endpoint in zmq_ctx. An address beyond
//  loopback without credentials is refused unless insecure. NULL with a
//  reason in err on failure.
evr_http_t *evr_http_new(const evr_http_opts_t *opts, void *zmq_ctx,
                         const char *core_endpoint, char *err, size_t errlen);

//  With TLS, read the certificate and key files again and serve new
//  connections with them (SIGHUP: a renewed certificate needs no
//  restart); connections in progress are closed. A pair that cannot be
//  read or does not go together leaves the old one in use. Returns 0 (also
//  without TLS), or -1 with a reason.
int evr_http_reload(evr_http_t *self, char *err, size_t errlen);

//  How many requests were answered 401 (any thread; 0 for NULL).
uint64_t evr_http_unauthorized(const evr_http_t *self);

//  Stop serving (waits for the HTTP thread), close, free, NULL the
//  pointer. Call before the ZeroMQ context is terminated.
void evr_http_destroy(evr_http_t **self_p);

//  How many request bodies over max_body were refused (413) so far; any
//  thread.
uint64_t evr_http_too_large(const evr_http_t *self);

#endif
