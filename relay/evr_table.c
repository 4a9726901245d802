/*  evr_table.c - the subscription table, with OpenSIPS' rules.

    Layout:
    - events: a zhashx name -> event record, plus an array of the same
      records by id (ids are dense, in registration order). Records are
      never removed, as in OpenSIPS.
    - per event: a zhashx match_key -> entry (created on the first
      subscription) for O(1) refresh/find, and a doubly linked list of the
      entries, newest first (a refresh keeps the entry where it is).
    - every expiring entry sits in one binary min-heap ordered by its
      deadline second, so a sweep only touches what has expired.

    Callbacks (the release callback and the fn of lookup/events) must not
    call any function that changes the table (subscribe, register, lookup,
    find, sweep, destroy); the read-only ones (event_id, size, event_count,
    valid_name) are fine. Debug builds assert this.
*/
#include "evr_table.h"
#include "evr_defaults.h"

#include <czmq.h>

#include <assert.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define NOT_IN_HEAP SIZE_MAX

typedef struct _event_t event_t;
typedef struct _sub_t sub_t;

//  One subscription.
struct _sub_t {
    event_t *event; //  the event it belongs to
    sub_t *newer;   //  list neighbours, newest first
    sub_t *older;
    char *socket;       //  canonical socket string, owned
    char *match_key;    //  owned; also the key in event->subs
    int64_t expire_s;   //  EVR_EXPIRE_NEVER or >= 1
    int64_t sub_time_s; //  (re)subscription second
    int64_t deadline_s; //  last live second; unused when never expiring
    size_t heap_index;  //  position in the expiry heap, or NOT_IN_HEAP
    void *target;       //  owned through the release callback
};

//  One registered event.
struct _event_t {
    int id;
    zhashx_t *subs; //  match_key -> sub_t, NULL until first subscription
    sub_t *newest;  //  head of the list
    sub_t *oldest;  //  tail of the list
    char name[EVR_MAX_EVENT_NAME + 1];
};

struct _evr_table_t {
    size_t max_events;             //  registry bound
    evr_table_release_fn *release; //  may be NULL
    void *release_arg;
    zhashx_t *events_by_name; //  name -> event_t, keys owned by the records
    event_t **events;         //  by id
    size_t event_count;
    size_t event_cap;
    sub_t **heap; //  expiring entries, min-heap by deadline_s
    size_t heap_size;
    size_t heap_cap;
    size_t size; //  entries, live or not yet swept
    bool busy;   //  inside a callback: the table must not change
};

//  --------------------------------------------------------------------------
//  Time helpers

//  Milliseconds to whole seconds, rounding down (also for negative times).
static int64_t s_seconds(int64_t now_ms)
{
    int64_t s = now_ms / 1000;
    if (now_ms % 1000 < 0)
        s--;
    return s;
}

//  a + b, clamped to the int64_t range.
static int64_t s_add_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

//  a - b, clamped to the int64_t range.
static int64_t s_sub_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r))
        return b < 0 ? INT64_MAX : INT64_MIN;
    return r;
}

//  Whether an entry may expire at all.
static bool s_expiring(const sub_t *sub)
{
    return sub->expire_s != EVR_EXPIRE_NEVER;
}

//  Whether an entry is past its last live second.
static bool s_expired(const sub_t *sub, int64_t now_s)
{
    return s_expiring(sub) && now_s > sub->deadline_s;
}

//  --------------------------------------------------------------------------
//  Expiry heap: a binary min-heap of expiring entries by deadline_s. Each
//  entry knows its index, so removal and re-keying are O(log n).

//  Put sub at index i.
static void s_heap_place(evr_table_t *self, size_t i, sub_t *sub)
{
    self->heap[i] = sub;
    sub->heap_index = i;
}

//  Move the entry at index i up until its parent is not later.
static void s_heap_up(evr_table_t *self, size_t i)
{
    sub_t *sub = self->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (self->heap[parent]->deadline_s <= sub->deadline_s)
            break;
        s_heap_place(self, i, self->heap[parent]);
        i = parent;
    }
    s_heap_place(self, i, sub);
}

