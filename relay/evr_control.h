/*  evr_control.h - the MI commands, one implementation for every face.

    Takes an OpenSIPS MI method (3.x and 4.x names are aliases of evrelay's
    own) with JSON-RPC params (positional array or named object) and
    answers a JSON result in the MI shapes, or an MI error. Both faces use
    it through evr_control_frame: the control socket and the HTTP face
    (whose requests reach the core as ControlRequest frames too).

    Every call names its caller, the operator `who`: the control socket's
    ZAP User-Id (CURVE) or EVR_POLICY_LOCAL, the HTTP face's authenticated
    name or EVR_POLICY_LOCAL. The relay's access policy (evr_policy.h)
    decides whether who may run the method's action, and a subscribe's
    socket must pass the destination allowlist; a refusal is MI error 403
    "Forbidden" with the refusing rule named in its data, counted in the
    policy stats.
*/
#ifndef EVR_CONTROL_H_INCLUDED
#define EVR_CONTROL_H_INCLUDED

#include "evr_mi.h"
#include "evr_relay.h"
#include "evr_stats.h"
#include <jansson.h>

//  Run one command for operator who (NULL: EVR_POLICY_LOCAL). Returns the
//  result (new reference), or NULL with *error filled in. params may be
//  NULL (no params).
json_t *evr_control_call(evr_relay_t *relay, const char *who,
                         const char *method, json_t *params,
                         evr_mi_error_t *error);

//  Answer one ControlRequest frame of operator who (NULL:
//  EVR_POLICY_LOCAL): decode, run, encode the ControlReply. Returns a
//  malloc'd reply in *reply / *reply_len (always, even for a frame that
//  does not decode). Counts into *stats.
void evr_control_frame(evr_relay_t *relay, const char *who, const void *frame,
                       size_t len, size_t max_len, evr_control_stats_t *stats,
                       void **reply, size_t *reply_len);

//  Answer a ControlRequest frame with 403 Forbidden (why: the detail)
//  without running it.
void evr_control_refuse(const void *frame, size_t len, const char *why,
                        evr_control_stats_t *stats, void **reply,
                        size_t *reply_len);

#endif
