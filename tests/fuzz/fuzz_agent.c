/*  fuzz_agent.c - libFuzzer target for evr_agent_parse (what evrelay-agent
    reads from OpenSIPS).

    The first byte picks a mode, the rest is the input:
      0: a datagram (JSON-RPC or legacy text), default options;
      1: a JSON-RPC object with event_param "event" and max_params 4;
      2: a datagram with legacy_strings;
      3: a stream: framed all at once and byte by byte, which must find
         the same objects; each is parsed;
      4: Kamailio evapi netstrings: split all at once and byte by byte,
         which must find the same payloads; each is parsed as a datagram.
    Any input must parse or fail with a known reason. An accepted event must
    be well formed (valid name, NUL-terminated names and values, params
    within the bound), and must survive a round trip: encoded by the
    relay's own encoder (JSON-RPC, or legacy text for legacy input) and
    parsed again, it must come back equal. abort() otherwise.
*/
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evr_agent_parse.h"
#include "evr_payload.h"

//  Abort with a message.
static void s_fail(const char *what)
{
    fprintf(stderr, "fuzz_agent: %s\n", what);
    abort();
}

//  Abort unless the message is a well-formed event within max_params.
static void s_check_msg(const evr_agent_msg_t *msg, size_t max_params)
{
    const evr_event_view_t *ev = &msg->event;
    if (!ev->name || ev->name_len == 0 || ev->name_len > 64 ||
        strlen(ev->name) != ev->name_len)
        s_fail("bad event name");
    for (size_t i = 0; i < ev->name_len; i++)
        if (ev->name[i] <= ' ' || ev->name[i] > '~')
            s_fail("bad byte in event name");
    if (ev->nparams > max_params || (ev->nparams && !ev->params) ||
        (!ev->nparams && ev->params))
        s_fail("bad params count");
    bool named = ev->nparams && ev->params[0].name;
    for (size_t i = 0; i < ev->nparams; i++) {
        const evr_param_t *param = &ev->params[i];
        //  JSON params are an object or an array; legacy lines are named
        //  one by one, so they may mix
        if (!msg->legacy && (param->name != NULL) != named)
            s_fail("named and positional params mixed");
        if (param->name && strlen(param->name) != param->name_len)
            s_fail("param name not NUL-terminated at its length");
        if (param->type == EVR_PARAM_STR &&
            (!param->s || param->s[param->s_len] != '\0'))
            s_fail("string value not NUL-terminated");
        if (param->type != EVR_PARAM_STR && param->type != EVR_PARAM_INT &&
            param->type != EVR_PARAM_NULL)
            s_fail("bad param type");
    }
    if (msg->id && msg->id_len == 0)
        s_fail("empty id");
}

//  True if two events are equal.
static bool s_same(const evr_event_view_t *a, const evr_event_view_t *b)
{
    if (a->name_len != b->name_len || memcmp(a->name, b->name, a->name_len) ||
        a->nparams != b->nparams)
        return false;
    for (size_t i = 0; i < a->nparams; i++) {
        const evr_param_t *x = &a->params[i], *y = &b->params[i];
        if ((x->name == NULL) != (y->name == NULL) || x->type != y->type)
            return false;
        if (x->name && (x->name_len != y->name_len ||
                        memcmp(x->name, y->name, x->name_len)))
            return false;
        if (x->type == EVR_PARAM_INT && x->i != y->i)
            return false;
        if (x->type == EVR_PARAM_STR &&
            (x->s_len != y->s_len || memcmp(x->s, y->s, x->s_len)))
            return false;
    }
    return true;
}