//  Move the entry at index i down until no child is earlier.
static void s_heap_down(evr_table_t *self, size_t i)
{
    sub_t *sub = self->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= self->heap_size)
            break;
        if (child + 1 < self->heap_size &&
            self->heap[child + 1]->deadline_s < self->heap[child]->deadline_s)
            child++;
        if (sub->deadline_s <= self->heap[child]->deadline_s)
            break;
        s_heap_place(self, i, self->heap[child]);
        i = child;
    }
    s_heap_place(self, i, sub);
}

//  Make room for one more heap entry. Returns 0, or -1 if out of memory.
static int s_heap_reserve(evr_table_t *self)
{
    if (self->heap_size < self->heap_cap)
        return 0;
    size_t cap = self->heap_cap ? self->heap_cap * 2 : 64;
    sub_t **heap = (sub_t **)realloc(self->heap, cap * sizeof(sub_t *));
    if (!heap)
        return -1;
    self->heap = heap;
    self->heap_cap = cap;
    return 0;
}

//  Add an entry; room must have been reserved.
static void s_heap_push(evr_table_t *self, sub_t *sub)
{
    assert(self->heap_size < self->heap_cap);
    assert(sub->heap_index == NOT_IN_HEAP);
    s_heap_place(self, self->heap_size++, sub);
    s_heap_up(self, sub->heap_index);
}

//  Remove an entry from the heap, if it is there.
static void s_heap_remove(evr_table_t *self, sub_t *sub)
{
    size_t i = sub->heap_index;
    if (i == NOT_IN_HEAP)
        return;
    assert(i < self->heap_size && self->heap[i] == sub);
    sub->heap_index = NOT_IN_HEAP;
    sub_t *last = self->heap[--self->heap_size];
    if (last == sub)
        return;
    s_heap_place(self, i, last);
    s_heap_up(self, i);
    s_heap_down(self, last->heap_index);
}

//  Restore heap order after an entry's deadline changed.
static void s_heap_fix(evr_table_t *self, sub_t *sub)
{
    s_heap_up(self, sub->heap_index);
    s_heap_down(self, sub->heap_index);
}

//  --------------------------------------------------------------------------
//  Entries

//  Give a target back to its owner through the release callback.
static void s_release(evr_table_t *self, void *target)
{
    if (!self->release)
        return;
    bool was_busy = self->busy;
    self->busy = true;
    self->release(target, self->release_arg);
    self->busy = was_busy;
}

//  Set an entry's time and expire and recompute its deadline.
static void s_sub_set_time(sub_t *sub, int64_t expire_s, int64_t now_s)
{
    sub->expire_s = expire_s;
    sub->sub_time_s = now_s;
    sub->deadline_s = s_expiring(sub) ? s_add_sat(now_s, expire_s) : 0;
}

//  Unlink an entry from everything, free it and release its target.
static void s_sub_remove(evr_table_t *self, sub_t *sub)
{
    event_t *event = sub->event;
    s_heap_remove(self, sub);
    if (sub->newer)
        sub->newer->older = sub->older;
    else
        event->newest = sub->older;
    if (sub->older)
        sub->older->newer = sub->newer;
    else
        event->oldest = sub->newer;
    zhashx_delete(event->subs, sub->match_key);
    self->size--;

    void *target = sub->target;
    free(sub->socket);
    free(sub->match_key);
    free(sub);
    s_release(self, target);
}

