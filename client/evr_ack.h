/*  evr_ack.h - a relay's Ack as libevrelay reads it.

    Internal to libevrelay (not installed; hidden in the shared library),
    pure (no I/O), and fuzzed (fuzz_ack). The client's thread decodes
    every frame it receives with evr_ack_decode, drops Acks that are not
    for its producer (evr_ack_is_ours), and works out from an Ack what
    became of each event of the batch it answers (evr_ack_outcomes). An
    Ack is untrusted input: offsets out of range or repeated are ignored.
*/
#ifndef EVR_ACK_H_INCLUDED
#define EVR_ACK_H_INCLUDED

#include "evrelay.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Acks are small; a bigger frame is not an ack and is ignored undecoded.
#define EVR_ACK_MAX_BYTES 65536

//  What became of one event of a batch.
typedef enum {
    EVR_ACK_OUT_ACKED = 0,
    EVR_ACK_OUT_FAILED,  //  DELIVERED: no subscriber's transport took it
    EVR_ACK_OUT_REJECTED //  refused by the relay, never retried
} evr_ack_out_t;

//  How many events of a batch ended each way.
typedef struct {
    uint64_t acked, failed, rejected;
} evr_ack_counts_t;

//  Decode one frame of size bytes as an Ack. NULL when it is too large or
//  not an Ack; free with evrelay__ack__free_unpacked.
Evrelay__Ack *evr_ack_decode(const void *frame, size_t size);

//  Whether ack is for this producer: our protocol version, producer id
//  (id_len bytes) and epoch.
bool evr_ack_is_ours(const Evrelay__Ack *ack, const uint8_t *producer_id,
                     size_t id_len, uint64_t epoch);

//  The outcome of each of the count events of the batch ack answers, into
//  outcomes[0..count) (evr_ack_out_t values), and how many ended each way
//  added to *counts. With delivered (the DELIVERED ack point) the events
//  listed in ack->failed fail; otherwise that list is ignored. Rejected
//  events are those in rejected_offsets, and when the relay counted more
//  than it listed, the last ones not listed yet.
void evr_ack_outcomes(const Evrelay__Ack *ack, uint32_t count, bool delivered,
                      uint8_t *outcomes, evr_ack_counts_t *counts);

#endif
