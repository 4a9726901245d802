/*  evr_tr_virtual.c - virtual: targets (OpenSIPS event_virtual, fixed).

    A virtual target owns child targets, created and validated at subscribe
    time and pinned to the same worker. Each event reaches the children by
    policy:

    PARALLEL     every child gets a copy; a failing child never keeps the
                 others from theirs. The virtual target's counters are the
                 sums of its children's outcomes.
    FAILOVER     children in order; the first that CONFIRMS delivery ends
                 the event (confirmation is the transport's: a datagram or
                 line written, a JSON-RPC reply, an AMQP confirm, a 2xx).
                 A child that fails is skipped for failover_timeout, then
                 probed again; an event whose child fails after the hand-off
                 moves on to the next child. When every unmarked child has
                 failed, marked ones are tried as a last resort, so no event
                 is dropped while any child works.
    ROUND-ROBIN  each event starts at the next child in turn; children
                 marked failed are skipped; a failed send moves on to the
                 next child within the same event.

    Delivery trackers (DELIVERED ack point): FAILOVER and ROUND-ROBIN move
    the event's hold from child to child, so it is let go only when the
    event is final (a child confirmed, or none is left); PARALLEL gives
    every copy a hold of its own and lets the event's go.

    Policy state (the round-robin cursor, failure marks) is local to this
    relay. Children are tracked in a 32-bit mask per event, hence at most
    EVR_MAX_CHILDREN children.
*/
#include "evr_transport.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    evr_policy_t policy;
    size_t n;
    size_t cursor; //  ROUND-ROBIN: where the next event starts
    int64_t failed_at_us[EVR_MAX_CHILDREN]; //  0 = not marked
} s_state_t;

//  Create the children (validated now) and the policy state.
static int s_open(evr_target_t *t, char *err, size_t errlen)
{
    s_state_t *st = calloc(1, sizeof *st);
    if (!st)
        return -1;
    evr_target_set_state(t, st);
    st->policy = evr_sockspec_policy(evr_target_spec(t));
    if (evr_target_make_children(t, err, errlen))
        return -1;
    st->n = evr_target_child_count(t);
    return 0;
}

//  Free the state (the generic target frees the children).
static void s_close(evr_target_t *t)
{
    free(evr_target_state(t));
}

//  The payload of an event for one child: a bundle's part, or the message
//  itself when the event has a single format. Returns a new reference.
static evr_msg_t *s_part(evr_msg_t *event, const evr_target_t *child)
{
    evr_msg_t *msg = event;
    if (event->len == 0) {
        for (int f = 0; f < EVR_FORMAT_COUNT; f++)
            if (event->parts[f] && (evr_target_formats(child) & (1u << f)))
                msg = event->parts[f];
    }
    evr_msg_ref(msg);
    return msg;
}

//  Whether child i is marked failed and still within failover_timeout.
static bool s_marked(const evr_target_t *t, const s_state_t *st, size_t i,
                     int64_t now_us)
{
    int64_t timeout_us =
        (int64_t)evr_target_opts(t)->failover_timeout_s * 1000000;
    return st->failed_at_us[i] && now_us - st->failed_at_us[i] < timeout_us;
}

//  Pick the next child for an event that already tried `tried`: an
//  unmarked one first, else (last resort) a marked one. -1 when none is
//  left.
static int s_pick(const evr_target_t *t, const s_state_t *st, uint32_t tried,
                  int64_t now_us)
{
    size_t start = st->policy == EVR_POLICY_ROUND_ROBIN ? st->cursor : 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t k = 0; k < st->n; k++) {
            size_t i = (start + k) % st->n;
            if (tried & (1u << i))
                continue;
            if (pass == 0 && s_marked(t, st, i, now_us))
                continue;
            return (int)i;
        }
    return -1;
}

