/*  evr_decode.h - turn a decoded protobuf Event into an event view.

    Pure module shared by the relay's ingest path and the fuzz target: it
    checks the event against the limits (name, param count) and builds the
    borrowed evr_event_view_t the payload encoders read.
*/
#ifndef EVR_DECODE_H_INCLUDED
#define EVR_DECODE_H_INCLUDED

#include "evr_event.h"
#include "evrelay.pb-c.h"

//  Why an event was refused (evr_decode_event's return values).
typedef enum {
    EVR_DECODE_OK = 0,
    EVR_DECODE_BAD_NAME = -1,       //  not 1..64 printable non-space chars
    EVR_DECODE_TOO_MANY_PARAMS = -2 //  more than max_params params
} evr_decode_result_t;

//  Fill view (and params, room for max_params entries) from e. Returns
//  EVR_DECODE_OK (0), or the first rule e breaks, checked in this order:
//  EVR_DECODE_BAD_NAME, EVR_DECODE_TOO_MANY_PARAMS (both negative).
int evr_decode_event(const Evrelay__Event *e, evr_param_t *params,
                     size_t max_params, evr_event_view_t *view);

#endif
