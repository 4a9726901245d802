/*  evr_dedup.c - per-producer de-duplication window.

    See evr_dedup.h. The bitmap is a ring of 64-bit words: the bit of seq s
    lives at position s % window, which is unique for the `window` seqs in
    (through, through + window]. When `through` moves past a seq its bit
    is cleared, so the position is free for seq + window.

    Invariant: the bit of through + 1 is always clear (otherwise `through`
    would have advanced), so every slide forgets at least one seq.

    Seqs below the first ever forgotten seq are provably seen (`through`
    was contiguous up to there), so they stay DUPLICATE. Seqs from there up
    to `forgotten` are a mix of seen and forgotten: STALE. Seqs in
    (forgotten, through] are all seen: DUPLICATE.
*/
#include "evr_dedup.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct _evr_dedup_t {
    uint64_t window;          //  seqs the bitmap covers, a multiple of 64
    size_t nwords;            //  window / 64
    uint64_t *words;          //  ring bitmap over (through, through + window]
    uint64_t through;         //  every seq <= through is seen or forgotten
    uint64_t highest;         //  highest seq seen, 0 = none
    uint64_t forgotten;       //  highest seq forgotten unseen, 0 = none
    uint64_t first_forgotten; //  lowest seq ever forgotten, 0 = none
};

//  --------------------------------------------------------------------------
//  Create a window of `window` sequences (rounded up to a multiple of 64).

evr_dedup_t *evr_dedup_new(uint32_t window)
{
    evr_dedup_t *self = (evr_dedup_t *)calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->window = ((uint64_t)window + 63) / 64 * 64;
    if (self->window == 0)
        self->window = 64;
    self->nwords = (size_t)(self->window / 64);
    self->words = (uint64_t *)calloc(self->nwords, sizeof(uint64_t));
    if (!self->words) {
        free(self);
        return NULL;
    }
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy and NULL the pointer. Safe on NULL.

void evr_dedup_destroy(evr_dedup_t **self_p)
{
    assert(self_p);
    if (*self_p) {
        evr_dedup_t *self = *self_p;
        free(self->words);
        free(self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Mask of n bits (1..64) starting at bit b (n + b <= 64).

static inline uint64_t s_mask(unsigned n, unsigned b)
{
    return (n >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1)) << b;
}

//  --------------------------------------------------------------------------
//  Word index and bit of seq in the ring.

static inline void s_locate(const evr_dedup_t *self, uint64_t seq, size_t *word,
                            unsigned *bit)
{
    uint64_t pos = seq % self->window;
    *word = (size_t)(pos / 64);
    *bit = (unsigned)(pos % 64);
}

//  --------------------------------------------------------------------------
//  Move `through` over the contiguous run of seen seqs after it, clearing
//  their bits, a word at a time.

static void s_advance(evr_dedup_t *self)
{
    while (true) {
        size_t word;
        unsigned bit;
        s_locate(self, self->through + 1, &word, &bit);
        uint64_t seen = self->words[word] >> bit;
        unsigned room = 64 - bit;
        unsigned run = ~seen ? (unsigned)__builtin_ctzll(~seen) : 64;
        if (run > room)
            run = room;
        if (run == 0)
            return;
        self->words[word] &= ~s_mask(run, bit);
        self->through += run;
        if (run < room)
            return;
    }
}

//  --------------------------------------------------------------------------
//  Clear the bits of count seqs starting at first (count <= window) and
//  return the highest of them that was not seen, 0 if all were.

static uint64_t s_clear_range(evr_dedup_t *self, uint64_t first, uint64_t count)
{
    uint64_t unseen_high = 0;
    while (count > 0) {
        size_t word;
        unsigned bit;
        s_locate(self, first, &word, &bit);
        unsigned n = 64 - bit;
        if (n > count)
            n = (unsigned)count;
        uint64_t mask = s_mask(n, bit);
        uint64_t unseen = ~self->words[word] & mask;
        if (unseen)
            unseen_high =
                first + (63 - (unsigned)__builtin_clzll(unseen)) - bit;
        self->words[word] &= ~mask;
        first += n;
        count -= n;
    }
    return unseen_high;
}

//  --------------------------------------------------------------------------
//  Slide the window so that it ends at seq: forget what falls out.

static void s_slide(evr_dedup_t *self, uint64_t seq)
{
    uint64_t base = seq - self->window; //  new through
    uint64_t distance = base - self->through;
    uint64_t count = distance < self->window ? distance : self->window;
    uint64_t unseen_high = s_clear_range(self, self->through + 1, count);
    //  Beyond the old window nothing was ever seen: base itself is unseen.
    uint64_t forgotten = distance > self->window ? base : unseen_high;
    assert(forgotten > self->through);
    if (self->first_forgotten == 0)
        self->first_forgotten = self->through + 1;
    self->forgotten = forgotten;
    self->through = base;
}

//  --------------------------------------------------------------------------
//  Record seq and say whether it is new. seq 0 is invalid: DUPLICATE.

evr_dedup_result_t evr_dedup_check(evr_dedup_t *self, uint64_t seq)
{
    assert(self);
    if (seq == 0)
        return EVR_DEDUP_DUPLICATE;
    if (seq <= self->through) {
        if (self->forgotten && seq >= self->first_forgotten &&
            seq <= self->forgotten)
            return EVR_DEDUP_STALE;
        return EVR_DEDUP_DUPLICATE;
    }
    bool slid = false;
    if (seq - self->through > self->window) {
        s_slide(self, seq);
        slid = true;
    }

    size_t word;
    unsigned bit;
    s_locate(self, seq, &word, &bit);
    uint64_t mask = (uint64_t)1 << bit;
    if (self->words[word] & mask)
        return EVR_DEDUP_DUPLICATE;
    self->words[word] |= mask;
    if (seq > self->highest)
        self->highest = seq;
    //  After a slide, seqs right after the new `through` may be seen already.
    if (slid || seq == self->through + 1)
        s_advance(self);
    return EVR_DEDUP_NEW;
}

//  --------------------------------------------------------------------------
//  The cumulative ack: every seq <= this has been seen (0 = none).

uint64_t evr_dedup_through(const evr_dedup_t *self)
{
    assert(self);
    return self->through;
}

//  --------------------------------------------------------------------------
//  The highest sequence seen so far (0 = none).

uint64_t evr_dedup_highest(const evr_dedup_t *self)
{
    assert(self);
    return self->highest;
}
