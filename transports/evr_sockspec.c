/*  evr_sockspec.c - parse and print subscriber socket strings.

    See evr_sockspec.h. Pure: no I/O and no name resolution. inet_pton and
    inet_ntop are used only as address syntax checkers and normalisers.
*/
#include "evr_sockspec.h"

#include <arpa/inet.h>
#include <assert.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

//  The longest socket string we look at; OpenSIPS never needs more.
#define EVR_SOCKSPEC_MAX 1024

//  Longest DNS name and label (RFC 1035).
#define EVR_DNS_NAME_MAX 253
#define EVR_DNS_LABEL_MAX 63

//  How much of a faulty part we echo back in an error message.
#define S_ECHO "%.64s"

//  unix socket paths must fit sun_path with its terminating NUL.
#define EVR_UNIX_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

struct _evr_sockspec_t {
    evr_transport_t transport; //  which transport
    char *canonical;           //  printed form
    char *match_key;           //  identity of the subscriber
    char *host;                //  udp: host as written, no brackets
    int port;                  //  udp: port
    char *path;                //  unix, flatstore: path
};

//  --------------------------------------------------------------------------
//  Write a formatted one-line reason into err, if the caller gave room.

static void s_error(char *err, size_t errlen, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void s_error(char *err, size_t errlen, const char *format, ...)
{
    if (!err || errlen == 0)
        return;
    va_list args;
    va_start(args, format);
    vsnprintf(err, errlen, format, args);
    va_end(args);
}

//  --------------------------------------------------------------------------
//  ASCII character classes, independent of the process locale.

static bool s_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool s_is_alnum(unsigned char c)
{
    return s_is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool s_is_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static bool s_is_control(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

//  --------------------------------------------------------------------------
//  Return a malloc'd copy of the first len bytes of text, or NULL.

static char *s_strndup(const char *text, size_t len)
{
    char *copy = (char *)malloc(len + 1);
    if (copy) {
        memcpy(copy, text, len);
        copy[len] = '\0';
    }
    return copy;
}

//  --------------------------------------------------------------------------
//  Return a malloc'd printf-formatted string, or NULL.

static char *s_strprintf(const char *format, ...)
    __attribute__((format(printf, 1, 2)));

static char *s_strprintf(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    int size = vsnprintf(NULL, 0, format, args);
    va_end(args);
    if (size < 0)
        return NULL;
    char *text = (char *)malloc((size_t)size + 1);
    if (!text)
        return NULL;
    va_start(args, format);
    vsnprintf(text, (size_t)size + 1, format, args);
    va_end(args);
    return text;
}

//  --------------------------------------------------------------------------
//  Allocate an empty spec of the given transport, or NULL.

static evr_sockspec_t *s_sockspec_new(evr_transport_t transport)
{
    evr_sockspec_t *self = (evr_sockspec_t *)calloc(1, sizeof(*self));
    if (self)
        self->transport = transport;
    return self;
}

//  --------------------------------------------------------------------------
//  Set the canonical form and derive the match key from it. 0 or -1 (OOM).

static int s_set_canonical(evr_sockspec_t *self, char *canonical)
{
    self->canonical = canonical;
    if (!self->canonical)
        return -1;
    //  Exact identity: "127.0.0.1" never matches "127.0.0.10".
    self->match_key = strdup(self->canonical);
    return self->match_key ? 0 : -1;
}

//  --------------------------------------------------------------------------
//  True if text is made only of digits and dots: meant as an IPv4 address.

static bool s_looks_numeric(const char *text)
{
    for (; *text; text++)
        if (!s_is_digit((unsigned char)*text) && *text != '.')
            return false;
    return true;
}

//  --------------------------------------------------------------------------
//  Check DNS host name syntax (RFC 1123 labels). 0 if valid, else -1 and
//  a reason in err.

static int s_check_dns_name(const char *name, char *err, size_t errlen)
{
    size_t length = strlen(name);
    if (length > EVR_DNS_NAME_MAX) {
        s_error(err, errlen, "udp: host name is %zu bytes, longer than %d",
                length, EVR_DNS_NAME_MAX);
        return -1;
    }
    const char *label = name;
    while (true) {
        const char *end = strchr(label, '.');
        size_t label_len = end ? (size_t)(end - label) : strlen(label);
        if (label_len == 0) {
            s_error(err, errlen, "udp: empty label in host name '" S_ECHO "'",
                    name);
            return -1;
        }
        if (label_len > EVR_DNS_LABEL_MAX) {
            s_error(err, errlen,
                    "udp: label longer than %d characters in host name "
                    "'" S_ECHO "'",
                    EVR_DNS_LABEL_MAX, name);
            return -1;
        }
        for (size_t i = 0; i < label_len; i++) {
            unsigned char c = (unsigned char)label[i];
            if (!s_is_alnum(c) && c != '-') {
                if (c < 0x80)
                    s_error(err, errlen,
                            "udp: invalid character '%c' in host name "
                            "'" S_ECHO "'",
                            c, name);
                else
                    s_error(err, errlen,
                            "udp: non-ASCII byte 0x%02x in host name (use "
                            "the punycode form)",
                            c);
                return -1;
            }
        }
        if (label[0] == '-' || label[label_len - 1] == '-') {
            s_error(err, errlen,
                    "udp: a label of host name '" S_ECHO
                    "' starts or ends with '-'",
                    name);
            return -1;
        }
        if (!end)
            return 0;
        label = end + 1;
    }
}

//  --------------------------------------------------------------------------
//  Parse a decimal UDP port 1..65535. Returns the port, or -1 and a reason.

static int s_parse_port(const char *text, char *err, size_t errlen)
{
    if (*text == '\0') {
        s_error(err, errlen, "udp: missing port (expected udp:HOST:PORT)");
        return -1;
    }
    long value = 0;
    for (const char *p = text; *p; p++) {
        if (!s_is_digit((unsigned char)*p)) {
            s_error(err, errlen, "udp: port '" S_ECHO "' is not a number",
                    text);
            return -1;
        }
        if (value <= 65535)
            value = value * 10 + (*p - '0');
    }
    if (value < 1 || value > 65535) {
        s_error(err, errlen, "udp: port '" S_ECHO "' out of range 1-65535",
                text);
        return -1;
    }
    return (int)value;
}

//  --------------------------------------------------------------------------
//  Parse the part after "udp:" into self. 0 or -1 with a reason.

static int s_parse_udp(evr_sockspec_t *self, const char *rest, char *err,
                       size_t errlen)
{
    const char *host;
    size_t host_len;
    const char *port_text;
    bool bracketed = (rest[0] == '[');

    if (bracketed) {
        const char *close = strchr(rest, ']');
        if (!close) {
            s_error(err, errlen,
                    "udp: missing ']' after IPv6 address (expected "
                    "udp:[ADDR]:PORT)");
            return -1;
        }
        host = rest + 1;
        host_len = (size_t)(close - host);
        if (close[1] == '\0') {
            s_error(err, errlen,
                    "udp: missing port after ']' (expected "
                    "udp:[ADDR]:PORT)");
            return -1;
        }
        if (close[1] != ':') {
            s_error(err, errlen,
                    "udp: expected ':PORT' after ']', got '" S_ECHO "'",
                    close + 1);
            return -1;
        }
        port_text = close + 2;
    } else {
        const char *colon = strrchr(rest, ':');
        if (!colon) {
            s_error(err, errlen,
                    "udp: missing port in '" S_ECHO
                    "' (expected udp:HOST:PORT)",
                    rest);
            return -1;
        }
        host = rest;
        host_len = (size_t)(colon - rest);
        port_text = colon + 1;
    }
    if (host_len == 0) {
        s_error(err, errlen, "udp: missing host (expected udp:HOST:PORT)");
        return -1;
    }
    self->host = s_strndup(host, host_len);
    if (!self->host) {
        s_error(err, errlen, "udp: out of memory");
        return -1;
    }
    if (!bracketed && strchr(self->host, ':')) {
        s_error(err, errlen,
                "udp: IPv6 address in '" S_ECHO "' must be in brackets: "
                "udp:[ADDR]:PORT",
                rest);
        return -1;
    }
    char printed[INET6_ADDRSTRLEN + 2];
    if (bracketed) {
        struct in6_addr addr6;
        char text6[INET6_ADDRSTRLEN];
        if (inet_pton(AF_INET6, self->host, &addr6) != 1) {
            s_error(err, errlen, "udp: invalid IPv6 address '" S_ECHO "'",
                    self->host);
            return -1;
        }
        inet_ntop(AF_INET6, &addr6, text6, sizeof(text6));
        snprintf(printed, sizeof(printed), "[%s]", text6);
    } else if (s_looks_numeric(self->host)) {
        struct in_addr addr4;
        if (inet_pton(AF_INET, self->host, &addr4) != 1) {
            s_error(err, errlen, "udp: invalid IPv4 address '" S_ECHO "'",
                    self->host);
            return -1;
        }
        inet_ntop(AF_INET, &addr4, printed, sizeof(printed));
    } else if (s_check_dns_name(self->host, err, errlen) < 0)
        return -1;

    int port = s_parse_port(port_text, err, errlen);
    if (port < 0)
        return -1;
    self->port = port;

    char *canonical;
    if (bracketed || s_looks_numeric(self->host))
        canonical = s_strprintf("udp:%s:%d", printed, port);
    else {
        canonical = s_strprintf("udp:%s:%d", self->host, port);
        //  DNS names are case-insensitive: one subscriber, one key.
        for (char *p = canonical; p && *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
    }
    if (s_set_canonical(self, canonical) < 0) {
        s_error(err, errlen, "udp: out of memory");
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Check an absolute path for a path-based transport. 0 or -1 and reason.

static int s_check_path(const char *name, const char *path, char *err,
                        size_t errlen)
{
    if (*path == '\0') {
        s_error(err, errlen, "%s: missing path (expected %s:/PATH)", name,
                name);
        return -1;
    }
    if (*path != '/') {
        s_error(err, errlen,
                "%s: path '" S_ECHO "' must be absolute (start with '/')", name,
                path);
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Parse the part after "unix:" into self. 0 or -1 with a reason.

static int s_parse_unix(evr_sockspec_t *self, const char *rest, char *err,
                        size_t errlen)
{
    if (s_check_path("unix", rest, err, errlen) < 0)
        return -1;
    size_t length = strlen(rest);
    if (length > EVR_UNIX_PATH_MAX) {
        s_error(err, errlen,
                "unix: path is %zu bytes, longer than the %zu-byte limit of "
                "a unix socket",
                length, (size_t)EVR_UNIX_PATH_MAX);
        return -1;
    }
    self->path = strdup(rest);
    if (!self->path ||
        s_set_canonical(self, s_strprintf("unix:%s", rest)) < 0) {
        s_error(err, errlen, "unix: out of memory");
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Parse the part after "flatstore:" into self. 0 or -1 with a reason.

static int s_parse_flatstore(evr_sockspec_t *self, const char *rest, char *err,
                             size_t errlen)
{
    if (s_check_path("flatstore", rest, err, errlen) < 0)
        return -1;
    size_t length = strlen(rest);
    if (length >= PATH_MAX) {
        s_error(err, errlen, "flatstore: path is %zu bytes, longer than %d",
                length, PATH_MAX - 1);
        return -1;
    }
    if (rest[length - 1] == '/') {
        s_error(err, errlen,
                "flatstore: path '" S_ECHO "' names a directory (must not end "
                "in '/')",
                rest);
        return -1;
    }
    self->path = strdup(rest);
    if (!self->path ||
        s_set_canonical(self, s_strprintf("flatstore:%s", rest)) < 0) {
        s_error(err, errlen, "flatstore: out of memory");
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Parse a socket string. On success returns a new spec; on failure
//  returns NULL and writes a one-line reason into err.

evr_sockspec_t *evr_sockspec_parse(const char *text, char *err, size_t errlen)
{
    if (err && errlen > 0)
        err[0] = '\0';
    if (!text) {
        s_error(err, errlen, "no socket string given");
        return NULL;
    }
    size_t length = strnlen(text, EVR_SOCKSPEC_MAX + 1);
    if (length == 0) {
        s_error(err, errlen, "empty socket string");
        return NULL;
    }
    if (length > EVR_SOCKSPEC_MAX) {
        s_error(err, errlen, "socket string longer than %d bytes",
                EVR_SOCKSPEC_MAX);
        return NULL;
    }
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (s_is_space(c)) {
            s_error(err, errlen,
                    "socket string contains whitespace at offset %zu", i);
            return NULL;
        }
        if (s_is_control(c)) {
            s_error(err, errlen,
                    "socket string contains a control character at offset "
                    "%zu",
                    i);
            return NULL;
        }
    }
    const char *colon = strchr(text, ':');
    if (!colon || colon == text) {
        s_error(err, errlen,
                "missing transport prefix (expected e.g. udp:HOST:PORT, "
                "unix:/PATH, flatstore:/PATH)");
        return NULL;
    }
    size_t name_len = (size_t)(colon - text);
    const char *rest = colon + 1;

    evr_sockspec_t *self = NULL;
    int rc = -1;
    if (name_len == 3 && memcmp(text, "udp", 3) == 0) {
        self = s_sockspec_new(EVR_TRANSPORT_UDP);
        if (self)
            rc = s_parse_udp(self, rest, err, errlen);
    } else if (name_len == 4 && memcmp(text, "unix", 4) == 0) {
        self = s_sockspec_new(EVR_TRANSPORT_UNIX);
        if (self)
            rc = s_parse_unix(self, rest, err, errlen);
    } else if (name_len == 9 && memcmp(text, "flatstore", 9) == 0) {
        self = s_sockspec_new(EVR_TRANSPORT_FLATSTORE);
        if (self)
            rc = s_parse_flatstore(self, rest, err, errlen);
    } else {
        s_error(err, errlen,
                "unknown transport '%.*s' (known: udp, unix, flatstore)",
                name_len > 32 ? 32 : (int)name_len, text);
        return NULL;
    }
    if (!self) {
        s_error(err, errlen, "out of memory");
        return NULL;
    }
    if (rc < 0)
        evr_sockspec_destroy(&self);
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy a spec and NULL the pointer. Safe on NULL.

void evr_sockspec_destroy(evr_sockspec_t **self_p)
{
    assert(self_p);
    if (*self_p) {
        evr_sockspec_t *self = *self_p;
        free(self->canonical);
        free(self->match_key);
        free(self->host);
        free(self->path);
        free(self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  The transport.

evr_transport_t evr_sockspec_transport(const evr_sockspec_t *self)
{
    assert(self);
    return self->transport;
}

//  --------------------------------------------------------------------------
//  The transport's name as written in socket strings.

const char *evr_sockspec_transport_name(const evr_sockspec_t *self)
{
    assert(self);
    switch (self->transport) {
        case EVR_TRANSPORT_UDP:
            return "udp";
        case EVR_TRANSPORT_UNIX:
            return "unix";
        case EVR_TRANSPORT_FLATSTORE:
            return "flatstore";
    }
    return "?";
}

//  --------------------------------------------------------------------------
//  The canonical printed form.

const char *evr_sockspec_canonical(const evr_sockspec_t *self)
{
    assert(self);
    return self->canonical;
}

//  --------------------------------------------------------------------------
//  The key that decides whether two specs name the same subscriber.

const char *evr_sockspec_match_key(const evr_sockspec_t *self)
{
    assert(self);
    return self->match_key;
}

//  --------------------------------------------------------------------------
//  udp: the host as written, without IPv6 brackets; NULL for others.

const char *evr_sockspec_host(const evr_sockspec_t *self)
{
    assert(self);
    return self->host;
}

//  --------------------------------------------------------------------------
//  udp: the port; 0 for others.

int evr_sockspec_port(const evr_sockspec_t *self)
{
    assert(self);
    return self->port;
}

//  --------------------------------------------------------------------------
//  unix, flatstore: the path; NULL for others.

const char *evr_sockspec_path(const evr_sockspec_t *self)
{
    assert(self);
    return self->path;
}