//  Create an entry at the head of event's list. Returns it, or NULL if
//  out of memory (nothing changed then, target not taken).
static sub_t *s_sub_add(evr_table_t *self, event_t *event, const char *socket,
                        const char *match_key, int64_t expire_s, int64_t now_s,
                        void *target)
{
    if (!event->subs) {
        event->subs = zhashx_new();
        if (!event->subs)
            return NULL;
        //  Keys are the entries' own match_key strings.
        zhashx_set_key_duplicator(event->subs, NULL);
        zhashx_set_key_destructor(event->subs, NULL);
    }
    sub_t *sub = (sub_t *)calloc(1, sizeof(sub_t));
    if (!sub)
        return NULL;
    sub->event = event;
    sub->socket = strdup(socket);
    sub->match_key = strdup(match_key);
    sub->heap_index = NOT_IN_HEAP;
    sub->target = target;
    s_sub_set_time(sub, expire_s, now_s);
    if (!sub->socket || !sub->match_key ||
        (s_expiring(sub) && s_heap_reserve(self)) ||
        zhashx_insert(event->subs, sub->match_key, sub)) {
        free(sub->socket);
        free(sub->match_key);
        free(sub);
        return NULL;
    }
    sub->older = event->newest;
    if (event->newest)
        event->newest->newer = sub;
    else
        event->oldest = sub;
    event->newest = sub;
    if (s_expiring(sub))
        s_heap_push(self, sub);
    self->size++;
    return sub;
}

//  Refresh a live entry. Returns 0, or -1 if out of memory (unchanged).
static int s_sub_refresh(evr_table_t *self, sub_t *sub, const char *socket,
                         int64_t expire_s, int64_t now_s)
{
    bool was_expiring = s_expiring(sub);
    //  A permanent re-subscribe keeps the entry's expire.
    int64_t new_expire =
        expire_s == EVR_EXPIRE_NEVER ? sub->expire_s : expire_s;
    bool now_expiring = new_expire != EVR_EXPIRE_NEVER;
    if (!was_expiring && now_expiring && s_heap_reserve(self))
        return -1;
    if (strcmp(sub->socket, socket) != 0) {
        char *copy = strdup(socket);
        if (!copy)
            return -1;
        free(sub->socket);
        sub->socket = copy;
    }
    s_sub_set_time(sub, new_expire, now_s);
    if (was_expiring && now_expiring)
        s_heap_fix(self, sub);
    else if (now_expiring)
        s_heap_push(self, sub);
    //  (an expiring entry never becomes permanent)
    return 0;
}

//  The entry of event with this match key, or NULL.
static sub_t *s_sub_lookup(event_t *event, const char *match_key)
{
    if (!event->subs)
        return NULL;
    return (sub_t *)zhashx_lookup(event->subs, match_key);
}

//  Fill a read-only view of an entry.
static void s_sub_info(const sub_t *sub, int64_t now_s, evr_sub_info_t *info)
{
    info->event = sub->event->name;
    info->event_id = sub->event->id;
    info->socket = sub->socket;
    info->match_key = sub->match_key;
    info->expire_s = sub->expire_s;
    info->sub_time_s = sub->sub_time_s;
    info->ttl_s =
        s_expiring(sub) ? s_sub_sat(sub->deadline_s, now_s) : EVR_EXPIRE_NEVER;
    info->target = sub->target;
}

//  --------------------------------------------------------------------------
//  Events

//  The record of a registered event, or NULL.
static event_t *s_event_lookup(const evr_table_t *self, const char *name)
{
    if (!evr_table_valid_name(name))
        return NULL;
    return (event_t *)zhashx_lookup(self->events_by_name, name);
}

//  The record of an event, registering it if it is new. Returns NULL if
//  the name is invalid, the registry is full, or memory ran out.
static event_t *s_event_require(evr_table_t *self, const char *name)
{
    if (!evr_table_valid_name(name))
        return NULL;
    event_t *event = (event_t *)zhashx_lookup(self->events_by_name, name);
    if (event)
        return event;
    if (self->event_count >= self->max_events)
        return NULL;
    if (self->event_count == self->event_cap) {
        size_t cap = self->event_cap ? self->event_cap * 2 : 64;
        if (cap > self->max_events)
            cap = self->max_events;
        event_t **events =
            (event_t **)realloc(self->events, cap * sizeof(event_t *));
        if (!events)
            return NULL;
        self->events = events;
        self->event_cap = cap;
    }
    event = (event_t *)calloc(1, sizeof(event_t));
    if (!event)
        return NULL;
    event->id = (int)self->event_count;
    strcpy(event->name, name); //  length checked by evr_table_valid_name
    if (zhashx_insert(self->events_by_name, event->name, event)) {
        free(event);
        return NULL;
    }
    self->events[self->event_count++] = event;
    return event;
}

