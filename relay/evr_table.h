/*  evr_table.h - the subscription table, with OpenSIPS' rules.

    Pure module: no I/O, no clock of its own (every call that needs the
    time takes `now_ms`, so tests inject it).

    - An event registry: names (at most EVR_MAX_EVENT_NAME characters) with
      dense ids in the order they were first registered (catalogue, then
      events subscribed or raised). Bounded by max_events.
    - Per event, subscriptions newest first. A subscription is keyed by its
      transport match key; it holds the canonical socket string, its expire,
      its subscription time and an opaque target pointer owned by the table
      (released through the release callback when the entry goes).
    - Expiry uses OpenSIPS' second-granularity rule: an entry with expire E
      subscribed at second T is live while now_s <= T + E; it lists with ttl
      (T + E - now_s), "expired" when that is 0, and is removed once
      now_s > T + E (lazily on lookup/list, and by evr_table_sweep).
    - expire EVR_EXPIRE_NEVER never expires (static config subscriptions).
*/
#ifndef EVR_TABLE_H_INCLUDED
#define EVR_TABLE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVR_EXPIRE_NEVER (-1)

typedef struct _evr_table_t evr_table_t;

//  What subscribe did.
typedef enum {
    EVR_TABLE_ERROR = -1, //  bad event name or registry full
    EVR_TABLE_ADDED = 0,  //  new entry; the table took `target`
    EVR_TABLE_REFRESHED,  //  existing entry refreshed; `target` not taken
    EVR_TABLE_REMOVED,    //  expire 0 removed an entry; `target` not taken
    EVR_TABLE_NOT_FOUND   //  expire 0, nothing matched; `target` not taken
} evr_table_result_t;

//  A read-only view of one subscription, valid during a callback.
typedef struct {
    const char *event;
    int event_id;
    const char *socket; //  canonical socket string
    const char *match_key;
    int64_t expire_s;   //  EVR_EXPIRE_NEVER or >= 1
    int64_t sub_time_s; //  when (re)subscribed, seconds since the epoch
    int64_t ttl_s;      //  seconds left; 0 = "expired"; -1 = never expires
    void *target;
} evr_sub_info_t;

typedef void(evr_table_release_fn)(void *target, void *arg);
typedef void(evr_table_event_fn)(const char *name, int id, void *arg);
typedef void(evr_table_sub_fn)(const evr_sub_info_t *info, void *arg);

//  Create a table that remembers at most max_events event names.
//  release (may be NULL) is called with arg for each target the table drops.
evr_table_t *evr_table_new(size_t max_events, evr_table_release_fn *release,
                           void *arg);

//  Destroy the table, releasing every target, and NULL the pointer.
void evr_table_destroy(evr_table_t **self_p);

//  Whether name is an acceptable event name (1..64 printable, non-space
//  characters).
bool evr_table_valid_name(const char *name);

//  Register an event name if it is new. Returns its id, or -1 when the
//  name is invalid or the registry is full.
int evr_table_register(evr_table_t *self, const char *name);

//  The id of a registered event, or -1.
int evr_table_event_id(const evr_table_t *self, const char *name);

//  Subscribe, refresh or (expire_s == 0) unsubscribe. expire_s is seconds,
//  EVR_EXPIRE_NEVER, or 0. Refresh sets the subscription time to now, the
//  socket to `socket`, and the expire to expire_s unless expire_s is
//  EVR_EXPIRE_NEVER (a permanent re-subscribe never makes an expiring entry
//  permanent, as in OpenSIPS). Registers the event if needed.
evr_table_result_t evr_table_subscribe(evr_table_t *self, const char *event,
                                       const char *socket,
                                       const char *match_key, int64_t expire_s,
                                       int64_t now_ms, void *target);

//  Call fn for each live subscription of event, newest first, removing
//  expired ones on the way. If the event is unknown it is registered (if
//  valid and there is room). Returns the number of live subscriptions.
size_t evr_table_lookup(evr_table_t *self, const char *event, int64_t now_ms,
                        evr_table_sub_fn *fn, void *arg);

//  Find one live subscription by match key. Returns 0 and fills *info
//  (valid until the next table call), or -1.
int evr_table_find(evr_table_t *self, const char *event, const char *match_key,
                   int64_t now_ms, evr_sub_info_t *info);

//  Call fn for every registered event, in id order.
void evr_table_events(const evr_table_t *self, evr_table_event_fn *fn,
                      void *arg);

//  Remove every expired subscription. Returns how many went.
size_t evr_table_sweep(evr_table_t *self, int64_t now_ms);

//  Number of subscriptions (live or not yet swept).
size_t evr_table_size(const evr_table_t *self);

//  Number of subscriptions of one event (live or not yet swept); 0 for an
//  unknown event. Never registers the event.
size_t evr_table_sub_count(const evr_table_t *self, const char *event);

//  Number of registered events.
size_t evr_table_event_count(const evr_table_t *self);

#endif