//  Copy an event view's strings and params into one block, so it survives
//  the next parse. Returns the copy (free it), or NULL.
static evr_event_view_t *s_copy(const evr_event_view_t *ev)
{
    size_t size = sizeof(evr_event_view_t) + ev->name_len + 1 +
                  ev->nparams * sizeof(evr_param_t);
    for (size_t i = 0; i < ev->nparams; i++)
        size += ev->params[i].name_len + 1 + ev->params[i].s_len + 1;
    evr_event_view_t *copy = malloc(size);
    if (!copy)
        return NULL;
    evr_param_t *params = (evr_param_t *)(copy + 1);
    char *tail = (char *)(params + ev->nparams);
    memcpy(tail, ev->name, ev->name_len + 1);
    copy->name = tail;
    copy->name_len = ev->name_len;
    tail += ev->name_len + 1;
    for (size_t i = 0; i < ev->nparams; i++) {
        params[i] = ev->params[i];
        if (ev->params[i].name) {
            memcpy(tail, ev->params[i].name, ev->params[i].name_len + 1);
            params[i].name = tail;
            tail += ev->params[i].name_len + 1;
        }
        if (ev->params[i].type == EVR_PARAM_STR) {
            memcpy(tail, ev->params[i].s, ev->params[i].s_len + 1);
            params[i].s = tail;
            tail += ev->params[i].s_len + 1;
        }
    }
    copy->params = ev->nparams ? params : NULL;
    copy->nparams = ev->nparams;
    return copy;
}

//  Encode the accepted message again and parse the result: it must give
//  back the same event.
static void s_round_trip(evr_agent_parser_t *parser, const evr_agent_msg_t *msg,
                         const char *event_param)
{
    evr_event_view_t *before = s_copy(&msg->event);
    if (!before)
        return;
    evr_buf_t buf = {0};
    evr_jsonrpc_opts_t opts = {.event_param = event_param};
    int rc = msg->legacy ? evr_payload_legacy(&buf, before)
                         : evr_payload_jsonrpc(&buf, before, &opts);
    if (rc == 0) {
        evr_agent_msg_t again;
        evr_agent_rc_t parsed =
            msg->legacy
                ? evr_agent_parse_legacy(parser, buf.data, buf.len, &again)
                : evr_agent_parse_jsonrpc(parser, buf.data, buf.len, &again);
        if (parsed != EVR_AGENT_OK) {
            fprintf(stderr, "re-encoded '%.*s': %s\n", (int)buf.len, buf.data,
                    evr_agent_rc_name(parsed));
            s_fail("re-encoded event refused");
        }
        if (!s_same(before, &again.event)) {
            fprintf(stderr, "re-encoded '%.*s'\n", (int)buf.len, buf.data);
            s_fail("re-encoded event differs");
        }
    }
    evr_buf_free(&buf);
    free(before);
}

//  Parse one input in one mode and check the result.
static void s_parse(const char *data, size_t len, int mode)
{
    evr_agent_parse_opts_t opts = {0};
    size_t max_params = 128;
    if (mode == 1) {
        opts.event_param = "event";
        opts.max_params = max_params = 4;
    }
    opts.legacy_strings = mode == 2;
    evr_agent_parser_t *parser = evr_agent_parser_new(&opts);
    if (!parser)
        return;
    evr_agent_msg_t msg;
    evr_agent_rc_t rc = mode == 1
                            ? evr_agent_parse_jsonrpc(parser, data, len, &msg)
                            : evr_agent_parse_datagram(parser, data, len, &msg);
    if (rc == EVR_AGENT_OK) {
        s_check_msg(&msg, max_params);
        s_round_trip(parser, &msg, opts.event_param);
    } else if (rc == EVR_AGENT_INCOMPLETE || rc >= EVR_AGENT_RC_COUNT ||
               strcmp(evr_agent_rc_name(rc), "unknown") == 0)
        s_fail("parse returned no reason");
    evr_agent_parser_destroy(&parser);
}

