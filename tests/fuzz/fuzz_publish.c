/*  fuzz_publish.c - libFuzzer target for the relay's decode path.

    Feeds arbitrary bytes to the Publish and ControlRequest decoders, and
    every event that decodes through evr_decode_event and all three payload
    encoders, as the relay's ingest does, then adds an event id to each
    encoding (evid: targets), which must always succeed. Also parses a control request's
    params_json with jansson, as the control socket does.
*/
#include "evr_decode.h"
#include "evr_payload.h"
#include "evrelay.pb-c.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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

//  One fuzz input.
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static evr_param_t params[128];
    evr_buf_t buf = {0};
    Evrelay__Publish *pub = evrelay__publish__unpack(NULL, size, data);
    for (size_t i = 0; pub && i < pub->n_events; i++) {
        evr_event_view_t view;
        if (evr_decode_event(pub->events[i], params, 128, &view))
            continue;
        evr_buf_reset(&buf);
        evr_payload_jsonrpc(&buf, &view, NULL);
        evr_jsonrpc_opts_t opts = {.id = 7, .event_param = "ev"};
        evr_payload_jsonrpc(&buf, &view, &opts);
        evr_payload_legacy(&buf, &view);
        evr_payload_flatstore(&buf, &view, ",", false);
        evr_payload_flatstore(&buf, &view, "|;", true);
        s_add_ids(&view);
    }
    if (pub)
        evrelay__publish__free_unpacked(pub, NULL);
    Evrelay__ControlRequest *req =
        evrelay__control_request__unpack(NULL, size, data);
    if (req && req->params_json) {
        json_t *json = json_loads(req->params_json, JSON_DECODE_ANY, NULL);
        json_decref(json);
    }
    if (req)
        evrelay__control_request__free_unpacked(req, NULL);
    evr_buf_free(&buf);
    return 0;
}
