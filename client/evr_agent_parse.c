/*  evr_agent_parse.c - parsers of an unmodified OpenSIPS's event output.

    Pure module (no I/O). See evr_agent_parse.h for the formats and the
    mapping to params.

    Memory: a parse decodes names and values into the parser's arena, which
    is sized before the parse to 2 * input + 16 bytes and never moves
    during it, so the views returned can point into it. That bound holds
    because every item written comes from its own, disjoint stretch of the
    input and takes at most twice that stretch's length: a decoded string
    plus its NUL is no longer than its quoted source; a number or other
    value's compact text plus a NUL is at most its source length + 1; a
    legacy line plus a NUL is no longer than the line with its newline.
    The write helper still checks the bound and fails the parse rather
    than overrun.

    The JSON scanner is recursive descent over bytes with a depth bound.
    Semantic problems (a bad name, too many params) are remembered and the
    scan goes on, so a syntax error anywhere is always reported as
    BAD_JSON, whatever else is wrong.
*/
#include "evr_agent_parse.h"
#include "evr_defaults.h"

#include <assert.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

//  Nesting levels a JSON value may have (the top-level object is level 1):
//  OpenSIPS sends 2 (object, params); deeper values only come from other
//  senders, and the bound keeps the recursion's stack use small.
#define S_MAX_DEPTH 32

struct _evr_agent_parser_t {
    size_t max_params;
    char *event_param; //  copy, or NULL
    bool legacy_strings;
    char *arena; //  decoded names and values of the current parse
    size_t arena_cap;
    size_t arena_len;
    evr_param_t *params; //  the current parse's params
    size_t params_cap;
};

//  The state of one JSON scan.
typedef struct {
    evr_agent_parser_t *parser;
    const unsigned char *data;
    size_t len;
    size_t pos;
    evr_agent_rc_t semantic; //  first non-syntax problem, or EVR_AGENT_OK
    size_t max_params;       //  params kept (event_param's entry included)
    size_t nparams;          //  params seen (counted past max_params too)
    bool first_is_string;    //  the first param was a JSON string
} s_scan_t;

//  --------------------------------------------------------------------------
//  Create a parser. opts may be NULL. NULL when out of memory.

