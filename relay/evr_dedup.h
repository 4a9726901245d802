/*  evr_dedup.h - per-producer de-duplication window.

    Pure module. Tracks which sequence numbers of one producer instance
    (producer id + boot epoch) have been seen. Sequences start at 1.

    - `through`: every seq <= through has been seen (the cumulative ack).
    - a bitmap covers (through, through + window].
    - a seq beyond the bitmap slides it forward; unseen seqs that fall out
      are forgotten: `forgotten` becomes the highest such seq and `through`
      jumps past it. A later arrival of a seq <= forgotten is EVR_DEDUP_STALE:
      the window cannot tell, so the caller delivers it (the guarantee stays
      at-least-once) and counts it.
    - seq 0 is invalid and reported as EVR_DEDUP_DUPLICATE.
*/
#ifndef EVR_DEDUP_H_INCLUDED
#define EVR_DEDUP_H_INCLUDED

#include <stdint.h>

typedef enum {
    EVR_DEDUP_NEW = 0,   //  first time seen: deliver
    EVR_DEDUP_DUPLICATE, //  seen before: drop, count
    EVR_DEDUP_STALE      //  older than the window: unknown, deliver, count
} evr_dedup_result_t;

typedef struct _evr_dedup_t evr_dedup_t;

//  Create a window of `window` sequences (rounded up to a multiple of 64).
evr_dedup_t *evr_dedup_new(uint32_t window);

//  Destroy and NULL the pointer. Safe on NULL.
void evr_dedup_destroy(evr_dedup_t **self_p);

//  Record seq and say whether it is new. seq 0 is invalid: DUPLICATE.
evr_dedup_result_t evr_dedup_check(evr_dedup_t *self, uint64_t seq);

//  The cumulative ack: every seq <= this has been seen (0 = none).
uint64_t evr_dedup_through(const evr_dedup_t *self);

//  The highest sequence seen so far (0 = none).
uint64_t evr_dedup_highest(const evr_dedup_t *self);

#endif
