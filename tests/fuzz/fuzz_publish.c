/*  fuzz_publish.c - libFuzzer target for the relay's decode path.

    Feeds arbitrary bytes to the Publish and ControlRequest decoders, and
    every event that decodes through evr_decode_event and all three payload
    encoders, as the relay's ingest does. Also parses a control request's
    params_json with jansson, as the control socket does.
*/
#include "evr_decode.h"
#include "evr_payload.h"
#include "evrelay.pb-c.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
