/*  evr_reply.h - a relay's ControlReply as evrelayctl shows it.

    Used by evrelayctl, and fuzzed (fuzz_reply): what a relay answers is
    input like any other. The result (JSON text) is printed as readable
    tables and "key  value" lines picked by its shape and by what the
    command expects, or as sent (--json); an error as "error CODE:
    MESSAGE[: DATA]". Output goes to the streams given.
*/
#ifndef EVR_REPLY_H_INCLUDED
#define EVR_REPLY_H_INCLUDED

#include "evrelay.pb-c.h"

#include <stdbool.h>
#include <stdio.h>

//  What a command expects back; picks the printer for shapes that are
//  ambiguous on their own (an empty "Events" array, a stats object).
typedef enum {
    EVR_REPLY_OTHER,
    EVR_REPLY_LIST,
    EVR_REPLY_SUBSCRIBERS,
    EVR_REPLY_STATS,
    EVR_REPLY_CLUSTER
} evr_reply_kind_t;

//  Print a reply for a command of this kind: an error answer on err (and
//  with as_json its JSON-RPC error object on out), a result on out (as
//  sent with as_json, else as text). Returns 0, or -1 for an error answer
//  or one without a result (endpoint names the relay in the message).
int evr_reply_print(const Evrelay__ControlReply *reply, evr_reply_kind_t kind,
                    bool as_json, const char *endpoint, FILE *out, FILE *err);

#endif