//  --------------------------------------------------------------------------
//  Create a table that remembers at most max_events event names.

evr_table_t *evr_table_new(size_t max_events, evr_table_release_fn *release,
                           void *arg)
{
    evr_table_t *self = (evr_table_t *)calloc(1, sizeof(evr_table_t));
    if (!self)
        return NULL;
    //  Ids are ints.
    self->max_events =
        max_events > (size_t)INT_MAX ? (size_t)INT_MAX : max_events;
    self->release = release;
    self->release_arg = arg;
    self->events_by_name = zhashx_new();
    if (!self->events_by_name) {
        free(self);
        return NULL;
    }
    //  Keys are the records' own name strings.
    zhashx_set_key_duplicator(self->events_by_name, NULL);
    zhashx_set_key_destructor(self->events_by_name, NULL);
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy the table, releasing every target, and NULL the pointer.

void evr_table_destroy(evr_table_t **self_p)
{
    assert(self_p);
    evr_table_t *self = *self_p;
    if (!self)
        return;
    assert(!self->busy);
    for (size_t i = 0; i < self->event_count; i++) {
        event_t *event = self->events[i];
        sub_t *sub = event->newest;
        while (sub) {
            sub_t *older = sub->older;
            void *target = sub->target;
            free(sub->socket);
            free(sub->match_key);
            free(sub);
            s_release(self, target);
            sub = older;
        }
        zhashx_destroy(&event->subs);
        free(event);
    }
    zhashx_destroy(&self->events_by_name);
    free(self->events);
    free(self->heap);
    free(self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Whether name is an acceptable event name: 1..EVR_MAX_EVENT_NAME bytes,
//  each printable ASCII other than space (0x21..0x7e).

bool evr_table_valid_name(const char *name)
{
    if (!name)
        return false;
    size_t len = 0;
    for (; name[len]; len++) {
        unsigned char c = (unsigned char)name[len];
        if (len >= EVR_MAX_EVENT_NAME || c < 0x21 || c > 0x7e)
            return false;
    }
    return len > 0;
}

//  --------------------------------------------------------------------------
//  Register an event name if it is new. Returns its id, or -1.

int evr_table_register(evr_table_t *self, const char *name)
{
    assert(self);
    assert(!self->busy);
    event_t *event = s_event_require(self, name);
    return event ? event->id : -1;
}

//  --------------------------------------------------------------------------
//  The id of a registered event, or -1.

int evr_table_event_id(const evr_table_t *self, const char *name)
{
    assert(self);
    event_t *event = s_event_lookup(self, name);
    return event ? event->id : -1;
}

//  --------------------------------------------------------------------------
//  Subscribe, refresh or (expire_s == 0) unsubscribe; see evr_table.h.
//  Only EVR_TABLE_ADDED takes target. An unsubscribe never registers the
//  event (an unknown event answers EVR_TABLE_NOT_FOUND), and one that
//  meets an expired, not yet swept entry removes it and answers
//  EVR_TABLE_NOT_FOUND. Out of memory answers EVR_TABLE_ERROR.

evr_table_result_t evr_table_subscribe(evr_table_t *self, const char *event,
                                       const char *socket,
                                       const char *match_key, int64_t expire_s,
                                       int64_t now_ms, void *target)
{
    assert(self);
    assert(socket);
    assert(match_key);
    assert(!self->busy);
    if (expire_s < 0 && expire_s != EVR_EXPIRE_NEVER)
        return EVR_TABLE_ERROR;
    if (!evr_table_valid_name(event))
        return EVR_TABLE_ERROR;
    int64_t now_s = s_seconds(now_ms);

    if (expire_s == 0) {
        event_t *record = s_event_lookup(self, event);
        sub_t *sub = record ? s_sub_lookup(record, match_key) : NULL;
        if (!sub)
            return EVR_TABLE_NOT_FOUND;
        bool live = !s_expired(sub, now_s);
        s_sub_remove(self, sub);
        return live ? EVR_TABLE_REMOVED : EVR_TABLE_NOT_FOUND;
    }

    event_t *record = s_event_require(self, event);
    if (!record)
        return EVR_TABLE_ERROR;
    sub_t *sub = s_sub_lookup(record, match_key);
    if (sub && !s_expired(sub, now_s)) {
        if (s_sub_refresh(self, sub, socket, expire_s, now_s))
            return EVR_TABLE_ERROR;
        return EVR_TABLE_REFRESHED;
    }
    if (sub)
        s_sub_remove(self, sub); //  expired: replaced by a fresh entry
    if (!s_sub_add(self, record, socket, match_key, expire_s, now_s, target))
        return EVR_TABLE_ERROR;
    return EVR_TABLE_ADDED;
}

//  --------------------------------------------------------------------------
//  Call fn (may be NULL: just count) for each live subscription of event,
//  newest first, removing expired ones on the way. Registers an unknown
//  event if valid and there is room. Returns the number of live ones.

size_t evr_table_lookup(evr_table_t *self, const char *event, int64_t now_ms,
                        evr_table_sub_fn *fn, void *arg)
{
    assert(self);
    assert(!self->busy);
    event_t *record = s_event_require(self, event);
    if (!record)
        return 0;
    int64_t now_s = s_seconds(now_ms);
    size_t live = 0;
    sub_t *sub = record->newest;
    self->busy = true;
    while (sub) {
        sub_t *older = sub->older;
        if (s_expired(sub, now_s))
            s_sub_remove(self, sub);
        else {
            live++;
            if (fn) {
                evr_sub_info_t info;
                s_sub_info(sub, now_s, &info);
                fn(&info, arg);
            }
        }
        sub = older;
    }
    self->busy = false;
    return live;
}

//  --------------------------------------------------------------------------
//  Find one live subscription by match key. Returns 0 and fills *info
//  (valid until the next table call), or -1. Removes the entry if it has
//  expired. Never registers the event.

int evr_table_find(evr_table_t *self, const char *event, const char *match_key,
                   int64_t now_ms, evr_sub_info_t *info)
{
    assert(self);
    assert(match_key);
    assert(info);
    assert(!self->busy);
    event_t *record = s_event_lookup(self, event);
    sub_t *sub = record ? s_sub_lookup(record, match_key) : NULL;
    if (!sub)
        return -1;
    int64_t now_s = s_seconds(now_ms);
    if (s_expired(sub, now_s)) {
        s_sub_remove(self, sub);
        return -1;
    }
    s_sub_info(sub, now_s, info);
    return 0;
}

//  --------------------------------------------------------------------------
//  Call fn for every registered event, in id order.

void evr_table_events(const evr_table_t *self, evr_table_event_fn *fn,
                      void *arg)
{
    assert(self);
    assert(fn);
    //  Re-read the array each time: robust even if fn breaks the rules.
    for (size_t i = 0; i < self->event_count; i++)
        fn(self->events[i]->name, self->events[i]->id, arg);
}

//  --------------------------------------------------------------------------
//  Remove every expired subscription. Returns how many went.

size_t evr_table_sweep(evr_table_t *self, int64_t now_ms)
{
    assert(self);
    assert(!self->busy);
    int64_t now_s = s_seconds(now_ms);
    size_t removed = 0;
    while (self->heap_size > 0 && self->heap[0]->deadline_s < now_s) {
        s_sub_remove(self, self->heap[0]);
        removed++;
    }
    return removed;
}

//  --------------------------------------------------------------------------
//  Number of subscriptions (live or not yet swept).

size_t evr_table_size(const evr_table_t *self)
{
    assert(self);
    return self->size;
}

//  --------------------------------------------------------------------------
//  Number of subscriptions of one event (live or not yet swept).

size_t evr_table_sub_count(const evr_table_t *self, const char *event)
{
    assert(self);
    event_t *record = s_event_lookup(self, event);
    return record && record->subs ? zhashx_size(record->subs) : 0;
}

//  --------------------------------------------------------------------------
//  Number of registered events.

size_t evr_table_event_count(const evr_table_t *self)
{
    assert(self);
    return self->event_count;
}
