/*  evr_hlc.c - a hybrid logical clock.

    See evr_hlc.h. With timestamps packed as physical << 16 | logical, the
    textbook HLC rules (Kulkarni et al., "Logical Physical Clocks") reduce
    to integer maxima:

    - local event:   last = max(last + 1, wall << 16)
    - receive event: last = max(last + 1, remote + 1, wall << 16)

    "+ 1" on a packed timestamp is "logical + 1", and a logical counter at
    0xffff carries into the physical part (one ms later, logical 0), which
    is exactly the overflow rule. Every result is strictly greater than the
    previous one, and after a receive greater than the remote timestamp.

    The physical part is 48 bits (good until the year 10889); wall clocks
    outside [0, 2^48) are clamped, and at the very top of the range the
    clock stops instead of wrapping.
*/
#include "evr_hlc.h"

#include <assert.h>
#include <stdlib.h>

#define MAX_PHYSICAL (((int64_t)1 << 48) - 1)

struct _evr_hlc_t {
    int64_t max_skew_ms; //  remote physical time allowed ahead of the wall
    uint64_t last;       //  last timestamp issued or merged
};

//  --------------------------------------------------------------------------
//  Wall clock clamped to the 48-bit physical range.

static int64_t s_clamp_wall(int64_t wall_ms)
{
    if (wall_ms < 0)
        return 0;
    if (wall_ms > MAX_PHYSICAL)
        return MAX_PHYSICAL;
    return wall_ms;
}

//  --------------------------------------------------------------------------
//  The timestamp right after t (saturating at the top of the range).

static uint64_t s_succ(uint64_t t)
{
    return t == UINT64_MAX ? t : t + 1;
}

//  --------------------------------------------------------------------------
//  A clock that refuses remote timestamps more than max_skew_ms ahead
//  (a negative bound is taken as 0).

evr_hlc_t *evr_hlc_new(int64_t max_skew_ms)
{
    evr_hlc_t *self = (evr_hlc_t *)calloc(1, sizeof(evr_hlc_t));
    if (!self)
        return NULL;
    self->max_skew_ms = max_skew_ms < 0 ? 0 : max_skew_ms;
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy and NULL the pointer. Safe on NULL.

void evr_hlc_destroy(evr_hlc_t **self_p)
{
    assert(self_p);
    free(*self_p);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  A new timestamp for a local event, given the wall clock (ms).

uint64_t evr_hlc_now(evr_hlc_t *self, int64_t wall_ms)
{
    assert(self);
    uint64_t wall = EVR_HLC_MAKE(s_clamp_wall(wall_ms), 0);
    uint64_t next = s_succ(self->last);
    self->last = next > wall ? next : wall;
    return self->last;
}

//  --------------------------------------------------------------------------
//  Merge a remote timestamp. Returns 0, or -1 (clock unchanged) when it is
//  too far ahead of wall_ms.

int evr_hlc_update(evr_hlc_t *self, uint64_t remote, int64_t wall_ms)
{
    assert(self);
    int64_t wall_phys = s_clamp_wall(wall_ms);
    //  Both physical times are below 2^48: the difference cannot overflow.
    if ((int64_t)EVR_HLC_PHYSICAL(remote) - wall_phys > self->max_skew_ms)
        return -1;
    uint64_t wall = EVR_HLC_MAKE(wall_phys, 0);
    uint64_t next = s_succ(self->last);
    uint64_t after_remote = s_succ(remote);
    if (after_remote > next)
        next = after_remote;
    self->last = next > wall ? next : wall;
    return 0;
}

//  --------------------------------------------------------------------------
//  The last timestamp issued or merged.

uint64_t evr_hlc_last(const evr_hlc_t *self)
{
    assert(self);
    return self->last;
}
