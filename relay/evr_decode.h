/*  evr_decode.h - turn a decoded protobuf Event into an event view.

    Pure module shared by the relay's ingest path and the fuzz target: it
    checks the event against the limits (name, param count) and builds the
    borrowed evr_event_view_t the payload encoders read.
*/
#ifndef EVR_DECODE_H_INCLUDED
#define EVR_DECODE_H_INCLUDED

#include "evr_event.h"
#include "evrelay.pb-c.h"

//  Fill view (and params, room for max_params entries) from e. Returns 0,
//  or -1 when the name is invalid or e has more than max_params params.
int evr_decode_event(const Evrelay__Event *e, evr_param_t *params,
                     size_t max_params, evr_event_view_t *view);

#endif
