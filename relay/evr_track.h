/*  evr_track.h - delivery trackers: when is a batch delivered?

    The DELIVERED ack point (docs/PROTOCOL.md 4.7) answers a Publish only
    once every delivery of every event in it has reached a final outcome
    (delivered, failed or dropped), and names the events that had
    subscribers but no successful delivery. A tracker is that bookkeeping
    for one batch:

    - the core creates it with one hold of its own, marks each event that
      has at least one subscriber (evr_track_expect), adds one hold per
      delivery it hands to the workers (evr_track_hold, before the
      hand-off), then lets its own hold go (evr_track_release);
    - each final outcome of a top-level delivery (or of a PARALLEL copy,
      which holds its own) lets one hold go (evr_track_done), marking its
      event as delivered when it succeeded; a FAILOVER or ROUND-ROBIN
      delivery moves its hold from child to child until it is final;
    - the last hold hands the tracker to its queue (evr_trackq_t), which
      the core polls through an eventfd, or, when the core's own release is
      the last one, back to the core directly.

    Threads: any thread may call evr_track_done and evr_track_hold (holds
    are an atomic counter, per-event marks atomic bytes); everything else
    is the owner's (the core's). The queue is a mutex-guarded list, so a
    tracker can finish on any thread, including the core while it tears
    targets down. Not a pure module (mutex, eventfd), but it does no other
    I/O and is unit-tested in tests/unit/test_track.c.
*/
#ifndef EVR_TRACK_H_INCLUDED
#define EVR_TRACK_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

typedef struct _evr_track_t evr_track_t;
typedef struct _evr_trackq_t evr_trackq_t;

//  The event index of the creator's hold (no event to mark).
#define EVR_TRACK_NO_EVENT UINT32_MAX

//  Create an empty queue. NULL when out of memory or out of descriptors.
evr_trackq_t *evr_trackq_new(void);

//  Destroy the queue and every tracker still in it (their data is freed
//  with their free function), and NULL the pointer. Safe on NULL. No
//  tracker of this queue may finish afterwards.
void evr_trackq_destroy(evr_trackq_t **self_p);

//  A descriptor that polls readable while finished trackers wait.
int evr_trackq_fd(const evr_trackq_t *self);

//  Take the oldest finished tracker (the caller owns it and destroys it),
//  or NULL when none waits.
evr_track_t *evr_trackq_pop(evr_trackq_t *self);

//  How many trackers of this queue exist (created and not destroyed yet:
//  pending, waiting in the queue, or being answered), for stats and tests.
uint64_t evr_trackq_live(const evr_trackq_t *self);

//  Create a tracker for a batch of nevents events, finishing into queue,
//  with one hold (the creator's). NULL when out of memory.
evr_track_t *evr_track_new(evr_trackq_t *queue, uint32_t nevents);

//  Destroy a tracker (freeing its data with its free function) and NULL
//  the pointer. Safe on NULL.
void evr_track_destroy(evr_track_t **self_p);

//  Attach the owner's data, freed with free_fn (may be NULL) when the
//  tracker is destroyed.
void evr_track_set_data(evr_track_t *self, void *data,
                        void (*free_fn)(void *data));

//  The owner's data.
void *evr_track_data(const evr_track_t *self);

//  The number of events of the batch.
uint32_t evr_track_events(const evr_track_t *self);

//  Owner: event has at least one subscriber, so it fails unless one of its
//  deliveries succeeds.
void evr_track_expect(evr_track_t *self, uint32_t event);

//  Take n more holds (one per delivery about to be handed over). Any
//  thread that already holds one.
void evr_track_hold(evr_track_t *self, uint64_t n);

//  Let one hold go for a delivery of event (EVR_TRACK_NO_EVENT: none) that
//  reached its final outcome; ok marks the event as delivered. The last
//  hold puts the tracker on its queue. Any thread.
void evr_track_done(evr_track_t *self, uint32_t event, bool ok);

//  Owner: let the creator's hold go. Returns true when it was the last
//  (the tracker is finished and NOT queued: the caller handles it), false
//  when deliveries still hold it.
bool evr_track_release(evr_track_t *self);

//  Owner, once finished: whether event had subscribers and none of its
//  deliveries succeeded.
bool evr_track_failed(const evr_track_t *self, uint32_t event);

#endif
