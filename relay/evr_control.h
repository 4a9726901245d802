/*  evr_control.h - the MI commands, one implementation for every face.

    Takes an OpenSIPS MI method (3.x and 4.x names are aliases of evrelay's
    own) with JSON-RPC params (positional array or named object) and
    answers a JSON result in the MI shapes, or an MI error. The control
    socket uses it through evr_control_frame; later faces (HTTP MI) call
    evr_control_call directly.
*/
#ifndef EVR_CONTROL_H_INCLUDED
#define EVR_CONTROL_H_INCLUDED

#include "evr_mi.h"
#include "evr_relay.h"
#include "evr_stats.h"
#include <jansson.h>

//  Run one command. Returns the result (new reference), or NULL with *error
//  filled in. params may be NULL (no params).
json_t *evr_control_call(evr_relay_t *relay, const char *method, json_t *params,
                         evr_mi_error_t *error);

//  Answer one ControlRequest frame: decode, run, encode the ControlReply.
//  Returns a malloc'd reply in *reply / *reply_len (always, even for a
//  frame that does not decode). Counts into *stats.
void evr_control_frame(evr_relay_t *relay, const void *frame, size_t len,
                       size_t max_len, evr_control_stats_t *stats, void **reply,
                       size_t *reply_len);

#endif
