/*  evr_sockspec.c - parse and print subscriber socket strings.

    See evr_sockspec.h. Pure: no I/O and no name resolution. inet_pton and
    inet_ntop are used only as address syntax checkers and normalisers.

    Every transport parser fills the spec's fields and its canonical form;
    the canonical form is built so that it parses back to the same
    canonical form and match key (the rabbitmq password excepted: it is
    never printed, so a re-parse gets the default one).
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

//  The longest virtual socket string (it holds up to 32 children).
#define EVR_SOCKSPEC_VIRTUAL_MAX 4096

//  Longest DNS name and label (RFC 1035).
#define EVR_DNS_NAME_MAX 253
#define EVR_DNS_LABEL_MAX 63

//  Room for a host in canonical form: a DNS name or a bracketed IPv6.
#define EVR_HOST_PRINTED_MAX (EVR_DNS_NAME_MAX + 3)

//  AMQP short strings (exchange, routing key, vhost) hold 255 bytes.
#define EVR_AMQP_SHORTSTR_MAX 255

//  rabbitmq defaults (OpenSIPS event_rabbitmq, plus our vhost).
#define EVR_RABBITMQ_PORT 5672
#define EVR_RABBITMQ_USER "guest"
#define EVR_RABBITMQ_PASSWORD "guest"
#define EVR_RABBITMQ_VHOST "/"

//  How much of a faulty part we echo back in an error message.
#define S_ECHO "%.64s"

//  unix socket paths must fit sun_path with its terminating NUL.
#define EVR_UNIX_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

//  Expected forms, quoted in error messages.
#define S_FORM_UDP "udp:HOST:PORT"
#define S_FORM_TCP "tcp:HOST:PORT[/METHOD]"
#define S_FORM_RABBITMQ                                                        \
    "rabbitmq:[USER[:PASSWORD]@]HOST[:PORT]/[PARAMS?]ROUTING_KEY"
#define S_FORM_ZMQ "zmq:push|pub:tcp://HOST:PORT or ipc:///PATH"
#define S_FORM_HTTP "http[s]://HOST[:PORT][/PATH]"
#define S_FORM_VIRTUAL "virtual:POLICY SOCKET [SOCKET ...]"

//  The transports, as listed in "unknown transport" errors.
#define S_KNOWN_TRANSPORTS                                                     \
    "udp, unix, flatstore, tcp, rabbitmq, zmq, http, https, virtual"

struct _evr_sockspec_t {
    evr_transport_t transport; //  which transport
    char *canonical;           //  printed form
    char *match_key;           //  identity of the subscriber
    char *host;                //  udp, tcp, rabbitmq, http: as written
    int port;                  //  udp, tcp, rabbitmq, http
    char *path;                //  unix, flatstore; http: path and query
    char *method;              //  tcp: JSON-RPC method, or NULL
    char *user;                //  rabbitmq: user name
    char *password;            //  rabbitmq: password (never printed)
    char *vhost;               //  rabbitmq: virtual host
    char *exchange;            //  rabbitmq: exchange ("" = default)
    char *routing_key;         //  rabbitmq: routing key
    bool persistent;           //  rabbitmq: delivery_mode 2
    char *endpoint;            //  zmq: endpoint; http: the URL
    bool zmq_pub;              //  zmq: PUB rather than PUSH
    bool tls;                  //  http: https
    evr_policy_t policy;       //  virtual: policy
    size_t child_count;        //  virtual: number of children
    evr_sockspec_t **children; //  virtual: the children
    bool event_id;             //  evid: deliver the event id in the payload
};

//  A growing string, for building canonical forms and match keys.
typedef struct {
    char *data;      //  NUL-terminated text, or NULL before the first add
    size_t size;     //  bytes used, without the NUL
    size_t capacity; //  bytes allocated
    bool failed;     //  an allocation failed; the text is lost
} s_text_t;

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

//  True for 0-9.
static bool s_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

//  True for A-Z and a-z.
static bool s_is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

//  True for letters and digits.
static bool s_is_alnum(unsigned char c)
{
    return s_is_digit(c) || s_is_alpha(c);
}

//  True for space, \t, \n, \v, \f and \r.
static bool s_is_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

//  True for the separators of virtual children: space and tab.
static bool s_is_blank(unsigned char c)
{
    return c == ' ' || c == '\t';
}

//  True for C0 control bytes and DEL.
static bool s_is_control(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

//  --------------------------------------------------------------------------
//  Value of a hex digit, or -1.

static int s_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

//  --------------------------------------------------------------------------
//  Lowercase ASCII letters in place.

static void s_lowercase(char *text)
{
    for (; text && *text; text++)
        if (*text >= 'A' && *text <= 'Z')
            *text = (char)(*text - 'A' + 'a');
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
//  Copy an optional string: 0 when done (NULL copies to NULL), -1 on OOM.

static int s_copy_field(char **dest_p, const char *source)
{
    *dest_p = NULL;
    if (!source)
        return 0;
    *dest_p = strdup(source);
    return *dest_p ? 0 : -1;
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
//  Append len bytes to a growing string; on OOM mark it failed.

static void s_text_add(s_text_t *text, const char *data, size_t len)
{
    if (text->failed)
        return;
    if (text->size + len + 1 > text->capacity) {
        size_t capacity = text->capacity ? text->capacity : 64;
        while (capacity < text->size + len + 1)
            capacity *= 2;
        char *grown = (char *)realloc(text->data, capacity);
        if (!grown) {
            free(text->data);
            text->data = NULL;
            text->failed = true;
            return;
        }
        text->data = grown;
        text->capacity = capacity;
    }
    memcpy(text->data + text->size, data, len);
    text->size += len;
    text->data[text->size] = '\0';
}

//  --------------------------------------------------------------------------
//  Append a NUL-terminated string to a growing string.

static void s_text_adds(s_text_t *text, const char *data)
{
    s_text_add(text, data, strlen(data));
}

//  --------------------------------------------------------------------------
//  Append a string, %XX-escaping the bytes that are special in a rabbitmq
//  socket string ("%;?@/:"), spaces, control and non-ASCII bytes.

static void s_text_add_escaped(s_text_t *text, const char *data)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const char *p = data; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c >= 0x7f || strchr("%;?@/:", c)) {
            char escaped[3] = {'%', hex[c >> 4], hex[c & 15]};
            s_text_add(text, escaped, 3);
        } else
            s_text_add(text, p, 1);
    }
}

//  --------------------------------------------------------------------------
//  Return the built string (caller owns it), or NULL if an add failed.

static char *s_text_take(s_text_t *text)
{
    if (text->failed)
        return NULL;
    if (!text->data)
        return strdup("");
    char *data = text->data;
    text->data = NULL;
    return data;
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
//  Set the canonical form and use it as the match key too. 0 or -1 (OOM).

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
//  Check DNS host name syntax (RFC 1123 labels) for transport `name`. 0 if
//  valid, else -1 and a reason in err.

static int s_check_dns_name(const char *name, const char *host, char *err,
                            size_t errlen)
{
    size_t length = strlen(host);
    if (length > EVR_DNS_NAME_MAX) {
        s_error(err, errlen, "%s: host name is %zu bytes, longer than %d", name,
                length, EVR_DNS_NAME_MAX);
        return -1;
    }
    const char *label = host;
    while (true) {
        const char *end = strchr(label, '.');
        size_t label_len = end ? (size_t)(end - label) : strlen(label);
        if (label_len == 0) {
            s_error(err, errlen, "%s: empty label in host name '" S_ECHO "'",
                    name, host);
            return -1;
        }
        if (label_len > EVR_DNS_LABEL_MAX) {
            s_error(err, errlen,
                    "%s: label longer than %d characters in host name "
                    "'" S_ECHO "'",
                    name, EVR_DNS_LABEL_MAX, host);
            return -1;
        }
        for (size_t i = 0; i < label_len; i++) {
            unsigned char c = (unsigned char)label[i];
            if (!s_is_alnum(c) && c != '-') {
                if (c < 0x80)
                    s_error(err, errlen,
                            "%s: invalid character '%c' in host name "
                            "'" S_ECHO "'",
                            name, c, host);
                else
                    s_error(err, errlen,
                            "%s: non-ASCII byte 0x%02x in host name (use "
                            "the punycode form)",
                            name, c);
                return -1;
            }
        }
        if (label[0] == '-' || label[label_len - 1] == '-') {
            s_error(err, errlen,
                    "%s: a label of host name '" S_ECHO
                    "' starts or ends with '-'",
                    name, host);
            return -1;
        }
        if (!end)
            return 0;
        label = end + 1;
    }
}

//  --------------------------------------------------------------------------
//  Parse a decimal port 1..65535 for transport `name` (form is the expected
//  syntax). Returns the port, or -1 and a reason.

static int s_parse_port(const char *name, const char *form, const char *text,
                        char *err, size_t errlen)
{
    if (*text == '\0') {
        s_error(err, errlen, "%s: missing port (expected %s)", name, form);
        return -1;
    }
    long value = 0;
    for (const char *p = text; *p; p++) {
        if (!s_is_digit((unsigned char)*p)) {
            s_error(err, errlen, "%s: port '" S_ECHO "' is not a number", name,
                    text);
            return -1;
        }
        if (value <= 65535)
            value = value * 10 + (*p - '0');
    }
    if (value < 1 || value > 65535) {
        s_error(err, errlen, "%s: port '" S_ECHO "' out of range 1-65535", name,
                text);
        return -1;
    }
    return (int)value;
}

//  --------------------------------------------------------------------------
//  Parse HOST[:PORT] (the whole of text) for transport `name`. HOST is an
//  IPv4 address, a DNS name or a bracketed IPv6 address. The port is
//  mandatory when default_port is 0. On success *host_p is a new copy of
//  the host as written (no brackets), *port_p the port, and printed (room
//  for EVR_HOST_PRINTED_MAX bytes) the canonical host: IPv4 normalised,
//  IPv6 compressed in brackets, names lowercased. 0, or -1 and a reason.

static int s_parse_host_port(const char *name, const char *form,
                             const char *text, int default_port, char **host_p,
                             int *port_p, char *printed, char *err,
                             size_t errlen)
{
    const char *host;
    size_t host_len;
    const char *port_text = NULL; //  NULL: no port given
    bool bracketed = (text[0] == '[');
    *host_p = NULL;

    if (bracketed) {
        const char *close = strchr(text, ']');
        if (!close) {
            s_error(err, errlen,
                    "%s: missing ']' after IPv6 address (expected %s)", name,
                    form);
            return -1;
        }
        host = text + 1;
        host_len = (size_t)(close - host);
        if (close[1] == ':')
            port_text = close + 2;
        else if (close[1] != '\0') {
            s_error(err, errlen,
                    "%s: expected ':PORT' after ']', got '" S_ECHO "'", name,
                    close + 1);
            return -1;
        }
    } else {
        const char *colon = strrchr(text, ':');
        host = text;
        host_len = colon ? (size_t)(colon - text) : strlen(text);
        if (colon)
            port_text = colon + 1;
    }
    if (!port_text && default_port == 0) {
        if (bracketed)
            s_error(err, errlen, "%s: missing port after ']' (expected %s)",
                    name, form);
        else
            s_error(err, errlen,
                    "%s: missing port in '" S_ECHO "' (expected %s)", name,
                    text, form);
        return -1;
    }
    if (host_len == 0) {
        s_error(err, errlen, "%s: missing host (expected %s)", name, form);
        return -1;
    }
    char *copy = s_strndup(host, host_len);
    if (!copy) {
        s_error(err, errlen, "%s: out of memory", name);
        return -1;
    }
    if (!bracketed && strchr(copy, ':')) {
        s_error(err, errlen,
                "%s: IPv6 address in '" S_ECHO "' must be in brackets, "
                "e.g. [::1]",
                name, text);
        free(copy);
        return -1;
    }
    if (bracketed) {
        struct in6_addr addr6;
        char text6[INET6_ADDRSTRLEN];
        if (inet_pton(AF_INET6, copy, &addr6) != 1) {
            s_error(err, errlen, "%s: invalid IPv6 address '" S_ECHO "'", name,
                    copy);
            free(copy);
            return -1;
        }
        inet_ntop(AF_INET6, &addr6, text6, sizeof(text6));
        snprintf(printed, EVR_HOST_PRINTED_MAX, "[%s]", text6);
    } else if (s_looks_numeric(copy)) {
        struct in_addr addr4;
        if (inet_pton(AF_INET, copy, &addr4) != 1) {
            s_error(err, errlen, "%s: invalid IPv4 address '" S_ECHO "'", name,
                    copy);
            free(copy);
            return -1;
        }
        inet_ntop(AF_INET, &addr4, printed, EVR_HOST_PRINTED_MAX);
    } else {
        if (s_check_dns_name(name, copy, err, errlen) < 0) {
            free(copy);
            return -1;
        }
        //  DNS names are case-insensitive: one subscriber, one key.
        snprintf(printed, EVR_HOST_PRINTED_MAX, "%s", copy);
        s_lowercase(printed);
    }
    int port = default_port;
    if (port_text) {
        port = s_parse_port(name, form, port_text, err, errlen);
        if (port < 0) {
            free(copy);
            return -1;
        }
    }
    *host_p = copy;
    *port_p = port;
    return 0;
}

//  --------------------------------------------------------------------------
//  Parse the part after "udp:" into self. 0 or -1 with a reason.

static int s_parse_udp(evr_sockspec_t *self, const char *rest, char *err,
                       size_t errlen)
{
    char printed[EVR_HOST_PRINTED_MAX];
    if (s_parse_host_port("udp", S_FORM_UDP, rest, 0, &self->host, &self->port,
                          printed, err, errlen) < 0)
        return -1;
    if (s_set_canonical(self, s_strprintf("udp:%s:%d", printed, self->port)) <
        0) {
        s_error(err, errlen, "udp: out of memory");
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Parse the part after "tcp:" into self. 0 or -1 with a reason.

static int s_parse_tcp(evr_sockspec_t *self, const char *rest, char *err,
                       size_t errlen)
{
    const char *slash = strchr(rest, '/');
    if (slash) {
        const char *method = slash + 1;
        if (*method == '\0') {
            s_error(err, errlen, "tcp: empty method after '/' (expected %s)",
                    S_FORM_TCP);
            return -1;
        }
        for (const char *p = method; *p; p++) {
            unsigned char c = (unsigned char)*p;
            if (!s_is_alnum(c) && !strchr("_.:-", c)) {
                if (c < 0x80)
                    s_error(err, errlen,
                            "tcp: invalid character '%c' in method '" S_ECHO
                            "' (allowed: letters, digits, '_', '.', ':', "
                            "'-')",
                            c, method);
                else
                    s_error(err, errlen,
                            "tcp: non-ASCII byte 0x%02x in method '" S_ECHO "'",
                            c, method);
                return -1;
            }
        }
        self->method = strdup(method);
        if (!self->method) {
            s_error(err, errlen, "tcp: out of memory");
            return -1;
        }
    }
    size_t hp_len = slash ? (size_t)(slash - rest) : strlen(rest);
    char *host_port = s_strndup(rest, hp_len);
    if (!host_port) {
        s_error(err, errlen, "tcp: out of memory");
        return -1;
    }
    char printed[EVR_HOST_PRINTED_MAX];
    int rc = s_parse_host_port("tcp", S_FORM_TCP, host_port, 0, &self->host,
                               &self->port, printed, err, errlen);
    free(host_port);
    if (rc < 0)
        return -1;
    char *canonical =
        self->method
            ? s_strprintf("tcp:%s:%d/%s", printed, self->port, self->method)
            : s_strprintf("tcp:%s:%d", printed, self->port);
    if (s_set_canonical(self, canonical) < 0) {
        s_error(err, errlen, "tcp: out of memory");
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  %-unescape len bytes of text, the rabbitmq `what` (e.g. "user"), into a
//  new string. NULL with a reason on a bad escape, an escaped NUL or OOM.

static char *s_unescape(const char *what, const char *text, size_t len,
                        char *err, size_t errlen)
{
    char *out = (char *)malloc(len + 1);
    if (!out) {
        s_error(err, errlen, "rabbitmq: out of memory");
        return NULL;
    }
    size_t size = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] != '%') {
            out[size++] = text[i];
            continue;
        }
        int high = i + 1 < len ? s_hex_value((unsigned char)text[i + 1]) : -1;
        int low = i + 2 < len ? s_hex_value((unsigned char)text[i + 2]) : -1;
        if ((high < 0 || low < 0) && strcmp(what, "password") == 0) {
            //  Never echo any part of a password.
            s_error(err, errlen,
                    "rabbitmq: bad %%-escape in password (expected %%XX "
                    "with XX hexadecimal)");
            free(out);
            return NULL;
        }
        if (high < 0 || low < 0) {
            s_error(err, errlen,
                    "rabbitmq: bad %%-escape '%.*s' in %s (expected %%XX with "
                    "XX hexadecimal)",
                    (int)(len - i < 3 ? len - i : 3), text + i, what);
            free(out);
            return NULL;
        }
        if (high == 0 && low == 0) {
            s_error(err, errlen, "rabbitmq: %%00 (a NUL byte) in %s", what);
            free(out);
            return NULL;
        }
        out[size++] = (char)(high * 16 + low);
        i += 2;
    }
    out[size] = '\0';
    return out;
}

//  --------------------------------------------------------------------------
//  True if the len bytes at text are exactly the string word.

static bool s_word_is(const char *text, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(text, word, len) == 0;
}

//  --------------------------------------------------------------------------
//  Parse an unescaped AMQP short string parameter value into *value_p.
//  0, or -1 with a reason.

static int s_parse_rabbitmq_value(const char *param, char **value_p,
                                  const char *value, size_t value_len,
                                  char *err, size_t errlen)
{
    if (!value) {
        s_error(err, errlen, "rabbitmq: parameter '%s' needs a value (%s=NAME)",
                param, param);
        return -1;
    }
    if (*value_p) {
        s_error(err, errlen, "rabbitmq: parameter '%s' given twice", param);
        return -1;
    }
    *value_p = s_unescape(param, value, value_len, err, errlen);
    if (!*value_p)
        return -1;
    size_t length = strlen(*value_p);
    if (length > EVR_AMQP_SHORTSTR_MAX) {
        s_error(err, errlen, "rabbitmq: %s is %zu bytes, longer than %d", param,
                length, EVR_AMQP_SHORTSTR_MAX);
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Parse one rabbitmq parameter (NAME=VALUE or a flag) of len bytes.
//  0, or -1 with a reason.

static int s_parse_rabbitmq_param(evr_sockspec_t *self, const char *item,
                                  size_t len, char *err, size_t errlen)
{
    const char *equals = (const char *)memchr(item, '=', len);
    size_t name_len = equals ? (size_t)(equals - item) : len;
    const char *value = equals ? equals + 1 : NULL;
    size_t value_len = equals ? len - name_len - 1 : 0;

    if (s_word_is(item, name_len, "exchange"))
        return s_parse_rabbitmq_value("exchange", &self->exchange, value,
                                      value_len, err, errlen);
    if (s_word_is(item, name_len, "vhost")) {
        if (s_parse_rabbitmq_value("vhost", &self->vhost, value, value_len, err,
                                   errlen) < 0)
            return -1;
        if (*self->vhost == '\0') {
            s_error(err, errlen, "rabbitmq: empty vhost (the default is '/')");
            return -1;
        }
        return 0;
    }
    if (s_word_is(item, name_len, "persistent")) {
        if (equals) {
            s_error(err, errlen,
                    "rabbitmq: parameter 'persistent' takes no value");
            return -1;
        }
        if (self->persistent) {
            s_error(err, errlen,
                    "rabbitmq: parameter 'persistent' given twice");
            return -1;
        }
        self->persistent = true;
        return 0;
    }
    if (s_word_is(item, name_len, "tls_domain")) {
        s_error(err, errlen, "rabbitmq: tls_domain is not supported");
        return -1;
    }
    s_error(err, errlen,
            "rabbitmq: unknown parameter '%.*s' (known: exchange, persistent, "
            "vhost)",
            name_len > 64 ? 64 : (int)name_len, item);
    return -1;
}

//  --------------------------------------------------------------------------
//  Parse the ';'-separated rabbitmq parameters (len bytes; empty items are
//  skipped). 0, or -1 with a reason.

static int s_parse_rabbitmq_params(evr_sockspec_t *self, const char *params,
                                   size_t len, char *err, size_t errlen)
{
    const char *end = params + len;
    const char *item = params;
    while (true) {
        const char *semicolon =
            (const char *)memchr(item, ';', (size_t)(end - item));
        const char *item_end = semicolon ? semicolon : end;
        if (item_end > item &&
            s_parse_rabbitmq_param(self, item, (size_t)(item_end - item), err,
                                   errlen) < 0)
            return -1;
        if (!semicolon)
            return 0;
        item = semicolon + 1;
    }
}

//  --------------------------------------------------------------------------
//  Print a parsed rabbitmq spec: the canonical form when with_persistent,
//  else the match key. Fields are %-escaped so the text parses back.
//  Returns a new string, or NULL (OOM).

static char *s_rabbitmq_print(const evr_sockspec_t *self, const char *host,
                              bool with_persistent)
{
    s_text_t text = {NULL, 0, 0, false};
    char port[16];
    snprintf(port, sizeof(port), ":%d/", self->port);
    s_text_adds(&text, "rabbitmq:");
    s_text_add_escaped(&text, self->user);
    s_text_adds(&text, "@");
    s_text_adds(&text, host);
    s_text_adds(&text, port);
    const char *separator = "";
    if (*self->exchange) {
        s_text_adds(&text, "exchange=");
        s_text_add_escaped(&text, self->exchange);
        separator = ";";
    }
    if (strcmp(self->vhost, EVR_RABBITMQ_VHOST) != 0) {
        s_text_adds(&text, separator);
        s_text_adds(&text, "vhost=");
        s_text_add_escaped(&text, self->vhost);
        separator = ";";
    }
    if (with_persistent && self->persistent) {
        s_text_adds(&text, separator);
        s_text_adds(&text, "persistent");
        separator = ";";
    }
    if (*separator)
        s_text_adds(&text, "?");
    s_text_add_escaped(&text, self->routing_key);
    return s_text_take(&text);
}

//  --------------------------------------------------------------------------
//  Parse the part after "rabbitmq:" into self. As in OpenSIPS, the host
//  part ends at the first '/', and the user part at the last '@' before
//  it; the parameters end at the first '?' after it. 0 or -1 with a reason.

static int s_parse_rabbitmq(evr_sockspec_t *self, const char *rest, char *err,
                            size_t errlen)
{
    const char *slash = strchr(rest, '/');
    if (!slash) {
        s_error(err, errlen,
                "rabbitmq: missing '/' and routing key (expected %s)",
                S_FORM_RABBITMQ);
        return -1;
    }
    const char *at = NULL;
    for (const char *p = rest; p < slash; p++)
        if (*p == '@')
            at = p;
    if (at) {
        const char *colon =
            (const char *)memchr(rest, ':', (size_t)(at - rest));
        const char *user_end = colon ? colon : at;
        if (user_end == rest) {
            s_error(err, errlen, "rabbitmq: empty user name before '%c'",
                    *user_end);
            return -1;
        }
        self->user =
            s_unescape("user", rest, (size_t)(user_end - rest), err, errlen);
        if (!self->user)
            return -1;
        self->password = colon
                             ? s_unescape("password", colon + 1,
                                          (size_t)(at - colon - 1), err, errlen)
                             : strdup(EVR_RABBITMQ_PASSWORD);
        if (!self->password) {
            if (!colon)
                s_error(err, errlen, "rabbitmq: out of memory");
            return -1;
        }
    } else {
        self->user = strdup(EVR_RABBITMQ_USER);
        self->password = strdup(EVR_RABBITMQ_PASSWORD);
        if (!self->user || !self->password) {
            s_error(err, errlen, "rabbitmq: out of memory");
            return -1;
        }
    }
    const char *host_start = at ? at + 1 : rest;
    char *host_port = s_strndup(host_start, (size_t)(slash - host_start));
    if (!host_port) {
        s_error(err, errlen, "rabbitmq: out of memory");
        return -1;
    }
    char printed[EVR_HOST_PRINTED_MAX];
    int rc = s_parse_host_port("rabbitmq", S_FORM_RABBITMQ, host_port,
                               EVR_RABBITMQ_PORT, &self->host, &self->port,
                               printed, err, errlen);
    free(host_port);
    if (rc < 0) {
        //  "u:pa/ss@h/rk": the '/' in the password ended the host part;
        //  say so rather than echo a piece of the password.
        if (!at && memchr(rest, ':', (size_t)(slash - rest)) &&
            strchr(slash, '@'))
            s_error(err, errlen,
                    "rabbitmq: invalid host part before the first '/' (a '/' "
                    "in the user or password must be written %%2F)");
        return -1;
    }

    const char *tail = slash + 1;
    const char *question = strchr(tail, '?');
    if (question && s_parse_rabbitmq_params(
                        self, tail, (size_t)(question - tail), err, errlen) < 0)
        return -1;
    const char *key = question ? question + 1 : tail;
    self->routing_key =
        s_unescape("routing key", key, strlen(key), err, errlen);
    if (!self->routing_key)
        return -1;
    size_t key_len = strlen(self->routing_key);
    if (key_len == 0) {
        s_error(err, errlen, "rabbitmq: missing routing key (expected %s)",
                S_FORM_RABBITMQ);
        return -1;
    }
    if (key_len > EVR_AMQP_SHORTSTR_MAX) {
        s_error(err, errlen,
                "rabbitmq: routing key is %zu bytes, longer than %d", key_len,
                EVR_AMQP_SHORTSTR_MAX);
        return -1;
    }
    if (!self->exchange)
        self->exchange = strdup("");
    if (!self->vhost)
        self->vhost = strdup(EVR_RABBITMQ_VHOST);
    if (self->exchange && self->vhost) {
        self->canonical = s_rabbitmq_print(self, printed, true);
        //  OpenSIPS matches on host, port, user, routing key and exchange;
        //  we add the vhost. Password and persistent do not count.
        self->match_key = s_rabbitmq_print(self, printed, false);
    }
    if (!self->canonical || !self->match_key) {
        s_error(err, errlen, "rabbitmq: out of memory");
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
//  Parse a ZeroMQ endpoint (tcp://HOST:PORT or ipc:///PATH) into a new
//  normalised endpoint string, or NULL with a reason.

static char *s_parse_zmq_endpoint(const char *endpoint, char *err,
                                  size_t errlen)
{
    char *result = NULL;
    if (strncmp(endpoint, "tcp://", 6) == 0) {
        char printed[EVR_HOST_PRINTED_MAX];
        char *host;
        int port;
        if (s_parse_host_port("zmq", S_FORM_ZMQ, endpoint + 6, 0, &host, &port,
                              printed, err, errlen) < 0)
            return NULL;
        free(host);
        result = s_strprintf("tcp://%s:%d", printed, port);
    } else if (strncmp(endpoint, "ipc://", 6) == 0) {
        const char *path = endpoint + 6;
        size_t length = strlen(path);
        if (length == 0 || *path != '/') {
            s_error(err, errlen,
                    "zmq: ipc path '" S_ECHO "' must be absolute (expected "
                    "ipc:///PATH)",
                    path);
            return NULL;
        }
        if (length > EVR_UNIX_PATH_MAX) {
            s_error(err, errlen,
                    "zmq: ipc path is %zu bytes, longer than the %zu-byte "
                    "limit of a unix socket",
                    length, (size_t)EVR_UNIX_PATH_MAX);
            return NULL;
        }
        if (path[length - 1] == '/') {
            s_error(err, errlen,
                    "zmq: ipc path '" S_ECHO "' names a directory (must not "
                    "end in '/')",
                    path);
            return NULL;
        }
        result = s_strprintf("ipc://%s", path);
    } else {
        s_error(err, errlen,
                "zmq: unsupported endpoint '" S_ECHO
                "' (expected tcp://HOST:PORT or ipc:///PATH)",
                endpoint);
        return NULL;
    }
    if (!result)
        s_error(err, errlen, "zmq: out of memory");
    return result;
}

//  --------------------------------------------------------------------------
//  Parse the part after "zmq:" (MODE:ENDPOINT) into self. 0 or -1 with a
//  reason.

static int s_parse_zmq(evr_sockspec_t *self, const char *rest, char *err,
                       size_t errlen)
{
    const char *colon = strchr(rest, ':');
    size_t mode_len = colon ? (size_t)(colon - rest) : strlen(rest);
    if (s_word_is(rest, mode_len, "push"))
        self->zmq_pub = false;
    else if (s_word_is(rest, mode_len, "pub"))
        self->zmq_pub = true;
    else {
        if (mode_len == 0)
            s_error(err, errlen,
                    "zmq: missing mode (expected zmq:push:ENDPOINT or "
                    "zmq:pub:ENDPOINT)");
        else
            s_error(err, errlen,
                    "zmq: unknown mode '%.*s' (expected push or pub)",
                    mode_len > 32 ? 32 : (int)mode_len, rest);
        return -1;
    }
    if (!colon) {
        s_error(err, errlen,
                "zmq: missing endpoint after '%s' (expected tcp://HOST:PORT "
                "or ipc:///PATH)",
                self->zmq_pub ? "pub" : "push");
        return -1;
    }
    self->endpoint = s_parse_zmq_endpoint(colon + 1, err, errlen);
    if (!self->endpoint)
        return -1;
    if (s_set_canonical(self,
                        s_strprintf("zmq:%s:%s", self->zmq_pub ? "pub" : "push",
                                    self->endpoint)) < 0) {
        s_error(err, errlen, "zmq: out of memory");
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Check the path and query of an http URL: RFC 3986 characters, valid
//  %-escapes. 0 or -1 with a reason.

static int s_check_http_path(const char *name, const char *path, char *err,
                             size_t errlen)
{
    for (const char *p = path; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '%') {
            if (s_hex_value((unsigned char)p[1]) < 0 ||
                s_hex_value((unsigned char)p[2]) < 0) {
                s_error(err, errlen,
                        "%s: bad %%-escape '%.3s' in the URL path (expected "
                        "%%XX with XX hexadecimal)",
                        name, p);
                return -1;
            }
            p += 2;
        } else if (c >= 0x80) {
            s_error(err, errlen,
                    "%s: non-ASCII byte 0x%02x in the URL path "
                    "(percent-encode it)",
                    name, c);
            return -1;
        } else if (!s_is_alnum(c) && !strchr("-._~!$&'()*+,;=:@/?", c)) {
            s_error(err, errlen,
                    "%s: character '%c' must be percent-encoded in the URL "
                    "path",
                    name, c);
            return -1;
        }
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Parse the part after "http:" or "https:" (//HOST[:PORT][/PATH[?QUERY]])
//  into self. 0 or -1 with a reason.

static int s_parse_http(evr_sockspec_t *self, const char *rest, char *err,
                        size_t errlen)
{
    const char *name = self->tls ? "https" : "http";
    int default_port = self->tls ? 443 : 80;
    if (strncmp(rest, "//", 2) != 0) {
        s_error(err, errlen, "%s: expected %s://HOST[:PORT][/PATH]", name,
                name);
        return -1;
    }
    const char *authority = rest + 2;
    if (strchr(authority, '#')) {
        s_error(err, errlen, "%s: fragments ('#') are not allowed in the URL",
                name);
        return -1;
    }
    size_t authority_len = strcspn(authority, "/?");
    if (memchr(authority, '@', authority_len)) {
        s_error(err, errlen, "%s: credentials in the URL are not supported",
                name);
        return -1;
    }
    char *host_port = s_strndup(authority, authority_len);
    if (!host_port) {
        s_error(err, errlen, "%s: out of memory", name);
        return -1;
    }
    char printed[EVR_HOST_PRINTED_MAX];
    int rc = s_parse_host_port(name, S_FORM_HTTP, host_port, default_port,
                               &self->host, &self->port, printed, err, errlen);
    free(host_port);
    if (rc < 0)
        return -1;
    const char *tail = authority + authority_len;
    if (s_check_http_path(name, tail, err, errlen) < 0)
        return -1;
    //  "http://h" and "http://h?q" have the path "/".
    self->path = *tail == '/' ? strdup(tail) : s_strprintf("/%s", tail);
    if (!self->path) {
        s_error(err, errlen, "%s: out of memory", name);
        return -1;
    }
    char *canonical = self->port == default_port
                          ? s_strprintf("%s://%s%s", name, printed, self->path)
                          : s_strprintf("%s://%s:%d%s", name, printed,
                                        self->port, self->path);
    if (s_set_canonical(self, canonical) < 0 ||
        !(self->endpoint = strdup(self->canonical))) {
        s_error(err, errlen, "%s: out of memory", name);
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  True if the len bytes at text equal word, ignoring ASCII case.

static bool s_word_is_nocase(const char *text, size_t len, const char *word)
{
    if (strlen(word) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char a = text[i], b = word[i];
        if (a >= 'a' && a <= 'z')
            a = (char)(a - 'a' + 'A');
        if (b >= 'a' && b <= 'z')
            b = (char)(b - 'a' + 'A');
        if (a != b)
            return false;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  qsort comparator for an array of C strings.

static int s_compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

//  --------------------------------------------------------------------------
//  Build the canonical form and match key of a parsed virtual spec. 0 or
//  -1 (OOM).

static int s_virtual_print(evr_sockspec_t *self, const char *policy)
{
    s_text_t canonical = {NULL, 0, 0, false};
    s_text_t key = {NULL, 0, 0, false};
    const char *keys[EVR_MAX_CHILDREN];
    s_text_adds(&canonical, "virtual:");
    s_text_adds(&canonical, policy);
    s_text_adds(&key, "virtual:");
    s_text_adds(&key, policy);
    for (size_t i = 0; i < self->child_count; i++) {
        s_text_adds(&canonical, " ");
        s_text_adds(&canonical, self->children[i]->canonical);
        keys[i] = self->children[i]->match_key;
    }
    //  PARALLEL notifies every child: their order does not matter.
    if (self->policy == EVR_POLICY_PARALLEL)
        qsort(keys, self->child_count, sizeof(keys[0]), s_compare_strings);
    for (size_t i = 0; i < self->child_count; i++) {
        s_text_adds(&key, " ");
        s_text_adds(&key, keys[i]);
    }
    self->canonical = s_text_take(&canonical);
    self->match_key = s_text_take(&key);
    return self->canonical && self->match_key ? 0 : -1;
}

//  --------------------------------------------------------------------------
//  Copy a socket string into buf (size bytes) for an error message, with
//  the password of a rabbitmq socket replaced by "***".

static void s_mask_password(const char *text, char *buf, size_t size)
{
    snprintf(buf, size, "%s", text);
    if (strncmp(text, "rabbitmq:", 9) != 0)
        return;
    const char *rest = text + 9;
    const char *at = NULL;
    for (const char *p = rest; *p && *p != '/'; p++)
        if (*p == '@')
            at = p;
    const char *colon =
        at ? (const char *)memchr(rest, ':', (size_t)(at - rest)) : NULL;
    if (colon)
        snprintf(buf, size, "%.*s***%s", (int)(colon + 1 - text), text, at);
}

//  --------------------------------------------------------------------------
//  Parse the part after "virtual:" (POLICY S1 S2 ...) into self. Children
//  are separated by runs of spaces or tabs and parsed in full; none may be
//  virtual. 0 or -1 with a reason.

static int s_parse_virtual(evr_sockspec_t *self, const char *rest, char *err,
                           size_t errlen)
{
    static const char *policies[] = {"PARALLEL", "FAILOVER", "ROUND-ROBIN"};
    static const evr_policy_t values[] = {
        EVR_POLICY_PARALLEL, EVR_POLICY_FAILOVER, EVR_POLICY_ROUND_ROBIN};
    size_t policy_len = strcspn(rest, " \t");
    if (policy_len == 0) {
        s_error(err, errlen,
                "virtual: missing policy right after 'virtual:' (expected "
                "%s, POLICY = PARALLEL, FAILOVER or ROUND-ROBIN)",
                S_FORM_VIRTUAL);
        return -1;
    }
    const char *policy = NULL;
    for (size_t i = 0; i < 3; i++)
        if (s_word_is(rest, policy_len, policies[i])) {
            policy = policies[i];
            self->policy = values[i];
        }
    if (!policy) {
        bool wrong_case = false;
        for (size_t i = 0; i < 3; i++)
            wrong_case |= s_word_is_nocase(rest, policy_len, policies[i]);
        s_error(err, errlen,
                "virtual: %s policy '%.*s' (expected PARALLEL, FAILOVER or "
                "ROUND-ROBIN%s)",
                wrong_case ? "lowercase" : "unknown",
                policy_len > 32 ? 32 : (int)policy_len, rest,
                wrong_case ? ", in uppercase" : "");
        return -1;
    }
    //  Count the children first, so the array has the right size.
    size_t count = 0;
    for (const char *p = rest + policy_len; *p;) {
        p += strspn(p, " \t");
        if (*p) {
            count++;
            p += strcspn(p, " \t");
        }
    }
    if (count == 0) {
        s_error(err, errlen,
                "virtual: no child sockets after the policy (expected %s)",
                S_FORM_VIRTUAL);
        return -1;
    }
    if (count > EVR_MAX_CHILDREN) {
        s_error(err, errlen,
                "virtual: %zu child sockets, more than the limit of %d", count,
                EVR_MAX_CHILDREN);
        return -1;
    }
    self->children = (evr_sockspec_t **)calloc(count, sizeof(*self->children));
    if (!self->children) {
        s_error(err, errlen, "virtual: out of memory");
        return -1;
    }
    const char *p = rest + policy_len;
    while (self->child_count < count) {
        p += strspn(p, " \t");
        size_t child_len = strcspn(p, " \t");
        size_t number = self->child_count + 1;
        char *child_text = s_strndup(p, child_len);
        if (!child_text) {
            s_error(err, errlen, "virtual: out of memory");
            return -1;
        }
        p += child_len;
        if (strncmp(child_text, "virtual:", 8) == 0) {
            s_error(err, errlen,
                    "virtual: child %zu '" S_ECHO "': a virtual socket cannot "
                    "contain another virtual socket",
                    number, child_text);
            free(child_text);
            return -1;
        }
        char child_err[256];
        evr_sockspec_t *child =
            evr_sockspec_parse(child_text, child_err, sizeof(child_err));
        if (!child) {
            char shown[128];
            s_mask_password(child_text, shown, sizeof(shown));
            s_error(err, errlen, "virtual: child %zu '" S_ECHO "': %s", number,
                    shown, child_err);
            free(child_text);
            return -1;
        }
        free(child_text);
        self->children[self->child_count++] = child;
    }
    if (s_virtual_print(self, policy) < 0) {
        s_error(err, errlen, "virtual: out of memory");
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Check the raw string: length and characters. Whitespace is allowed only
//  in a virtual socket, and there only spaces and tabs. 0 or -1 and reason.

static int s_check_text(const char *text, bool is_virtual, char *err,
                        size_t errlen)
{
    size_t limit = is_virtual ? EVR_SOCKSPEC_VIRTUAL_MAX : EVR_SOCKSPEC_MAX;
    size_t length = strnlen(text, limit + 1);
    if (length == 0) {
        s_error(err, errlen, "empty socket string");
        return -1;
    }
    if (length > limit) {
        s_error(err, errlen, "%ssocket string longer than %zu bytes",
                is_virtual ? "virtual: " : "", limit);
        return -1;
    }
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (is_virtual && s_is_blank(c))
            continue;
        if (s_is_space(c)) {
            if (is_virtual)
                s_error(err, errlen,
                        "virtual: socket string contains whitespace other "
                        "than spaces and tabs at offset %zu",
                        i);
            else
                s_error(err, errlen,
                        "socket string contains whitespace at offset %zu", i);
            return -1;
        }
        if (s_is_control(c)) {
            s_error(err, errlen,
                    "socket string contains a control character at offset "
                    "%zu",
                    i);
            return -1;
        }
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Parse "evid:SOCKET": SOCKET parsed in full (not virtual, not evid
//  again), marked to carry the event id, with "evid:" in front of its
//  canonical form and match key. NULL with a reason on failure.

static evr_sockspec_t *s_parse_evid(const char *text, char *err, size_t errlen)
{
    const char *inner = text + 5;
    if (strncmp(inner, "virtual:", 8) == 0) {
        s_error(err, errlen,
                "evid: cannot wrap a virtual socket (wrap its children "
                "instead: virtual:POLICY evid:SOCKET ...)");
        return NULL;
    }
    if (strncmp(inner, "evid:", 5) == 0) {
        s_error(err, errlen, "evid: given twice");
        return NULL;
    }
    char inner_err[256];
    evr_sockspec_t *self =
        evr_sockspec_parse(inner, inner_err, sizeof(inner_err));
    if (!self) {
        s_error(err, errlen, "evid: %s", inner_err);
        return NULL;
    }
    char *canonical = s_strprintf("evid:%s", self->canonical);
    char *match_key = s_strprintf("evid:%s", self->match_key);
    if (!canonical || !match_key) {
        free(canonical);
        free(match_key);
        evr_sockspec_destroy(&self);
        s_error(err, errlen, "out of memory");
        return NULL;
    }
    free(self->canonical);
    free(self->match_key);
    self->canonical = canonical;
    self->match_key = match_key;
    self->event_id = true;
    if (strlen(self->canonical) > EVR_SOCKSPEC_MAX) {
        s_error(err, errlen,
                "evid: canonical form would be %zu bytes, longer than %d",
                strlen(self->canonical), EVR_SOCKSPEC_MAX);
        evr_sockspec_destroy(&self);
        return NULL;
    }
    return self;
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
    if (strncmp(text, "evid:", 5) == 0)
        return s_parse_evid(text, err, errlen);
    bool is_virtual = strncmp(text, "virtual:", 8) == 0;
    if (s_check_text(text, is_virtual, err, errlen) < 0)
        return NULL;
    const char *colon = strchr(text, ':');
    if (!colon || colon == text) {
        s_error(err, errlen,
                "missing transport prefix (expected e.g. udp:HOST:PORT, "
                "unix:/PATH, flatstore:/PATH)");
        return NULL;
    }
    size_t name_len = (size_t)(colon - text);
    const char *rest = colon + 1;

    static const struct {
        const char *name;
        evr_transport_t transport;
        int (*parse)(evr_sockspec_t *, const char *, char *, size_t);
    } transports[] = {
        {"udp", EVR_TRANSPORT_UDP, s_parse_udp},
        {"unix", EVR_TRANSPORT_UNIX, s_parse_unix},
        {"flatstore", EVR_TRANSPORT_FLATSTORE, s_parse_flatstore},
        {"tcp", EVR_TRANSPORT_TCP, s_parse_tcp},
        {"rabbitmq", EVR_TRANSPORT_RABBITMQ, s_parse_rabbitmq},
        {"zmq", EVR_TRANSPORT_ZMQ, s_parse_zmq},
        {"http", EVR_TRANSPORT_HTTP, s_parse_http},
        {"https", EVR_TRANSPORT_HTTP, s_parse_http},
        {"virtual", EVR_TRANSPORT_VIRTUAL, s_parse_virtual},
    };
    size_t index;
    size_t transport_count = sizeof(transports) / sizeof(transports[0]);
    for (index = 0; index < transport_count; index++)
        if (s_word_is(text, name_len, transports[index].name))
            break;
    if (index == transport_count) {
        s_error(err, errlen, "unknown transport '%.*s' (known: %s)",
                name_len > 32 ? 32 : (int)name_len, text, S_KNOWN_TRANSPORTS);
        return NULL;
    }
    evr_sockspec_t *self = s_sockspec_new(transports[index].transport);
    if (!self) {
        s_error(err, errlen, "out of memory");
        return NULL;
    }
    self->tls = strcmp(transports[index].name, "https") == 0;
    if (transports[index].parse(self, rest, err, errlen) < 0) {
        evr_sockspec_destroy(&self);
        return NULL;
    }
    //  Normalising can lengthen a string (defaults, escapes, IPv6); the
    //  canonical form must still be accepted when parsed again.
    size_t limit = is_virtual ? EVR_SOCKSPEC_VIRTUAL_MAX : EVR_SOCKSPEC_MAX;
    size_t length = strlen(self->canonical);
    if (length > limit) {
        s_error(err, errlen,
                "%s: canonical form would be %zu bytes, longer than %zu",
                transports[index].name, length, limit);
        evr_sockspec_destroy(&self);
        return NULL;
    }
    if (err && errlen > 0)
        err[0] = '\0';
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
        free(self->method);
        free(self->user);
        free(self->password);
        free(self->vhost);
        free(self->exchange);
        free(self->routing_key);
        free(self->endpoint);
        for (size_t i = 0; i < self->child_count; i++)
            evr_sockspec_destroy(&self->children[i]);
        free(self->children);
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
        case EVR_TRANSPORT_TCP:
            return "tcp";
        case EVR_TRANSPORT_RABBITMQ:
            return "rabbitmq";
        case EVR_TRANSPORT_ZMQ:
            return "zmq";
        case EVR_TRANSPORT_HTTP:
            return self->tls ? "https" : "http";
        case EVR_TRANSPORT_VIRTUAL:
            return "virtual";
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
//  A deep copy (including the password and the children), or NULL (OOM).

evr_sockspec_t *evr_sockspec_dup(const evr_sockspec_t *self)
{
    assert(self);
    evr_sockspec_t *copy = s_sockspec_new(self->transport);
    if (!copy)
        return NULL;
    copy->port = self->port;
    copy->persistent = self->persistent;
    copy->zmq_pub = self->zmq_pub;
    copy->tls = self->tls;
    copy->policy = self->policy;
    copy->event_id = self->event_id;
    if (s_copy_field(&copy->canonical, self->canonical) < 0 ||
        s_copy_field(&copy->match_key, self->match_key) < 0 ||
        s_copy_field(&copy->host, self->host) < 0 ||
        s_copy_field(&copy->path, self->path) < 0 ||
        s_copy_field(&copy->method, self->method) < 0 ||
        s_copy_field(&copy->user, self->user) < 0 ||
        s_copy_field(&copy->password, self->password) < 0 ||
        s_copy_field(&copy->vhost, self->vhost) < 0 ||
        s_copy_field(&copy->exchange, self->exchange) < 0 ||
        s_copy_field(&copy->routing_key, self->routing_key) < 0 ||
        s_copy_field(&copy->endpoint, self->endpoint) < 0)
        goto failed;
    if (self->child_count > 0) {
        copy->children = (evr_sockspec_t **)calloc(self->child_count,
                                                   sizeof(*copy->children));
        if (!copy->children)
            goto failed;
        for (size_t i = 0; i < self->child_count; i++) {
            copy->children[i] = evr_sockspec_dup(self->children[i]);
            if (!copy->children[i])
                goto failed;
            copy->child_count++;
        }
    }
    return copy;
failed:
    evr_sockspec_destroy(&copy);
    return NULL;
}

//  --------------------------------------------------------------------------
//  udp, tcp, rabbitmq, http: the host as written, without IPv6 brackets;
//  NULL for others.

const char *evr_sockspec_host(const evr_sockspec_t *self)
{
    assert(self);
    return self->host;
}

//  --------------------------------------------------------------------------
//  udp, tcp, rabbitmq, http: the port; 0 for others.

int evr_sockspec_port(const evr_sockspec_t *self)
{
    assert(self);
    return self->port;
}

//  --------------------------------------------------------------------------
//  unix, flatstore: the path; http: path and query; NULL for others.

const char *evr_sockspec_path(const evr_sockspec_t *self)
{
    assert(self);
    return self->path;
}

//  --------------------------------------------------------------------------
//  tcp: the JSON-RPC method; NULL when not given or for others.

const char *evr_sockspec_method(const evr_sockspec_t *self)
{
    assert(self);
    return self->method;
}

//  --------------------------------------------------------------------------
//  rabbitmq: the user; NULL for others.

const char *evr_sockspec_user(const evr_sockspec_t *self)
{
    assert(self);
    return self->user;
}

//  --------------------------------------------------------------------------
//  rabbitmq: the password; NULL for others.

const char *evr_sockspec_password(const evr_sockspec_t *self)
{
    assert(self);
    return self->password;
}

//  --------------------------------------------------------------------------
//  rabbitmq: the vhost; NULL for others.

const char *evr_sockspec_vhost(const evr_sockspec_t *self)
{
    assert(self);
    return self->vhost;
}

//  --------------------------------------------------------------------------
//  rabbitmq: the exchange ("" is the default exchange); NULL for others.

const char *evr_sockspec_exchange(const evr_sockspec_t *self)
{
    assert(self);
    return self->exchange;
}

//  --------------------------------------------------------------------------
//  rabbitmq: the routing key; NULL for others.

const char *evr_sockspec_routing_key(const evr_sockspec_t *self)
{
    assert(self);
    return self->routing_key;
}

//  --------------------------------------------------------------------------
//  rabbitmq: the persistent flag; 0 for others.

int evr_sockspec_persistent(const evr_sockspec_t *self)
{
    assert(self);
    return self->persistent ? 1 : 0;
}

//  --------------------------------------------------------------------------
//  zmq: the ZeroMQ endpoint; http: the URL; NULL for others.

const char *evr_sockspec_endpoint(const evr_sockspec_t *self)
{
    assert(self);
    return self->endpoint;
}

//  --------------------------------------------------------------------------
//  zmq: 1 for pub, 0 for push (and for others).

int evr_sockspec_zmq_pub(const evr_sockspec_t *self)
{
    assert(self);
    return self->zmq_pub ? 1 : 0;
}

//  --------------------------------------------------------------------------
//  http: 1 for https; 0 otherwise.

int evr_sockspec_tls(const evr_sockspec_t *self)
{
    assert(self);
    return self->tls ? 1 : 0;
}

//  --------------------------------------------------------------------------
//  virtual: the policy; 0 for others.

evr_policy_t evr_sockspec_policy(const evr_sockspec_t *self)
{
    assert(self);
    return self->policy;
}

//  --------------------------------------------------------------------------
//  virtual: the number of children; 0 for others.

size_t evr_sockspec_child_count(const evr_sockspec_t *self)
{
    assert(self);
    return self->child_count;
}

//  --------------------------------------------------------------------------
//  virtual: child i (borrowed); NULL when i is out of range.

const evr_sockspec_t *evr_sockspec_child(const evr_sockspec_t *self, size_t i)
{
    assert(self);
    return i < self->child_count ? self->children[i] : NULL;
}

//  --------------------------------------------------------------------------
//  evid: whether the subscriber wants the event id in its payloads.

int evr_sockspec_event_id(const evr_sockspec_t *self)
{
    assert(self);
    return self->event_id ? 1 : 0;
}
