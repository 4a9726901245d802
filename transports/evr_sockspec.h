/*  evr_sockspec.h - parse and print subscriber socket strings.

    Pure module (no I/O, no DNS). The grammar is OpenSIPS' (see
    docs/OPERATIONS.md section 2): the text before the first ':' names the transport,
    the rest is parsed by that transport's rules.

        udp:HOST:PORT          HOST = IPv4, name, or [IPv6]
        unix:/PATH             a listening SOCK_DGRAM unix socket
        flatstore:/PATH        a file the events are appended to
        tcp:HOST:PORT[/METHOD] JSON-RPC over TCP (OpenSIPS event_stream)
        rabbitmq:[USER[:PASSWORD]@]HOST[:PORT]/[PARAMS?]ROUTING_KEY
                               PARAMS: ';'-separated exchange=NAME,
                               persistent, vhost=NAME (values %-escaped)
        zmq:push:ENDPOINT      a ZeroMQ PUSH socket connected to ENDPOINT
        zmq:pub:ENDPOINT       a ZeroMQ PUB socket connected to ENDPOINT
                               (ENDPOINT: tcp://HOST:PORT or ipc:///PATH)
        http://HOST[:PORT][/PATH]    JSON POST webhook (also https://)
        virtual:POLICY S1 S2 ...     POLICY = PARALLEL, FAILOVER or
                               ROUND-ROBIN; children separated by any run
                               of spaces or tabs; a child cannot be virtual
        evid:SOCKET            any of the above but virtual (also as a
                               virtual child): the subscriber gets the
                               event id as the first param, evrelay_id
                               (docs/OPERATIONS.md); the canonical form
                               and the match key keep the prefix

    Each parsed spec has a canonical string (how listings print it) and a
    match key: two subscriptions refer to the same subscriber exactly when
    their match keys are equal (no OpenSIPS address-prefix bug).
*/
#ifndef EVR_SOCKSPEC_H_INCLUDED
#define EVR_SOCKSPEC_H_INCLUDED

#include <stddef.h>

typedef enum {
    EVR_TRANSPORT_UDP = 1,
    EVR_TRANSPORT_UNIX,
    EVR_TRANSPORT_FLATSTORE,
    EVR_TRANSPORT_TCP,
    EVR_TRANSPORT_RABBITMQ,
    EVR_TRANSPORT_ZMQ,
    EVR_TRANSPORT_HTTP, //  http:// and https://
    EVR_TRANSPORT_VIRTUAL
} evr_transport_t;

typedef enum {
    EVR_POLICY_PARALLEL = 1,
    EVR_POLICY_FAILOVER,
    EVR_POLICY_ROUND_ROBIN
} evr_policy_t;

//  The most children a virtual subscriber may have.
#define EVR_MAX_CHILDREN 32

typedef struct _evr_sockspec_t evr_sockspec_t;

//  Parse a socket string. On success returns a new spec; on failure
//  returns NULL and writes a one-line reason (naming the transport or the
//  faulty part) into err (errlen bytes, always NUL-terminated).
evr_sockspec_t *evr_sockspec_parse(const char *text, char *err, size_t errlen);

//  Destroy a spec and NULL the pointer. Safe on NULL.
void evr_sockspec_destroy(evr_sockspec_t **self_p);

//  The transport.
evr_transport_t evr_sockspec_transport(const evr_sockspec_t *self);

//  The transport's name as written in socket strings ("udp", ...).
const char *evr_sockspec_transport_name(const evr_sockspec_t *self);

//  The canonical printed form, e.g. "udp:[::1]:9000". Parses back to an
//  equal spec.
const char *evr_sockspec_canonical(const evr_sockspec_t *self);

//  The key that decides whether two specs name the same subscriber.
const char *evr_sockspec_match_key(const evr_sockspec_t *self);

//  A deep copy (including a password that the canonical form hides).
evr_sockspec_t *evr_sockspec_dup(const evr_sockspec_t *self);

//  udp, tcp, rabbitmq, http: the host as written, without IPv6 brackets;
//  NULL for others.
const char *evr_sockspec_host(const evr_sockspec_t *self);

//  udp, tcp, rabbitmq, http: the port (rabbitmq default 5672, http 80,
//  https 443); 0 for others.
int evr_sockspec_port(const evr_sockspec_t *self);

//  unix, flatstore: the path; http: the path with query ("/" when none);
//  NULL for others.
const char *evr_sockspec_path(const evr_sockspec_t *self);

//  tcp: the JSON-RPC method, NULL when not given (the event name is used).
const char *evr_sockspec_method(const evr_sockspec_t *self);

//  rabbitmq: user (default "guest"), password (default "guest"), vhost
//  (default "/"), exchange (default ""), routing key; NULL for others.
const char *evr_sockspec_user(const evr_sockspec_t *self);
const char *evr_sockspec_password(const evr_sockspec_t *self);
const char *evr_sockspec_vhost(const evr_sockspec_t *self);
const char *evr_sockspec_exchange(const evr_sockspec_t *self);
const char *evr_sockspec_routing_key(const evr_sockspec_t *self);

//  rabbitmq: the `persistent` flag (delivery_mode 2).
int evr_sockspec_persistent(const evr_sockspec_t *self);

//  zmq: the ZeroMQ endpoint; http: the full URL; NULL for others.
const char *evr_sockspec_endpoint(const evr_sockspec_t *self);

//  zmq: 1 for pub, 0 for push.
int evr_sockspec_zmq_pub(const evr_sockspec_t *self);

//  http: 1 for https.
int evr_sockspec_tls(const evr_sockspec_t *self);

//  evid: 1 when the subscriber asked for the event id in its payloads
//  (the transport is the wrapped socket's), 0 otherwise.
int evr_sockspec_event_id(const evr_sockspec_t *self);

//  virtual: the policy; 0 for others.
evr_policy_t evr_sockspec_policy(const evr_sockspec_t *self);

//  virtual: the number of children; 0 for others.
size_t evr_sockspec_child_count(const evr_sockspec_t *self);

//  virtual: child i (borrowed).
const evr_sockspec_t *evr_sockspec_child(const evr_sockspec_t *self, size_t i);

#endif