//  FAILOVER / ROUND-ROBIN: hand the event to the next child. Takes the
//  reference in `event` and the tracker hold in `hold` (its track may be
//  NULL). The event fails when no child is left.
static void s_route(evr_target_t *t, evr_msg_t *event, uint32_t tried,
                    evr_delivery_t *hold)
{
    s_state_t *st = evr_target_state(t);
    int64_t now_us = zclock_usecs();
    bool first = tried == 0;
    int i;
    while ((i = s_pick(t, st, tried, now_us)) >= 0) {
        tried |= 1u << i;
        if (first && st->policy == EVR_POLICY_ROUND_ROBIN) {
            st->cursor = ((size_t)i + 1) % st->n;
            first = false;
        }
        evr_target_t *child = evr_target_child_mut(t, (size_t)i);
        evr_delivery_t d = {.msg = s_part(event, child),
                            .bundle = event,
                            .parent = t,
                            .tried = tried,
                            .event = hold->event,
                            .track = hold->track};
        evr_target_ref(t); //  the delivery's reference to its parent
        if (evr_target_enqueue(child, &d) == 0) {
            hold->track = NULL; //  moved to the child's delivery
            return;
        }
        //  the child's queue is full: count it there, try the next one
        evr_target_count(child, 0, EVR_OUTCOME_DROPPED);
        evr_msg_unref(d.msg);
        evr_target_unref(&d.parent);
    }
    evr_target_dequeued(t);
    evr_target_count(t, 0, EVR_OUTCOME_FAILED);
    evr_msg_unref(event);
    evr_delivery_settle(hold, false);
}

//  PARALLEL: a copy for every child, each with a tracker hold of its own;
//  the event's hold (in `hold`) is let go.
static void s_fan_out(evr_target_t *t, evr_msg_t *event, evr_delivery_t *hold)
{
    s_state_t *st = evr_target_state(t);
    evr_target_dequeued(t);
    if (hold->track)
        evr_track_hold(hold->track, st->n);
    for (size_t i = 0; i < st->n; i++) {
        evr_target_t *child = evr_target_child_mut(t, i);
        evr_delivery_t d = {.msg = s_part(event, child),
                            .parent = t,
                            .tried = 1u << i,
                            .event = hold->event,
                            .track = hold->track};
        evr_target_ref(t); //  the delivery's reference to its parent
        if (evr_target_enqueue(child, &d)) {
            evr_target_count(child, 0, EVR_OUTCOME_DROPPED);
            evr_target_count(t, 0, EVR_OUTCOME_FAILED);
            evr_msg_unref(d.msg);
            evr_delivery_settle(&d, false);
            evr_target_unref(&d.parent);
        }
    }
    evr_msg_unref(event);
    evr_delivery_settle(hold, false);
}

//  Route every queued event to the children.
static void s_flush(evr_target_t *t, int64_t now_us)
{
    s_state_t *st = evr_target_state(t);
    evr_delivery_t d;
    while (evr_target_take(t, &d) == 0) {
        if (st->policy == EVR_POLICY_PARALLEL)
            s_fan_out(t, d.msg, &d);
        else
            s_route(t, d.msg, 0, &d);
    }
}

//  Apply a child's outcome to the policy (the delivery's reference to the
//  parent is still held).
static void s_child_done(evr_target_t *parent, evr_target_t *child,
                         evr_delivery_t *d, bool ok)
{
    s_state_t *st = evr_target_state(parent);
    int64_t raised_us = d->msg ? d->msg->raised_us : 0;
    evr_msg_unref(d->msg);
    size_t i = 0;
    while (i < st->n && evr_target_child_mut(parent, i) != child)
        i++;
    if (st->policy == EVR_POLICY_PARALLEL) {
        evr_target_count(parent, raised_us,
                         ok ? EVR_OUTCOME_DELIVERED : EVR_OUTCOME_FAILED);
        evr_delivery_settle(d, ok);
        return;
    }
    if (i < st->n)
        st->failed_at_us[i] = ok ? 0 : zclock_usecs();
    evr_reactor_t *reactor = evr_target_reactor(parent);
    if (ok || evr_target_retired(parent) ||
        (reactor && evr_reactor_stopping(reactor))) {
        evr_target_dequeued(parent);
        evr_target_count(parent, raised_us,
                         ok ? EVR_OUTCOME_DELIVERED : EVR_OUTCOME_DROPPED);
        evr_msg_unref(d->bundle);
        evr_delivery_settle(d, ok);
        return;
    }
    s_route(parent, d->bundle, d->tried, d);
}

//  A child reports the outcome of a delivery the parent gave it.
void evr_tr_virtual_child_done(evr_target_t *parent, evr_target_t *child,
                               evr_delivery_t *d, bool ok)
{
    s_child_done(parent, child, d, ok);
    evr_target_unref(&d->parent); //  last: it may free the parent
}

const evr_transport_ops_t evr_tr_virtual = {
    .name = "virtual",
    .open = s_open,
    .close = s_close,
    .flush = s_flush,
};
