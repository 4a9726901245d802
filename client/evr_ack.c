/*  evr_ack.c - a relay's Ack as libevrelay reads it.
*/
#include "evr_ack.h"
#include "evr_defaults.h"

#include <string.h>

//  Decode one frame as an Ack.
Evrelay__Ack *evr_ack_decode(const void *frame, size_t size)
{
    if (size > EVR_ACK_MAX_BYTES)
        return NULL;
    return evrelay__ack__unpack(NULL, size, frame);
}

//  Whether ack is for this producer.
bool evr_ack_is_ours(const Evrelay__Ack *ack, const uint8_t *producer_id,
                     size_t id_len, uint64_t epoch)
{
    return ack->version == EVR_PROTOCOL_VERSION && ack->epoch == epoch &&
           ack->producer_id.len == id_len &&
           memcmp(ack->producer_id.data, producer_id, id_len) == 0;
}

//  Mark in outcomes the events a list of offsets names (out of range and
//  repeated offsets are ignored: the ack is untrusted). Returns how many
//  events it marked.
static uint32_t s_mark(uint8_t *outcomes, uint32_t count,
                       const uint32_t *offsets, size_t n, evr_ack_out_t outcome)
{
    uint32_t marked = 0;
    for (size_t i = 0; i < n; i++)
        if (offsets[i] < count && outcomes[offsets[i]] == EVR_ACK_OUT_ACKED) {
            outcomes[offsets[i]] = (uint8_t)outcome;
            marked++;
        }
    return marked;
}

//  The outcome of every event of the batch an ack answers.
void evr_ack_outcomes(const Evrelay__Ack *ack, uint32_t count, bool delivered,
                      uint8_t *outcomes, evr_ack_counts_t *counts)
{
    if (ack->status == EVRELAY__ACK__STATUS__REJECTED) {
        memset(outcomes, EVR_ACK_OUT_REJECTED, count);
        counts->rejected += count;
        return;
    }
    memset(outcomes, EVR_ACK_OUT_ACKED, count);
    uint32_t refused = s_mark(outcomes, count, ack->rejected_offsets,
                              ack->n_rejected_offsets, EVR_ACK_OUT_REJECTED);
    //  A relay that does not list them: the count is what it said, the
    //  events are a guess (the last ones).
    uint32_t said = ack->has_rejected ? ack->rejected : 0;
    for (uint32_t i = count; i > 0 && refused < said; i--)
        if (outcomes[i - 1] == EVR_ACK_OUT_ACKED) {
            outcomes[i - 1] = EVR_ACK_OUT_REJECTED;
            refused++;
        }
    uint32_t lost = 0;
    if (delivered)
        lost = s_mark(outcomes, count, ack->failed, ack->n_failed,
                      EVR_ACK_OUT_FAILED);
    counts->rejected += refused;
    counts->failed += lost;
    counts->acked += count - refused - lost;
}