//  Frame a stream: with step 0 all at once, else step bytes at a time.
//  Writes the objects' end offsets (in the whole stream) to ends[] and
//  returns how many, or -1 when the stream broke (not an object).
static int s_frame(const char *data, size_t len, size_t step, size_t *ends,
                   int max_ends)
{
    evr_agent_framer_t framer;
    evr_agent_framer_reset(&framer);
    size_t base = 0; //  the buffer starts here in the stream
    size_t avail = step ? 0 : len;
    int count = 0;
    while (true) {
        size_t skip = 0, end = 0;
        evr_agent_rc_t rc = evr_agent_framer_next(&framer, data + base,
                                                  avail - base, &skip, &end);
        if (rc == EVR_AGENT_BAD_JSON)
            return -1;
        if (rc == EVR_AGENT_OK) {
            if (count < max_ends)
                ends[count] = base + end;
            count++;
            base += end;
            evr_agent_framer_reset(&framer);
            continue;
        }
        if (rc != EVR_AGENT_INCOMPLETE)
            s_fail("framer returned another reason");
        if (skip && !framer.started) {
            base += skip;
            evr_agent_framer_reset(&framer);
        }
        if (avail == len)
            return count;
        avail = avail + step < len ? avail + step : len;
    }
}

//  Mode 3: frame the stream two ways and parse what was framed.
static void s_stream(const char *data, size_t len)
{
    size_t ends_a[64], ends_b[64];
    int a = s_frame(data, len, 0, ends_a, 64);
    int b = s_frame(data, len, 1, ends_b, 64);
    if (a != b)
        s_fail("framing depends on how the bytes arrive");
    for (int i = 0; i < a && i < 64; i++)
        if (ends_a[i] != ends_b[i])
            s_fail("object boundaries depend on how the bytes arrive");
    size_t start = 0;
    for (int i = 0; i < a && i < 64; i++) {
        s_parse(data + start, ends_a[i] - start, 0);
        start = ends_a[i];
    }
}

//  Split netstrings: with step 0 all at once, else step bytes at a time.
//  Writes the payloads' (start, end) offsets to spans[] and returns how
//  many, or -1 when the stream broke.
static int s_netstrings(const char *data, size_t len, size_t step,
                        size_t (*spans)[2], int max_spans)
{
    size_t base = 0, avail = step ? 0 : len;
    int count = 0;
    while (true) {
        size_t start = 0, end = 0;
        evr_agent_rc_t rc = evr_agent_netstring_next(data + base, avail - base,
                                                     4096, &start, &end);
        if (rc == EVR_AGENT_OK) {
            if (end < start || base + end >= avail)
                s_fail("netstring payload out of the buffer");
            if (count < max_spans) {
                spans[count][0] = base + start;
                spans[count][1] = base + end;
            }
            count++;
            base += end + 1;
            continue;
        }
        if (rc == EVR_AGENT_BAD_FRAME || rc == EVR_AGENT_TOO_LARGE)
            return -1;
        if (rc != EVR_AGENT_INCOMPLETE)
            s_fail("netstring returned another reason");
        if (avail == len)
            return count;
        avail = avail + step < len ? avail + step : len;
    }
}

//  Mode 4: netstrings two ways, then parse each payload.
static void s_evapi(const char *data, size_t len)
{
    size_t a_spans[64][2], b_spans[64][2];
    int a = s_netstrings(data, len, 0, a_spans, 64);
    int b = s_netstrings(data, len, 1, b_spans, 64);
    //  a broken frame may show up later when the bytes come one by one
    //  (a length that only turns out too large or unterminated), but what
    //  was found before it must agree
    int n = a < b ? a : b;
    if (n < 0)
        n = 0;
    for (int i = 0; i < n && i < 64; i++)
        if (a_spans[i][0] != b_spans[i][0] || a_spans[i][1] != b_spans[i][1])
            s_fail("netstring boundaries depend on how the bytes arrive");
    for (int i = 0; i < a && i < 64; i++)
        s_parse(data + a_spans[i][0], a_spans[i][1] - a_spans[i][0], 0);
}

//  One input: the first byte picks the mode.
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int mode = data[0] % 5;
    //  a private copy, so reads past the end are caught
    char *copy = malloc(size - 1 ? size - 1 : 1);
    if (!copy)
        return 0;
    memcpy(copy, data + 1, size - 1);
    if (mode == 3)
        s_stream(copy, size - 1);
    else if (mode == 4)
        s_evapi(copy, size - 1);
    else
        s_parse(copy, size - 1, mode);
    free(copy);
    return 0;
}
