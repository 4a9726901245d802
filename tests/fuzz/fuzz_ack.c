/*  fuzz_ack.c - libFuzzer target for the Acks libevrelay receives.

    The input is one frame on a producer's DEALER, as a relay (or anything
    that reaches the producer) sends it. It goes through evr_ack_decode and
    evr_ack_is_ours (the producer being the one the seeds name), then, as
    the client does for the batch the Ack answers (one of ack->count
    events), through evr_ack_outcomes with and without the DELIVERED ack
    point. Every event must get exactly one known outcome, the counts must
    add up to the batch, a REJECTED status must reject all, the failed list
    must count only with DELIVERED, and no more events may be rejected
    than the relay listed or counted. abort() when a check fails.
*/
#include "evr_ack.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The largest batch a client makes (its window bound).
#define S_MAX_BATCH 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

//  The producer the seeds were made for: id 00 01 .. 0f, epoch 1.
static const uint8_t s_producer[16] = {0, 1, 2,  3,  4,  5,  6,  7,
                                       8, 9, 10, 11, 12, 13, 14, 15};
#define S_EPOCH 1

//  Abort with a message.
static void s_fail(const char *what)
{
    fprintf(stderr, "fuzz_ack: %s\n", what);
    abort();
}

//  Outcomes of a batch of count events; check them.
static void s_check(const Evrelay__Ack *ack, uint32_t count, bool delivered,
                    uint8_t *outcomes)
{
    //  what was there before must not matter
    memset(outcomes, 0xee, count);
    evr_ack_counts_t counts = {0};
    evr_ack_outcomes(ack, count, delivered, outcomes, &counts);
    uint64_t seen[3] = {0, 0, 0};
    for (uint32_t i = 0; i < count; i++) {
        if (outcomes[i] > EVR_ACK_OUT_REJECTED)
            s_fail("an event without an outcome");
        seen[outcomes[i]]++;
    }
    if (seen[0] != counts.acked || seen[1] != counts.failed ||
        seen[2] != counts.rejected)
        s_fail("counts do not match the outcomes");
    if (counts.acked + counts.failed + counts.rejected != count)
        s_fail("counts do not add up to the batch");
    if (ack->status == EVRELAY__ACK__STATUS__REJECTED) {
        if (counts.rejected != count)
            s_fail("a rejected batch with events not rejected");
        return;
    }
    if (counts.failed && (!delivered || counts.failed > ack->n_failed))
        s_fail("failed events the ack did not list");
    uint64_t said = ack->has_rejected ? ack->rejected : 0;
    if (counts.rejected > ack->n_rejected_offsets && counts.rejected > said)
        s_fail("more events rejected than the ack said");
}

//  One fuzz input.
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t outcomes[S_MAX_BATCH];
    Evrelay__Ack *ack = evr_ack_decode(data, size);
    if (!ack)
        return 0;
    if (size > EVR_ACK_MAX_BYTES)
        s_fail("a frame over the bound was decoded");
    evr_ack_is_ours(ack, s_producer, sizeof s_producer, S_EPOCH);
    //  the client applies an ack only to a batch of ack->count events
    uint32_t count = ack->count < S_MAX_BATCH ? ack->count : S_MAX_BATCH;
    s_check(ack, count, false, outcomes);
    s_check(ack, count, true, outcomes);
    evrelay__ack__free_unpacked(ack, NULL);
    return 0;
}
