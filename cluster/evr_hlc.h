/*  evr_hlc.h - a hybrid logical clock.

    Pure module: the wall clock is passed in. A timestamp is a uint64:
    the physical part (ms since the epoch) in the high 48 bits and a
    logical counter in the low 16. Timestamps from one clock strictly
    increase; a remote timestamp ahead of us pulls our clock forward (so
    causality holds), unless it is more than max_skew_ms ahead of our wall
    clock: then it is refused and the caller counts it.
*/
#ifndef EVR_HLC_H_INCLUDED
#define EVR_HLC_H_INCLUDED

#include <stdint.h>

#define EVR_HLC_PHYSICAL(t) ((t) >> 16)
#define EVR_HLC_MAKE(ms, logical) (((uint64_t)(ms) << 16) | (uint16_t)(logical))

typedef struct _evr_hlc_t evr_hlc_t;

//  A clock that refuses remote timestamps more than max_skew_ms ahead.
evr_hlc_t *evr_hlc_new(int64_t max_skew_ms);

//  Destroy and NULL the pointer.
void evr_hlc_destroy(evr_hlc_t **self_p);

//  A new timestamp for a local event, given the wall clock (ms).
uint64_t evr_hlc_now(evr_hlc_t *self, int64_t wall_ms);

//  Merge a remote timestamp. Returns 0, or -1 (clock unchanged) when it is
//  too far ahead of wall_ms.
int evr_hlc_update(evr_hlc_t *self, uint64_t remote, int64_t wall_ms);

//  The last timestamp issued or merged.
uint64_t evr_hlc_last(const evr_hlc_t *self);

#endif
