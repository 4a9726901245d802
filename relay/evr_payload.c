/*  evr_payload.c - payload encoders, byte-compatible with OpenSIPS.

    Pure module (no I/O). See evr_payload.h for the formats. Every encoder
    appends to an evr_buf_t; on failure (out of memory) it returns -1 and
    leaves the buffer exactly as it found it (len rolled back).

    Speed notes: this runs once per event and format. Capacity is reserved
    up front from an estimate of the output size, plain runs of bytes are
    copied with memcpy, and the JSON string scanner tests eight bytes at a
    time before it looks at single bytes.
*/
#include "evr_payload.h"

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

//  The capacity a buffer gets on its first allocation.
#define EVR_BUF_MIN_CAP 64

//  Room a decimal int64/uint64 needs: sign + 20 digits.
#define EVR_INT_MAX_CHARS 21

//  Append a string literal (its size is known at compile time).
#define s_append_lit(buf, lit) evr_buf_append((buf), (lit), sizeof(lit) - 1)

//  What each byte becomes inside a JSON string literal, as cJSON prints
//  it: 0 = the byte itself; 'u' = \u00xx; any other value c = backslash
//  followed by c.
// clang-format off
static const char s_json_escape[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', //  0x00 - 0x07
    'b', 't', 'n', 'u', 'f', 'r', 'u', 'u', //  0x08 - 0x0f
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', //  0x10 - 0x17
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', //  0x18 - 0x1f
    ['"'] = '"',
    ['\\'] = '\\'};
// clang-format on

static const char s_hex_digits[] = "0123456789abcdef";

//  --------------------------------------------------------------------------
//  Grow the buffer so it has room for extra more bytes: doubles the
//  capacity until it fits. Returns 0, or -1 when out of memory or when the
//  size would pass PTRDIFF_MAX (no object may be that big; refusing it
//  early also keeps absurd sizes away from realloc). The buffer is
//  unchanged on failure.