evr_agent_parser_t *evr_agent_parser_new(const evr_agent_parse_opts_t *opts)
{
    evr_agent_parser_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->max_params = EVR_DEFAULT_MAX_PARAMS;
    if (opts) {
        if (opts->max_params)
            self->max_params = opts->max_params;
        self->legacy_strings = opts->legacy_strings;
        if (opts->event_param) {
            self->event_param = strdup(opts->event_param);
            if (!self->event_param) {
                free(self);
                return NULL;
            }
        }
    }
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy a parser and NULL the pointer. Safe on NULL.

void evr_agent_parser_destroy(evr_agent_parser_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    evr_agent_parser_t *self = *self_p;
    free(self->event_param);
    free(self->arena);
    free(self->params);
    free(self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  The short name of a reason.

const char *evr_agent_rc_name(evr_agent_rc_t rc)
{
    switch (rc) {
        case EVR_AGENT_OK:
            return "ok";
        case EVR_AGENT_INCOMPLETE:
            return "incomplete";
        case EVR_AGENT_BAD_JSON:
            return "bad_json";
        case EVR_AGENT_BAD_JSONRPC:
            return "bad_jsonrpc";
        case EVR_AGENT_BAD_NAME:
            return "bad_name";
        case EVR_AGENT_BAD_PARAMS:
            return "bad_params";
        case EVR_AGENT_BAD_ID:
            return "bad_id";
        case EVR_AGENT_BAD_LEGACY:
            return "bad_legacy";
        case EVR_AGENT_BAD_FRAME:
            return "bad_frame";
        case EVR_AGENT_TOO_LARGE:
            return "too_large";
        default:
            return "unknown";
    }
}

//  --------------------------------------------------------------------------
//  Get ready for a parse of len input bytes: an empty arena of at least
//  2 * len + 16 bytes (see the top of the file), no params. Returns 0, or
//  -1 when out of memory.

static int s_begin(evr_agent_parser_t *self, size_t len)
{
    if (len > (SIZE_MAX - 16) / 2)
        return -1;
    size_t need = 2 * len + 16;
    if (self->arena_cap < need) {
        char *arena = malloc(need);
        if (!arena)
            return -1;
        free(self->arena);
        self->arena = arena;
        self->arena_cap = need;
    }
    self->arena_len = 0;
    return 0;
}

//  --------------------------------------------------------------------------
//  Reserve n bytes of the arena. NULL when they do not fit (never, by the
//  bound above; the parse then fails instead of overrunning).

static char *s_arena_take(evr_agent_parser_t *self, size_t n)
{
    if (n > self->arena_cap - self->arena_len)
        return NULL;
    char *at = self->arena + self->arena_len;
    self->arena_len += n;
    return at;
}

//  --------------------------------------------------------------------------
//  Append a param slot (zeroed) to the parser's list. NULL when out of
//  memory.

static evr_param_t *s_param_push(evr_agent_parser_t *self, size_t *count)
{
    if (*count == self->params_cap) {
        size_t cap = self->params_cap ? self->params_cap * 2 : 16;
        evr_param_t *params = realloc(self->params, cap * sizeof(*params));
        if (!params)
            return NULL;
        self->params = params;
        self->params_cap = cap;
    }
    evr_param_t *param = &self->params[(*count)++];
    memset(param, 0, sizeof(*param));
    return param;
}

//  --------------------------------------------------------------------------
//  True if name[0..len) is a valid event name: 1..64 bytes of printable
//  ASCII without spaces (what libevrelay and the relay accept).

static bool s_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > EVR_MAX_EVENT_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (name[i] <= ' ' || name[i] > '~')
            return false;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  Parse a canonical decimal integer, -?(0|[1-9][0-9]*) but not "-0", that
//  fits in 64 bits. Returns 0 and sets *value, or -1.

static int s_canonical_int(const char *s, size_t len, int64_t *value)
{
    size_t i = 0;
    bool negative = false;
    if (len > 0 && s[0] == '-') {
        negative = true;
        i = 1;
    }
    if (i == len || (s[i] == '0' && len - i > 1) || (negative && s[i] == '0'))
        return -1;
    uint64_t magnitude = 0;
    const uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : INT64_MAX;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned digit = (unsigned)(s[i] - '0');
        if (magnitude > (limit - digit) / 10)
            return -1;
        magnitude = magnitude * 10 + digit;
    }
    *value = negative ? (int64_t)(0 - magnitude) : (int64_t)magnitude;
    return 0;
}

//  ==========================================================================
//  JSON scanner

//  --------------------------------------------------------------------------
//  Skip JSON whitespace.

static void s_skip_ws(s_scan_t *scan)
{
    while (scan->pos < scan->len) {
        unsigned char c = scan->data[scan->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        scan->pos++;
    }
}

//  --------------------------------------------------------------------------
//  The next byte, or -1 at the end.

static int s_peek(s_scan_t *scan)
{
    return scan->pos < scan->len ? scan->data[scan->pos] : -1;
}

//  --------------------------------------------------------------------------
//  Read 4 hex digits at pos. Returns the value, or -1.

static long s_hex4(s_scan_t *scan)
{
    if (scan->len - scan->pos < 4)
        return -1;
    long value = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = scan->data[scan->pos + (size_t)i];
        int digit;
        if (c >= '0' && c <= '9')
            digit = c - '0';
        else if (c >= 'a' && c <= 'f')
            digit = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            digit = c - 'A' + 10;
        else
            return -1;
        value = value * 16 + digit;
    }
    scan->pos += 4;
    return value;
}

//  --------------------------------------------------------------------------
//  Write code point cp as UTF-8 at out. Returns the bytes written.

static size_t s_utf8(char *out, unsigned long cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

//  --------------------------------------------------------------------------
//  Scan the string literal at pos (which is '"'). With out set, decode it
//  into the arena, NUL-terminated, and set *out and *out_len. Bytes below
//  0x20 must be escaped; every other byte is taken as it is. A \u escape
//  of a surrogate must be a valid pair. Returns 0 or -1 (syntax, or no
//  room).

static int s_string(s_scan_t *scan, const char **out, size_t *out_len)
{
    assert(s_peek(scan) == '"');
    size_t start = ++scan->pos;
    //  First pass: find the end and check the syntax.
    bool escapes = false;
    while (true) {
        if (scan->pos >= scan->len)
            return -1;
        unsigned char c = scan->data[scan->pos];
        if (c == '"')
            break;
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            escapes = true;
            scan->pos++;
            if (scan->pos >= scan->len)
                return -1;
            c = scan->data[scan->pos++];
            if (c == 'u') {
                long unit = s_hex4(scan);
                if (unit < 0)
                    return -1;
                if (unit >= 0xdc00 && unit <= 0xdfff)
                    return -1; //  a low surrogate first
                if (unit >= 0xd800 && unit <= 0xdbff) {
                    if (scan->len - scan->pos < 2 ||
                        scan->data[scan->pos] != '\\' ||
                        scan->data[scan->pos + 1] != 'u')
                        return -1;
                    scan->pos += 2;
                    long low = s_hex4(scan);
                    if (low < 0xdc00 || low > 0xdfff)
                        return -1;
                }
            } else if (!strchr("\"\\/bfnrt", c) || c == '\0')
                return -1;
        } else
            scan->pos++;
    }
    size_t end = scan->pos++; //  past the closing quote
    if (!out)
        return 0;
    char *dest = s_arena_take(scan->parser, end - start + 1);
    if (!dest)
        return -1;
    const unsigned char *src = scan->data + start;
    size_t n = 0;
    if (!escapes) {
        memcpy(dest, src, end - start);
        n = end - start;
    } else {
        //  Second pass: decode (the syntax is known to be right).
        size_t i = 0;
        while (i < end - start) {
            if (src[i] != '\\') {
                dest[n++] = (char)src[i++];
                continue;
            }
            unsigned char c = src[i + 1];
            i += 2;
            switch (c) {
                case 'b':
                    dest[n++] = '\b';
                    break;
                case 'f':
                    dest[n++] = '\f';
                    break;
                case 'n':
                    dest[n++] = '\n';
                    break;
                case 'r':
                    dest[n++] = '\r';
                    break;
                case 't':
                    dest[n++] = '\t';
                    break;
                case 'u': {
                    s_scan_t hex = {.data = src, .len = end - start, .pos = i};
                    unsigned long cp = (unsigned long)s_hex4(&hex);
                    if (cp >= 0xd800 && cp <= 0xdbff) {
                        hex.pos += 2;
                        unsigned long low = (unsigned long)s_hex4(&hex);
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
                    }
                    i = hex.pos;
                    n += s_utf8(dest + n, cp);
                    break;
                }
                default: //  " \ /
                    dest[n++] = (char)c;
                    break;
            }
        }
    }
    //  The arena was charged for the source length; give back the rest.
    scan->parser->arena_len -= (end - start + 1) - (n + 1);
    dest[n] = '\0';
    *out = dest;
    *out_len = n;
    return 0;
}

//  --------------------------------------------------------------------------
//  Scan the number at pos. Sets *is_int when it has no fraction or
//  exponent. Returns 0 or -1.

static int s_number(s_scan_t *scan, bool *is_int)
{
    *is_int = true;
    if (s_peek(scan) == '-')
        scan->pos++;
    int c = s_peek(scan);
    if (c == '0')
        scan->pos++;
    else if (c >= '1' && c <= '9') {
        while ((c = s_peek(scan)) >= '0' && c <= '9')
            scan->pos++;
    } else
        return -1;
    if (s_peek(scan) == '.') {
        *is_int = false;
        scan->pos++;
        if (!((c = s_peek(scan)) >= '0' && c <= '9'))
            return -1;
        while ((c = s_peek(scan)) >= '0' && c <= '9')
            scan->pos++;
    }
    c = s_peek(scan);
    if (c == 'e' || c == 'E') {
        *is_int = false;
        scan->pos++;
        c = s_peek(scan);
        if (c == '+' || c == '-')
            scan->pos++;
        if (!((c = s_peek(scan)) >= '0' && c <= '9'))
            return -1;
        while ((c = s_peek(scan)) >= '0' && c <= '9')
            scan->pos++;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Scan the literal word at pos. Returns 0 or -1.

static int s_literal(s_scan_t *scan, const char *word)
{
    size_t n = strlen(word);
    if (scan->len - scan->pos < n || memcmp(scan->data + scan->pos, word, n))
        return -1;
    scan->pos += n;
    return 0;
}

static int s_value(s_scan_t *scan, int depth);

//  --------------------------------------------------------------------------
//  Scan the object or array at pos, whose opener is at depth (1 = top
//  level), checking only the syntax. Returns 0 or -1.

static int s_container(s_scan_t *scan, int depth)
{
    if (depth > S_MAX_DEPTH)
        return -1;
    bool is_object = scan->data[scan->pos] == '{';
    char closer = is_object ? '}' : ']';
    scan->pos++;
    s_skip_ws(scan);
    if (s_peek(scan) == closer) {
        scan->pos++;
        return 0;
    }
    while (true) {
        if (is_object) {
            if (s_peek(scan) != '"' || s_string(scan, NULL, NULL))
                return -1;
            s_skip_ws(scan);
            if (s_peek(scan) != ':')
                return -1;
            scan->pos++;
            s_skip_ws(scan);
        }
        if (s_value(scan, depth + 1))
            return -1;
        s_skip_ws(scan);
        int c = s_peek(scan);
        scan->pos++;
        if (c == closer)
            return 0;
        if (c != ',')
            return -1;
        s_skip_ws(scan);
    }
}

//  --------------------------------------------------------------------------
//  Scan any value at pos, checking only the syntax; depth is the level the
//  value would open if it is a container. Returns 0 or -1.

static int s_value(s_scan_t *scan, int depth)
{
    bool is_int;
    switch (s_peek(scan)) {
        case '"':
            return s_string(scan, NULL, NULL);
        case '{':
        case '[':
            return s_container(scan, depth);
        case 't':
            return s_literal(scan, "true");
        case 'f':
            return s_literal(scan, "false");
        case 'n':
            return s_literal(scan, "null");
        default:
            return s_number(scan, &is_int);
    }
}

//  --------------------------------------------------------------------------
//  Copy data[start..end), a scanned value, into the arena as compact JSON
//  text: the bytes outside strings that are whitespace are left out.
//  NUL-terminated. Returns 0 or -1 (no room).

static int s_compact(s_scan_t *scan, size_t start, size_t end, const char **out,
                     size_t *out_len)
{
    char *dest = s_arena_take(scan->parser, end - start + 1);
    if (!dest)
        return -1;
    size_t n = 0;
    bool in_string = false, escape = false;
    for (size_t i = start; i < end; i++) {
        unsigned char c = scan->data[i];
        if (in_string) {
            if (escape)
                escape = false;
            else if (c == '\\')
                escape = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"')
            in_string = true;
        else if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            continue;
        dest[n++] = (char)c;
    }
    scan->parser->arena_len -= (end - start + 1) - (n + 1);
    dest[n] = '\0';
    *out = dest;
    *out_len = n;
    return 0;
}

//  --------------------------------------------------------------------------
//  Scan one param value at pos into param (type and value). depth is the
//  level a container value would open. Returns 0 or -1 (syntax).

static int s_param_value(s_scan_t *scan, evr_param_t *param, int depth)
{
    size_t start = scan->pos;
    int c = s_peek(scan);
    if (c == '"') {
        param->type = EVR_PARAM_STR;
        return s_string(scan, &param->s, &param->s_len);
    }
    if (c == 'n') {
        param->type = EVR_PARAM_NULL;
        return s_literal(scan, "null");
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        bool is_int;
        if (s_number(scan, &is_int))
            return -1;
        if (is_int && s_canonical_int((const char *)scan->data + start,
                                      scan->pos - start, &param->i) == 0) {
            param->type = EVR_PARAM_INT;
            return 0;
        }
    } else if (s_value(scan, depth))
        return -1;
    //  anything else: a string param with the value's compact text
    param->type = EVR_PARAM_STR;
    return s_compact(scan, start, scan->pos, &param->s, &param->s_len);
}

//  --------------------------------------------------------------------------
//  Scan the params object or array at pos (depth 2) into the parser's
//  params. Past max_params the values are still scanned but not kept.
//  Returns 0 or -1 (syntax, or out of memory).

static int s_params(s_scan_t *scan)
{
    evr_agent_parser_t *parser = scan->parser;
    bool is_object = scan->data[scan->pos] == '{';
    char closer = is_object ? '}' : ']';
    scan->pos++;
    s_skip_ws(scan);
    if (s_peek(scan) == closer) {
        scan->pos++;
        return 0;
    }
    while (true) {
        evr_param_t scratch, *param = &scratch;
        memset(&scratch, 0, sizeof(scratch));
        if (scan->nparams < scan->max_params) {
            size_t count = scan->nparams;
            param = s_param_push(parser, &count);
            if (!param)
                return -1;
        } else if (scan->semantic == EVR_AGENT_OK)
            scan->semantic = EVR_AGENT_BAD_PARAMS;
        if (is_object) {
            if (s_peek(scan) != '"' ||
                s_string(scan, &param->name, &param->name_len))
                return -1;
            if (strlen(param->name) != param->name_len &&
                scan->semantic == EVR_AGENT_OK)
                scan->semantic = EVR_AGENT_BAD_PARAMS; //  a NUL in a name
            s_skip_ws(scan);
            if (s_peek(scan) != ':')
                return -1;
            scan->pos++;
            s_skip_ws(scan);
        }
        if (scan->nparams == 0)
            scan->first_is_string = s_peek(scan) == '"';
        if (s_param_value(scan, param, 3))
            return -1;
        scan->nparams++;
        s_skip_ws(scan);
        int c = s_peek(scan);
        scan->pos++;
        if (c == closer)
            return 0;
        if (c != ',')
            return -1;
        s_skip_ws(scan);
    }
}

//  --------------------------------------------------------------------------
//  Apply event_param: take the event name from the first param (see the
//  header) and drop that param. Sets scan->semantic on a bad name.

static void s_apply_event_param(s_scan_t *scan, evr_agent_msg_t *msg,
                                size_t *nparams)
{
    evr_agent_parser_t *parser = scan->parser;
    if (*nparams == 0)
        return; //  no params: OpenSIPS leaves event_param out
    evr_param_t *first = &parser->params[0];
    if (first->name && strcmp(first->name, parser->event_param) != 0)
        return; //  not there: the method names the event
    if (!scan->first_is_string || !s_name_valid(first->s, first->s_len)) {
        if (scan->semantic == EVR_AGENT_OK)
            scan->semantic = EVR_AGENT_BAD_NAME;
        return;
    }
    msg->event.name = first->s;
    msg->event.name_len = first->s_len;
    memmove(parser->params, parser->params + 1,
            (*nparams - 1) * sizeof(*parser->params));
    (*nparams)--;
}

//  --------------------------------------------------------------------------
//  Parse one JSON-RPC object. Returns EVR_AGENT_OK or a reason.

evr_agent_rc_t evr_agent_parse_jsonrpc(evr_agent_parser_t *self,
                                       const char *data, size_t len,
                                       evr_agent_msg_t *msg)
{
    assert(self);
    assert(data || len == 0);
    assert(msg);
    memset(msg, 0, sizeof(*msg));
    if (s_begin(self, len))
        return EVR_AGENT_TOO_LARGE;
    //  event_param's entry is not one of the event's params: room for it
    s_scan_t scan = {.parser = self,
                     .data = (const unsigned char *)data,
                     .len = len,
                     .semantic = EVR_AGENT_OK,
                     .max_params = self->max_params + (self->event_param != 0)};
    bool seen_jsonrpc = false, seen_method = false, seen_params = false;
    bool duplicate = false, bad_version = false, bad_params = false;
    const char *method = NULL;
    size_t method_len = 0;

    s_skip_ws(&scan);
    if (s_peek(&scan) != '{')
        return EVR_AGENT_BAD_JSON;
    scan.pos++;
    s_skip_ws(&scan);
    if (s_peek(&scan) == '}')
        scan.pos++;
    else {
        while (true) {
            const char *key;
            size_t key_len;
            if (s_peek(&scan) != '"' || s_string(&scan, &key, &key_len))
                return EVR_AGENT_BAD_JSON;
            s_skip_ws(&scan);
            if (s_peek(&scan) != ':')
                return EVR_AGENT_BAD_JSON;
            scan.pos++;
            s_skip_ws(&scan);
            size_t value_start = scan.pos;
            int c = s_peek(&scan);
            if (strcmp(key, "jsonrpc") == 0 && key_len == 7) {
                const char *version = NULL;
                size_t version_len = 0;
                duplicate |= seen_jsonrpc;
                seen_jsonrpc = true;
                if (c == '"') {
                    if (s_string(&scan, &version, &version_len))
                        return EVR_AGENT_BAD_JSON;
                } else if (s_value(&scan, 2))
                    return EVR_AGENT_BAD_JSON;
                bad_version =
                    !version || strcmp(version, "2.0") != 0 || version_len != 3;
            } else if (strcmp(key, "method") == 0 && key_len == 6) {
                duplicate |= seen_method;
                seen_method = true;
                method = NULL;
                if (c == '"') {
                    if (s_string(&scan, &method, &method_len))
                        return EVR_AGENT_BAD_JSON;
                } else if (s_value(&scan, 2))
                    return EVR_AGENT_BAD_JSON;
            } else if (strcmp(key, "params") == 0 && key_len == 6) {
                duplicate |= seen_params;
                if (c == '{' || c == '[') {
                    if (seen_params) {
                        if (s_value(&scan, 2))
                            return EVR_AGENT_BAD_JSON;
                    } else if (s_params(&scan))
                        return EVR_AGENT_BAD_JSON;
                } else {
                    bad_params = true;
                    if (s_value(&scan, 2))
                        return EVR_AGENT_BAD_JSON;
                }
                seen_params = true;
            } else if (strcmp(key, "id") == 0 && key_len == 2) {
                //  an integer or a string; null, fractions and the rest
                //  are not ids we can echo
                duplicate |= msg->id != NULL;
                bool id_ok = false;
                if (c == '"') {
                    if (s_string(&scan, NULL, NULL))
                        return EVR_AGENT_BAD_JSON;
                    id_ok = true;
                } else if (c == '-' || (c >= '0' && c <= '9')) {
                    if (s_number(&scan, &id_ok))
                        return EVR_AGENT_BAD_JSON;
                } else if (s_value(&scan, 2))
                    return EVR_AGENT_BAD_JSON;
                if (!id_ok && scan.semantic == EVR_AGENT_OK)
                    scan.semantic = EVR_AGENT_BAD_ID;
                msg->id = data + value_start;
                msg->id_len = scan.pos - value_start;
            } else if (s_value(&scan, 2))
                return EVR_AGENT_BAD_JSON; //  other members are ignored
            s_skip_ws(&scan);
            c = s_peek(&scan);
            scan.pos++;
            if (c == '}')
                break;
            if (c != ',')
                return EVR_AGENT_BAD_JSON;
            s_skip_ws(&scan);
        }
    }
    s_skip_ws(&scan);
    if (scan.pos != len)
        return EVR_AGENT_BAD_JSON;

    //  The syntax is right; now the meaning.
    if (duplicate || !seen_jsonrpc || bad_version || !seen_method || !method ||
        bad_params)
        return EVR_AGENT_BAD_JSONRPC;
    if (scan.semantic == EVR_AGENT_BAD_ID)
        return EVR_AGENT_BAD_ID;
    size_t nparams =
        scan.nparams < scan.max_params ? scan.nparams : scan.max_params;
    msg->event.name = method;
    msg->event.name_len = method_len;
    if (self->event_param && scan.semantic == EVR_AGENT_OK)
        s_apply_event_param(&scan, msg, &nparams);
    if (scan.semantic != EVR_AGENT_OK)
        return scan.semantic;
    if (nparams > self->max_params)
        return EVR_AGENT_BAD_PARAMS;
    if (!s_name_valid(msg->event.name, msg->event.name_len))
        return EVR_AGENT_BAD_NAME;
    msg->event.params = nparams ? self->params : NULL;
    msg->event.nparams = nparams;
    return EVR_AGENT_OK;
}

//  ==========================================================================
//  Legacy text

//  --------------------------------------------------------------------------
//  Copy data[0..len) into the arena, NUL-terminated. NULL when no room.

static char *s_arena_copy(evr_agent_parser_t *self, const char *data,
                          size_t len)
{
    char *dest = s_arena_take(self, len + 1);
    if (!dest)
        return NULL;
    memcpy(dest, data, len);
    dest[len] = '\0';
    return dest;
}

//  --------------------------------------------------------------------------
//  At data[0..len) (a value, up to but not including the datagram's final
//  newline), find a value OpenSIPS wrapped in quotes: it starts with '"',
//  runs to the first '"' not written as \", that quote is followed by a
//  newline, and it holds a newline (OpenSIPS quotes only such values).
//  Returns the length of the quoted form (quotes included, newline not),
//  or 0 when the value is not quoted.

static size_t s_legacy_quoted_len(const char *data, size_t len)
{
    if (len == 0 || data[0] != '"')
        return 0;
    bool newline = false;
    for (size_t i = 1; i < len; i++) {
        if (data[i] == '\\' && i + 1 < len && data[i + 1] == '"') {
            i++;
            continue;
        }
        if (data[i] == '\n')
            newline = true;
        if (data[i] == '"')
            return newline && i + 1 < len && data[i + 1] == '\n' ? i + 1 : 0;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Decode the quoted legacy value p[0..quoted) into param: drop the
//  quotes, turn each \" back into ". Returns 0 or -1 (no room).

static int s_legacy_unquote(evr_agent_parser_t *self, const char *p,
                            size_t quoted, evr_param_t *param)
{
    char *dest = s_arena_take(self, quoted - 1);
    if (!dest)
        return -1;
    size_t n = 0;
    for (size_t i = 1; i + 1 < quoted; i++) {
        if (p[i] == '\\' && p[i + 1] == '"' && i + 2 < quoted)
            i++;
        dest[n++] = p[i];
    }
    dest[n] = '\0';
    self->arena_len -= (quoted - 1) - (n + 1);
    param->type = EVR_PARAM_STR;
    param->s = dest;
    param->s_len = n;
    return 0;
}

//  --------------------------------------------------------------------------
//  Parse one legacy text datagram. The last byte is the newline of the
//  closing empty line; every line between the name and it is a param, so
//  an empty line before the end is an empty positional value (OpenSIPS
//  writes one that way). A line is "name::value" when it holds "::",
//  except a line that is a whole quoted value. Returns EVR_AGENT_OK or a
//  reason.

evr_agent_rc_t evr_agent_parse_legacy(evr_agent_parser_t *self,
                                      const char *data, size_t len,
                                      evr_agent_msg_t *msg)
{
    assert(self);
    assert(data || len == 0);
    assert(msg);
    memset(msg, 0, sizeof(*msg));
    msg->legacy = true;
    if (s_begin(self, len))
        return EVR_AGENT_TOO_LARGE;
    const char *nl = len ? memchr(data, '\n', len) : NULL;
    if (!nl)
        return EVR_AGENT_BAD_LEGACY;
    if (!s_name_valid(data, (size_t)(nl - data)))
        return EVR_AGENT_BAD_NAME;
    const char *last = data + len - 1; //  the closing empty line
    if (nl == last || *last != '\n')
        return EVR_AGENT_BAD_LEGACY;
    char *name = s_arena_copy(self, data, (size_t)(nl - data));
    if (!name)
        return EVR_AGENT_TOO_LARGE;
    const char *p = nl + 1;
    size_t nparams = 0;
    evr_agent_rc_t semantic = EVR_AGENT_OK;
    while (p < last) {
        evr_param_t scratch, *param = &scratch;
        memset(&scratch, 0, sizeof(scratch));
        if (nparams < self->max_params) {
            param = s_param_push(self, &nparams);
            if (!param)
                return EVR_AGENT_TOO_LARGE;
        } else
            semantic = EVR_AGENT_BAD_PARAMS;
        size_t quoted = s_legacy_quoted_len(p, (size_t)(last - p));
        nl = memchr(p, '\n', (size_t)(last - p) + 1); //  found: *last
        if (!quoted) {
            //  "name::" when "::" comes before the line's end
            for (const char *c = p; c + 1 < nl; c++) {
                if (c[0] == ':' && c[1] == ':') {
                    if (memchr(p, '\0', (size_t)(c - p)))
                        semantic = EVR_AGENT_BAD_PARAMS;
                    param->name = s_arena_copy(self, p, (size_t)(c - p));
                    if (!param->name)
                        return EVR_AGENT_TOO_LARGE;
                    param->name_len = (size_t)(c - p);
                    p = c + 2;
                    break;
                }
            }
            quoted = s_legacy_quoted_len(p, (size_t)(last - p));
        }
        if (quoted) {
            if (s_legacy_unquote(self, p, quoted, param))
                return EVR_AGENT_TOO_LARGE;
            p += quoted + 1;
            continue;
        }
        if (nl == last)
            return EVR_AGENT_BAD_LEGACY; //  no empty line at the end
        size_t n = (size_t)(nl - p);
        if (!self->legacy_strings && s_canonical_int(p, n, &param->i) == 0)
            param->type = EVR_PARAM_INT;
        else {
            param->type = EVR_PARAM_STR;
            if (!(param->s = s_arena_copy(self, p, n)))
                return EVR_AGENT_TOO_LARGE;
            param->s_len = n;
        }
        p = nl + 1;
    }
    if (semantic != EVR_AGENT_OK)
        return semantic;
    msg->event.name = name;
    msg->event.name_len = strlen(name);
    msg->event.params = nparams ? self->params : NULL;
    msg->event.nparams = nparams;
    return EVR_AGENT_OK;
}

//  --------------------------------------------------------------------------
//  Parse one datagram: JSON-RPC when it starts with '{', else legacy text.

evr_agent_rc_t evr_agent_parse_datagram(evr_agent_parser_t *self,
                                        const char *data, size_t len,
                                        evr_agent_msg_t *msg)
{
    if (len > 0 && data[0] == '{')
        return evr_agent_parse_jsonrpc(self, data, len, msg);
    return evr_agent_parse_legacy(self, data, len, msg);
}

//  ==========================================================================
//  Stream framing

//  --------------------------------------------------------------------------
//  Forget the framer's state.

void evr_agent_framer_reset(evr_agent_framer_t *framer)
{
    assert(framer);
    memset(framer, 0, sizeof(*framer));
}

//  --------------------------------------------------------------------------
//  Find the end of the first object of data[0..len), resuming the scan
//  where the previous call stopped. See the header for the results.

evr_agent_rc_t evr_agent_framer_next(evr_agent_framer_t *framer,
                                     const char *data, size_t len, size_t *skip,
                                     size_t *end)
{
    assert(framer);
    assert(data || len == 0);
    assert(skip && end);
    size_t i = framer->scanned;
    if (!framer->started) {
        while (i < len && (data[i] == ' ' || data[i] == '\t' ||
                           data[i] == '\n' || data[i] == '\r'))
            i++;
        framer->scanned = i;
        if (i == len) {
            *skip = i;
            return EVR_AGENT_INCOMPLETE;
        }
        if (data[i] != '{')
            return EVR_AGENT_BAD_JSON;
        framer->started = true;
    }
    //  the object starts at the first byte that is not whitespace
    size_t start = 0;
    while (data[start] == ' ' || data[start] == '\t' || data[start] == '\n' ||
           data[start] == '\r')
        start++;
    for (; i < len; i++) {
        char c = data[i];
        if (framer->in_string) {
            if (framer->escape)
                framer->escape = false;
            else if (c == '\\')
                framer->escape = true;
            else if (c == '"')
                framer->in_string = false;
        } else if (c == '"')
            framer->in_string = true;
        else if (c == '{' || c == '[')
            framer->depth++;
        else if ((c == '}' || c == ']') && framer->depth > 0 &&
                 --framer->depth == 0) {
            framer->scanned = i + 1;
            *skip = start;
            *end = i + 1;
            return EVR_AGENT_OK;
        }
    }
    framer->scanned = len;
    *skip = start;
    return EVR_AGENT_INCOMPLETE;
}

//  ==========================================================================
//  Netstrings (Kamailio evapi)

//  --------------------------------------------------------------------------
//  Find the first netstring "LEN:DATA," of data[0..len). See the header
//  for the results.

evr_agent_rc_t evr_agent_netstring_next(const char *data, size_t len,
                                        size_t max, size_t *start, size_t *end)
{
    assert(data || len == 0);
    assert(start && end);
    size_t i = 0, value = 0;
    while (i < len && data[i] >= '0' && data[i] <= '9') {
        if (i > 0 && data[0] == '0')
            return EVR_AGENT_BAD_FRAME; //  a leading zero
        value = value * 10 + (size_t)(data[i] - '0');
        if (value > max)
            return EVR_AGENT_TOO_LARGE;
        i++;
    }
    if (i == len)
        return i > 20 ? EVR_AGENT_BAD_FRAME : EVR_AGENT_INCOMPLETE;
    if (i == 0 || data[i] != ':')
        return EVR_AGENT_BAD_FRAME;
    i++;
    if (len - i < value + 1)
        return EVR_AGENT_INCOMPLETE;
    if (data[i + value] != ',')
        return EVR_AGENT_BAD_FRAME;
    *start = i;
    *end = i + value;
    return EVR_AGENT_OK;
}
