/*  evr_sockspec.h - parse and print subscriber socket strings.

    Pure module (no I/O, no DNS). The grammar is OpenSIPS' (see
    docs/SOCKETS.md): the text before the first ':' names the transport,
    the rest is parsed by that transport's rules.

        udp:HOST:PORT          HOST = IPv4, name, or [IPv6]
        unix:/PATH             a listening SOCK_DGRAM unix socket
        flatstore:/PATH        a file the events are appended to

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
    EVR_TRANSPORT_FLATSTORE
} evr_transport_t;

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

//  udp: the host as written, without IPv6 brackets; NULL for others.
const char *evr_sockspec_host(const evr_sockspec_t *self);

//  udp: the port; 0 for others.
int evr_sockspec_port(const evr_sockspec_t *self);

//  unix, flatstore: the path; NULL for others.
const char *evr_sockspec_path(const evr_sockspec_t *self);

#endif