static int s_grow(evr_buf_t *buf, size_t extra)
{
    if (extra > (size_t)PTRDIFF_MAX - buf->len)
        return -1;
    size_t need = buf->len + extra;
    size_t cap = buf->cap < EVR_BUF_MIN_CAP ? EVR_BUF_MIN_CAP : buf->cap;
    while (cap < need) {
        if (cap > (size_t)PTRDIFF_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *data = realloc(buf->data, cap);
    if (!data)
        return -1;
    buf->data = data;
    buf->cap = cap;
    return 0;
}

//  --------------------------------------------------------------------------
//  Make sure extra more bytes fit; the common case is one compare.

static inline int s_reserve(evr_buf_t *buf, size_t extra)
{
    if (extra <= buf->cap - buf->len)
        return 0;
    return s_grow(buf, extra);
}

//  --------------------------------------------------------------------------
//  Add two sizes, saturating at SIZE_MAX (used for capacity estimates).

static inline size_t s_add(size_t a, size_t b)
{
    return b > SIZE_MAX - a ? SIZE_MAX : a + b;
}

//  --------------------------------------------------------------------------
//  Empty the buffer, keeping its memory.

void evr_buf_reset(evr_buf_t *buf)
{
    assert(buf);
    buf->len = 0;
}

//  --------------------------------------------------------------------------
//  Release the buffer's memory and leave it empty and reusable.

void evr_buf_free(evr_buf_t *buf)
{
    assert(buf);
    free(buf->data);
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}

//  --------------------------------------------------------------------------
//  Append len bytes. Returns 0, or -1 when out of memory.

int evr_buf_append(evr_buf_t *buf, const void *data, size_t len)
{
    assert(buf);
    assert(data || len == 0);
    if (len == 0)
        return 0;
    if (s_reserve(buf, len))
        return -1;
    memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    return 0;
}

//  --------------------------------------------------------------------------
//  Append one byte. Returns 0 or -1.

static inline int s_append_char(evr_buf_t *buf, char c)
{
    if (s_reserve(buf, 1))
        return -1;
    buf->data[buf->len++] = c;
    return 0;
}

//  --------------------------------------------------------------------------
//  Append an unsigned decimal number, with a leading '-' when negative is
//  set. Returns 0 or -1.

static int s_append_decimal(evr_buf_t *buf, uint64_t value, bool negative)
{
    char tmp[EVR_INT_MAX_CHARS];
    char *p = tmp + sizeof(tmp);
    do {
        *--p = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    if (negative)
        *--p = '-';
    return evr_buf_append(buf, p, (size_t)(tmp + sizeof(tmp) - p));
}

//  --------------------------------------------------------------------------
//  Append a signed 64-bit int in decimal (INT64_MIN included).
//  Returns 0 or -1.

static int s_append_int64(evr_buf_t *buf, int64_t value)
{
    if (value < 0)
        return s_append_decimal(buf, (uint64_t)0 - (uint64_t)value, true);
    return s_append_decimal(buf, (uint64_t)value, false);
}

//  --------------------------------------------------------------------------
//  Length of the leading run of p[0..n) that goes into a JSON string as
//  it is (no byte < 0x20, no '"', no '\\'). Whole 8-byte words are tested
//  at once; the classic "has a zero byte" / "has a byte less than" tricks
//  are exact about whether a word holds such a byte, and the byte loop
//  then finds where.

static inline size_t s_json_plain_run(const unsigned char *p, size_t n)
{
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t highs = 0x8080808080808080ULL;
    size_t i = 0;
    while (n - i >= 8) {
        uint64_t word;
        memcpy(&word, p + i, sizeof(word));
        uint64_t quote = word ^ (ones * '"');
        uint64_t bslash = word ^ (ones * '\\');
        uint64_t hits = ((word - ones * 0x20) & ~word) |
                        ((quote - ones) & ~quote) | ((bslash - ones) & ~bslash);
        if (hits & highs)
            break;
        i += 8;
    }
    while (i < n && !s_json_escape[p[i]])
        i++;
    return i;
}

//  --------------------------------------------------------------------------
//  Append s as a JSON string literal (with quotes), escaped as cJSON does.
//  Returns 0 or -1 (buffer unchanged on failure).

int evr_buf_append_json_string(evr_buf_t *buf, const char *s, size_t len)
{
    assert(buf);
    assert(s || len == 0);
    //  Invariant in the loop: room for the rest of the input as it is plus
    //  the closing quote. Each escape reserves its own extra bytes.
    if (len > SIZE_MAX - 2 || s_reserve(buf, len + 2))
        return -1;
    const size_t start = buf->len;
    //  an empty value may come as NULL (protobuf-c's empty bytes): no
    //  arithmetic on it
    const unsigned char *p = (const unsigned char *)(len ? s : "");
    const unsigned char *end = p + len;
    buf->data[buf->len++] = '"';
    while (p < end) {
        size_t run = s_json_plain_run(p, (size_t)(end - p));
        if (run) {
            memcpy(buf->data + buf->len, p, run);
            buf->len += run;
            p += run;
            if (p == end)
                break;
        }
        //  *p needs an escape: at most 6 bytes instead of 1
        if (s_reserve(buf, (size_t)(end - p) + 6)) {
            buf->len = start;
            return -1;
        }
        char *out = buf->data + buf->len;
        char esc = s_json_escape[*p];
        out[0] = '\\';
        if (esc == 'u') {
            out[1] = 'u';
            out[2] = '0';
            out[3] = '0';
            out[4] = s_hex_digits[*p >> 4];
            out[5] = s_hex_digits[*p & 0xf];
            buf->len += 6;
        } else {
            out[1] = esc;
            buf->len += 2;
        }
        p++;
    }
    buf->data[buf->len++] = '"';
    return 0;
}

//  --------------------------------------------------------------------------
//  Append one param value as JSON: number, string or null. A type that is
//  neither INT nor STR is printed as null (the view may come from the
//  network; never trust it enough to crash). Returns 0 or -1.

static int s_json_value(evr_buf_t *buf, const evr_param_t *param)
{
    switch (param->type) {
        case EVR_PARAM_INT:
            return s_append_int64(buf, param->i);
        case EVR_PARAM_STR:
            return evr_buf_append_json_string(buf, param->s, param->s_len);
        default:
            return s_append_lit(buf, "null");
    }
}

//  --------------------------------------------------------------------------
//  A rough size of the encoded event: names and values as they are plus
//  a fixed allowance per param. Used only to reserve capacity up front.

static size_t s_estimate(const evr_event_view_t *ev, size_t extra)
{
    size_t size = s_add(ev->name_len, extra);
    for (size_t index = 0; index < ev->nparams; index++) {
        const evr_param_t *param = &ev->params[index];
        size = s_add(size, param->name ? param->name_len : 0);
        size = s_add(size, param->type == EVR_PARAM_STR ? param->s_len : 0);
        size = s_add(size, EVR_INT_MAX_CHARS + 8);
    }
    return size;
}

//  --------------------------------------------------------------------------
//  Append the JSON-RPC 2.0 notification (or request, when opts->id is
//  set) for ev, exactly as OpenSIPS 3.1+ prints it with cJSON:
//
//    {"id":N,"jsonrpc":"2.0","method":"M","params":{...}|[...]}
//
//  - "id" only when opts->id != 0; "params" only when the event has params;
//  - params is an object when the FIRST param has a name, else an array.
//    OpenSIPS adds every param to that one container regardless of its own
//    name, and cJSON prints what it has: a later unnamed param inside an
//    object gets the key "" (cJSON prints a missing key as ""), and a later
//    named param inside an array is printed as its value only. We do the
//    same;
//  - opts->event_param (event_stream) goes first: as the key holding the
//    event name in an object, or as the event name string at the head of an
//    array; it is left out with the params when there are none.
//  Returns 0 or -1 (buffer unchanged on failure).

int evr_payload_jsonrpc(evr_buf_t *buf, const evr_event_view_t *ev,
                        const evr_jsonrpc_opts_t *opts)
{
    assert(buf);
    assert(ev);
    assert(ev->name || ev->name_len == 0);
    assert(ev->params || ev->nparams == 0);
    const size_t start = buf->len;
    const char *method = ev->name;
    size_t method_len = ev->name_len;
    const char *event_param = NULL;
    size_t event_param_len = 0;
    uint64_t id = 0;
    if (opts) {
        id = opts->id;
        if (opts->method) {
            method = opts->method;
            method_len = strlen(method);
        }
        if (opts->event_param) {
            event_param = opts->event_param;
            event_param_len = strlen(event_param);
        }
    }
    size_t fixed = s_add(method_len, 64);
    if (event_param)
        fixed = s_add(fixed, s_add(event_param_len, ev->name_len));
    if (s_reserve(buf, s_estimate(ev, fixed)))
        return -1;

    if (id) {
        if (s_append_lit(buf, "{\"id\":") || s_append_decimal(buf, id, false) ||
            s_append_lit(buf, ",\"jsonrpc\":\"2.0\",\"method\":"))
            goto failed;
    } else if (s_append_lit(buf, "{\"jsonrpc\":\"2.0\",\"method\":"))
        goto failed;
    if (evr_buf_append_json_string(buf, method, method_len))
        goto failed;

    if (ev->nparams > 0) {
        const bool is_object = ev->params[0].name != NULL;
        if (is_object ? s_append_lit(buf, ",\"params\":{")
                      : s_append_lit(buf, ",\"params\":["))
            goto failed;
        bool first = true;
        if (event_param) {
            if (is_object && (evr_buf_append_json_string(buf, event_param,
                                                         event_param_len) ||
                              s_append_char(buf, ':')))
                goto failed;
            if (evr_buf_append_json_string(buf, ev->name, ev->name_len))
                goto failed;
            first = false;
        }
        for (size_t index = 0; index < ev->nparams; index++) {
            const evr_param_t *param = &ev->params[index];
            if (!first && s_append_char(buf, ','))
                goto failed;
            first = false;
            if (is_object) {
                //  an unnamed param in an object: key "" (see above)
                if (evr_buf_append_json_string(
                        buf, param->name, param->name ? param->name_len : 0) ||
                    s_append_char(buf, ':'))
                    goto failed;
            }
            if (s_json_value(buf, param))
                goto failed;
        }
        if (s_append_char(buf, is_object ? '}' : ']'))
            goto failed;
    }
    if (s_append_char(buf, '}'))
        goto failed;
    return 0;

failed:
    buf->len = start;
    return -1;
}

//  --------------------------------------------------------------------------
//  The head every notification of evr_payload_jsonrpc (no opts) starts
//  with, and what introduces its params.

#define S_NOTIFY_HEAD "{\"jsonrpc\":\"2.0\",\"method\":"
#define S_PARAMS_KEY ",\"params\":"

//  --------------------------------------------------------------------------
//  Length of the JSON string literal at the start of p[0..n) (quotes
//  included), or 0 when p does not start with a complete one. Escapes are
//  skipped as pairs, so an escaped quote never ends the literal.

static size_t s_json_string_len(const char *p, size_t n)
{
    if (n < 2 || p[0] != '"')
        return 0;
    size_t i = 1;
    while (i < n) {
        if (p[i] == '\\')
            i += 2;
        else if (p[i] == '"')
            return i + 1;
        else
            i++;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Split a notification produced by evr_payload_jsonrpc (no opts):
//
//    {"jsonrpc":"2.0","method":  M  [ ,"params":  O  BODY  C ]  }
//
//  into the method literal M (quotes included), the container's opener O
//  (0 when there are no params) and BODY, its entries. Returns 0, or -1
//  when json is not of that shape.

static int s_split_notification(const char *json, size_t len,
                                const char **method_p, size_t *method_len_p,
                                char *opener_p, const char **body_p,
                                size_t *body_len_p)
{
    const size_t head_len = sizeof(S_NOTIFY_HEAD) - 1;
    const size_t key_len = sizeof(S_PARAMS_KEY) - 1;
    if (len < head_len || memcmp(json, S_NOTIFY_HEAD, head_len) != 0)
        return -1;
    const char *method = json + head_len;
    size_t method_len = s_json_string_len(method, len - head_len);
    if (method_len == 0)
        return -1;
    const char *rest = method + method_len;
    size_t rest_len = len - head_len - method_len;
    const char *body = NULL;
    size_t body_len = 0;
    char opener = 0;
    if (rest_len == 1 && rest[0] == '}') {
        //  no params
    } else if (rest_len >= key_len + 3 &&
               memcmp(rest, S_PARAMS_KEY, key_len) == 0 &&
               rest[rest_len - 1] == '}') {
        opener = rest[key_len];
        char closer = rest[rest_len - 2];
        if (!((opener == '{' && closer == '}') ||
              (opener == '[' && closer == ']')))
            return -1;
        body = rest + key_len + 1;
        body_len = rest_len - key_len - 3;
    } else
        return -1;
    *method_p = method;
    *method_len_p = method_len;
    *opener_p = opener;
    *body_p = body;
    *body_len_p = body_len;
    return 0;
}

//  --------------------------------------------------------------------------
//  Append the variant for opts of a notification produced by
//  evr_payload_jsonrpc (no opts), split by s_split_notification: M is the
//  method literal (kept as it is unless opts->method replaces it), O/C the
//  params container's brackets and BODY its entries, copied as they are
//  behind the id and the event_param entry. Returns 0 or -1 (out unchanged
//  on failure).

int evr_payload_jsonrpc_rewrite(evr_buf_t *out, const char *json, size_t len,
                                const char *event,
                                const evr_jsonrpc_opts_t *opts)
{
    assert(out);
    assert(json || len == 0);
    const char *method, *body;
    size_t method_len, body_len;
    char opener;
    if (s_split_notification(json, len, &method, &method_len, &opener, &body,
                             &body_len))
        return -1;

    uint64_t id = opts ? opts->id : 0;
    const char *event_param = opts ? opts->event_param : NULL;
    if (event_param && opener && !event)
        return -1;
    const size_t start = out->len;
    size_t estimate = s_add(len, 64);
    if (opts && opts->method)
        estimate = s_add(estimate, strlen(opts->method));
    if (event_param && opener)
        estimate = s_add(estimate, s_add(strlen(event_param), strlen(event)));
    if (s_reserve(out, estimate))
        return -1;

    if (id) {
        if (s_append_lit(out, "{\"id\":") || s_append_decimal(out, id, false) ||
            s_append_lit(out, ",\"jsonrpc\":\"2.0\",\"method\":"))
            goto failed;
    } else if (s_append_lit(out, S_NOTIFY_HEAD))
        goto failed;
    if (opts && opts->method ? evr_buf_append_json_string(out, opts->method,
                                                          strlen(opts->method))
                             : evr_buf_append(out, method, method_len))
        goto failed;
    if (opener) {
        if (s_append_lit(out, S_PARAMS_KEY) || s_append_char(out, opener))
            goto failed;
        if (event_param) {
            if (opener == '{' && (evr_buf_append_json_string(
                                      out, event_param, strlen(event_param)) ||
                                  s_append_char(out, ':')))
                goto failed;
            if (evr_buf_append_json_string(out, event, strlen(event)) ||
                (body_len && s_append_char(out, ',')))
                goto failed;
        }
        if (evr_buf_append(out, body, body_len) ||
            s_append_char(out, opener == '{' ? '}' : ']'))
            goto failed;
    }
    if (s_append_char(out, '}'))
        goto failed;
    return 0;

failed:
    out->len = start;
    return -1;
}

//  --------------------------------------------------------------------------
//  Append a legacy string value: as it is, or, when it holds a newline,
//  in double quotes with each inner '"' written as \" (backslashes are not
//  escaped: OpenSIPS <= 3.0 did not). Returns 0 or -1.

static int s_legacy_string(evr_buf_t *buf, const char *s, size_t len)
{
    if (len == 0 || !memchr(s, '\n', len))
        return evr_buf_append(buf, s, len);
    if (s_append_char(buf, '"'))
        return -1;
    const char *end = s + len;
    const char *quote;
    while ((quote = memchr(s, '"', (size_t)(end - s))) != NULL) {
        if (evr_buf_append(buf, s, (size_t)(quote - s)) ||
            s_append_lit(buf, "\\\""))
            return -1;
        s = quote + 1;
    }
    if (evr_buf_append(buf, s, (size_t)(end - s)) || s_append_char(buf, '"'))
        return -1;
    return 0;
}

//  --------------------------------------------------------------------------
//  Append the legacy (OpenSIPS <= 3.0) datagram text: "NAME\n", then per
//  param "name::value\n" (named) or "value\n" (unnamed), ints in decimal,
//  null as an empty value, then an empty line. Returns 0 or -1 (buffer
//  unchanged on failure).

int evr_payload_legacy(evr_buf_t *buf, const evr_event_view_t *ev)
{
    assert(buf);
    assert(ev);
    assert(ev->name || ev->name_len == 0);
    assert(ev->params || ev->nparams == 0);
    const size_t start = buf->len;
    if (s_reserve(buf, s_estimate(ev, 2)))
        return -1;
    if (evr_buf_append(buf, ev->name, ev->name_len) || s_append_char(buf, '\n'))
        goto failed;
    for (size_t index = 0; index < ev->nparams; index++) {
        const evr_param_t *param = &ev->params[index];
        if (param->name && (evr_buf_append(buf, param->name, param->name_len) ||
                            s_append_lit(buf, "::")))
            goto failed;
        int rc = 0;
        if (param->type == EVR_PARAM_INT)
            rc = s_append_int64(buf, param->i);
        else if (param->type == EVR_PARAM_STR)
            rc = s_legacy_string(buf, param->s, param->s_len);
        if (rc || s_append_char(buf, '\n'))
            goto failed;
    }
    if (s_append_char(buf, '\n'))
        goto failed;
    return 0;

failed:
    buf->len = start;
    return -1;
}

//  --------------------------------------------------------------------------
//  Append a flatstore string value, each occurrence of c in it replaced by
//  a space in the output (the input is never touched). c == '\0' (empty
//  delimiter) replaces nothing. Returns 0 or -1.

static int s_flatstore_string(evr_buf_t *buf, const char *s, size_t len, char c)
{
    if (len == 0)
        return 0;
    if (s_reserve(buf, len))
        return -1;
    char *out = buf->data + buf->len;
    memcpy(out, s, len);
    buf->len += len;
    if (c == '\0')
        return 0;
    char *end = out + len;
    while ((out = memchr(out, c, (size_t)(end - out))) != NULL)
        *out++ = ' ';
    return 0;
}

//  --------------------------------------------------------------------------
//  Append the flatstore line: NAME, then delimiter + value per param, then
//  "\n". suppress_name drops NAME and the first delimiter, so the line
//  starts with the first value. Values only, ints in decimal, null/empty
//  strings as empty fields, newlines written raw. delimiter NULL means the
//  OpenSIPS default ",". Returns 0 or -1 (buffer unchanged on failure).

int evr_payload_flatstore(evr_buf_t *buf, const evr_event_view_t *ev,
                          const char *delimiter, bool suppress_name)
{
    assert(buf);
    assert(ev);
    assert(ev->name || ev->name_len == 0);
    assert(ev->params || ev->nparams == 0);
    if (!delimiter)
        delimiter = ",";
    const size_t delimiter_len = strlen(delimiter);
    const size_t start = buf->len;
    size_t estimate = s_estimate(ev, 1);
    for (size_t index = 0; index < ev->nparams; index++)
        estimate = s_add(estimate, delimiter_len);
    if (s_reserve(buf, estimate))
        return -1;
    if (!suppress_name && evr_buf_append(buf, ev->name, ev->name_len))
        goto failed;
    for (size_t index = 0; index < ev->nparams; index++) {
        const evr_param_t *param = &ev->params[index];
        if ((index > 0 || !suppress_name) &&
            evr_buf_append(buf, delimiter, delimiter_len))
            goto failed;
        int rc = 0;
        if (param->type == EVR_PARAM_INT)
            rc = s_append_int64(buf, param->i);
        else if (param->type == EVR_PARAM_STR)
            rc = s_flatstore_string(buf, param->s, param->s_len, delimiter[0]);
        if (rc)
            goto failed;
    }
    if (s_append_char(buf, '\n'))
        goto failed;
    return 0;

failed:
    buf->len = start;
    return -1;
}

//  --------------------------------------------------------------------------
//  Append the notification json (from evr_payload_jsonrpc, no opts) with
//  the event id as its first param: "evrelay_id":ID first in an object,
//  ID first in an array, {"evrelay_id":ID} when it had no params. Returns
//  0 or -1 (out unchanged on failure).

int evr_payload_jsonrpc_add_id(evr_buf_t *out, const char *json, size_t len,
                               const char *id)
{
    assert(out);
    assert(id);
    assert(json || len == 0);
    const char *method, *body;
    size_t method_len, body_len;
    char opener;
    if (s_split_notification(json, len, &method, &method_len, &opener, &body,
                             &body_len))
        return -1;
    const size_t start = out->len;
    size_t id_len = strlen(id);
    if (s_reserve(out,
                  s_add(len, s_add(32, id_len > SIZE_MAX / 6 ? SIZE_MAX
                                                             : id_len * 6))))
        return -1;
    if (!opener)
        opener = '{';
    if (s_append_lit(out, S_NOTIFY_HEAD) ||
        evr_buf_append(out, method, method_len) ||
        s_append_lit(out, S_PARAMS_KEY) || s_append_char(out, opener) ||
        (opener == '{' && s_append_lit(out, "\"" EVR_PAYLOAD_ID_PARAM "\":")) ||
        evr_buf_append_json_string(out, id, id_len) ||
        (body_len && s_append_char(out, ',')) ||
        evr_buf_append(out, body, body_len) ||
        s_append_char(out, opener == '{' ? '}' : ']') ||
        s_append_char(out, '}'))
        goto failed;
    return 0;

failed:
    out->len = start;
    return -1;
}

//  --------------------------------------------------------------------------
//  Append the legacy text (from evr_payload_legacy) with the line
//  "evrelay_id::ID" as its first param, right after the name line. Returns
//  0 or -1 (out unchanged on failure).

int evr_payload_legacy_add_id(evr_buf_t *out, const char *text, size_t len,
                              const char *id)
{
    assert(out);
    assert(id);
    assert(text || len == 0);
    const char *newline = len ? memchr(text, '\n', len) : NULL;
    if (!newline)
        return -1;
    size_t head = (size_t)(newline - text) + 1;
    const size_t start = out->len;
    if (s_reserve(out, s_add(len, s_add(strlen(id), 16))) ||
        evr_buf_append(out, text, head) ||
        s_append_lit(out, EVR_PAYLOAD_ID_PARAM "::") ||
        s_legacy_string(out, id, strlen(id)) || s_append_char(out, '\n') ||
        evr_buf_append(out, text + head, len - head)) {
        out->len = start;
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Append the flatstore line (from evr_payload_flatstore with the same
//  delimiter and suppress_name; event is the event name) with the event
//  id as its first value. Returns 0 or -1 (out unchanged on failure).

int evr_payload_flatstore_add_id(evr_buf_t *out, const char *line, size_t len,
                                 const char *event, const char *delimiter,
                                 bool suppress_name, const char *id)
{
    assert(out);
    assert(id);
    assert(line || len == 0);
    if (!delimiter)
        delimiter = ",";
    const size_t delimiter_len = strlen(delimiter);
    size_t name_len = 0;
    if (!suppress_name) {
        name_len = event ? strlen(event) : 0;
        if (!event || len < name_len || memcmp(line, event, name_len) != 0)
            return -1;
    }
    if (len == 0 || len == name_len || line[len - 1] != '\n')
        return -1;
    //  the values after the name: "\n" alone when there are none
    const char *rest = line + name_len;
    size_t rest_len = len - name_len;
    const size_t start = out->len;
    if (s_reserve(out, s_add(len, s_add(strlen(id), 2 * delimiter_len))) ||
        evr_buf_append(out, line, name_len) ||
        (!suppress_name && evr_buf_append(out, delimiter, delimiter_len)) ||
        s_flatstore_string(out, id, strlen(id), delimiter[0]) ||
        (suppress_name && rest_len > 1 &&
         evr_buf_append(out, delimiter, delimiter_len)) ||
        evr_buf_append(out, rest, rest_len)) {
        out->len = start;
        return -1;
    }
    return 0;
}
