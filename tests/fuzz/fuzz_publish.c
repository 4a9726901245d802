/*  fuzz_publish.c - libFuzzer target for the relay's ingest decode path.

    Feeds arbitrary bytes to evr_decode_publish twice, as the relay's
    ingest does (into its arena) and with malloc (so AddressSanitizer sees
    every block on its own); both must agree. Every event of an accepted
    batch goes through evr_decode_event and all three payload encoders,
    then gets an event id added to each encoding (evid: targets), which
    must always succeed. abort() otherwise.
*/
#include "evr_decode.h"
#include "evr_defaults.h"
#include "evr_payload.h"
#include "evrelay.pb-c.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

//  The relay's default frame bound and param limit.
#define S_MAX_FRAME EVR_DEFAULT_MAX_FRAME_BYTES
#define S_MAX_PARAMS EVR_DEFAULT_MAX_PARAMS

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

//  Every encoding of an event must take its event id (evid: targets):
//  abort when one of them is refused.
static void s_add_ids(const evr_event_view_t *view)
{
    static const char *id = "00ff-1-2";
    char name[65];
    snprintf(name, sizeof name, "%.*s", (int)view->name_len, view->name);
    evr_buf_t plain = {0}, out = {0};
    if (evr_payload_jsonrpc(&plain, view, NULL) == 0 &&
        evr_payload_jsonrpc_add_id(&out, plain.data, plain.len, id))
        abort();
    evr_buf_reset(&plain);
    if (evr_payload_legacy(&plain, view) == 0 &&
        evr_payload_legacy_add_id(&out, plain.data, plain.len, id))
        abort();
    evr_buf_reset(&plain);
    if (evr_payload_flatstore(&plain, view, "|;", false) == 0 &&
        evr_payload_flatstore_add_id(&out, plain.data, plain.len, name, "|;",
                                     false, id))
        abort();
    evr_buf_free(&plain);
    evr_buf_free(&out);
}

//  Decode and encode every event of an accepted batch.
static void s_events(const Evrelay__Publish *pub)
{
    static evr_param_t params[S_MAX_PARAMS];
    evr_buf_t buf = {0};
    for (size_t i = 0; i < pub->n_events; i++) {
        evr_event_view_t view;
        if (evr_decode_event(pub->events[i], params, S_MAX_PARAMS, &view))
            continue;
        if (view.nparams > S_MAX_PARAMS || !view.name || !view.name_len)
            abort();
        evr_buf_reset(&buf);
        evr_payload_jsonrpc(&buf, &view, NULL);
        evr_jsonrpc_opts_t opts = {.id = 7, .event_param = "ev"};
        evr_payload_jsonrpc(&buf, &view, &opts);
        evr_payload_legacy(&buf, &view);
        evr_payload_flatstore(&buf, &view, ",", false);
        evr_payload_flatstore(&buf, &view, "|;", true);
        s_add_ids(&view);
    }
    evr_buf_free(&buf);
}

//  One fuzz input.
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static evr_arena_t arena;
    static int ready;
    if (!ready) {
        evr_arena_init(&arena);
        ready = 1;
    }
    Evrelay__Publish *in_arena, *in_heap;
    evr_decode_rc_t a =
        evr_decode_publish(data, size, S_MAX_FRAME, &arena.pb, &in_arena);
    evr_decode_rc_t b =
        evr_decode_publish(data, size, S_MAX_FRAME, NULL, &in_heap);
    if (a != b || (in_arena == NULL) != (in_heap == NULL))
        abort();
    if (b == EVR_DECODE_OK) {
        if (in_heap->n_events != in_arena->n_events)
            abort();
        s_events(in_heap);
    }
    if (in_heap)
        evrelay__publish__free_unpacked(in_heap, NULL);
    evr_arena_reset(&arena);
    return 0;
}
