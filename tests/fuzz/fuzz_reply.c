/*  fuzz_reply.c - libFuzzer target for evrelayctl's reading of answers.

    The input is one ControlReply frame, as evrelayctl receives it from
    whatever listens at the control endpoint. A frame that decodes with
    our protocol version is printed by evr_reply_print for every command
    kind, as text and as --json (into /dev/null): the tables, the
    "key  value" sections, the cluster view, the pretty fallback, the
    error line. It must not crash or leak, and must say -1 exactly for an
    error answer or one without a result. abort() otherwise.
*/
#include "evr_defaults.h"
#include "evr_reply.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

//  One fuzz input.
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    if (!sink && !(sink = fopen("/dev/null", "w")))
        abort();
    Evrelay__ControlReply *reply =
        evrelay__control_reply__unpack(NULL, size, data);
    if (!reply)
        return 0;
    //  evrelayctl refuses another version before printing anything
    if (reply->version == EVR_PROTOCOL_VERSION) {
        int want = reply->error || !reply->result_json ? -1 : 0;
        for (int kind = EVR_REPLY_OTHER; kind <= EVR_REPLY_CLUSTER; kind++)
            for (int as_json = 0; as_json < 2; as_json++)
                if (evr_reply_print(reply, (evr_reply_kind_t)kind, as_json,
                                    "tcp://fuzz", sink, sink) != want)
                    abort();
    }
    evrelay__control_reply__free_unpacked(reply, NULL);
    return 0;
}
