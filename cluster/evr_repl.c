/*  evr_repl.c - the replicated subscription records and the version vector.

    See evr_repl.h. Layout:
    - records: a zhashx key -> rec_t, the key being event '\n' match_key
      (event names may not hold '\n', so the key is unambiguous), stored
      in the record itself. Every record is also on a doubly linked list,
      so gc() and foreach() walk it and gc() can unlink as it goes without
      allocating anything.
    - a record is one allocation (struct, key and event name) plus one for
      socket and origin, which a newer version reuses when they did not
      change (the common refresh), so a refresh allocates nothing.
    - the digest is the XOR of a 64-bit hash of every record's (key, hlc,
      origin, tombstone): replacing or dropping a record XORs its old hash
      out, so it is kept up to date in O(1), and it does not depend on the
      order records arrived in.
    - the version vector: a zhashx origin -> origin_t with a small array of
      (instance, seq), as an origin only has more than one instance around
      a restart, until forget_before() drops the old ones. forget_before()
      also raises a floor: a late delta or snapshot entry of a forgotten
      instance is OLD and does not bring its entry back.

    Callbacks (the fn of foreach, gc and seq_foreach) must not change the
    map (merge, gc, seq_check, seq_raise, seq_forget_before, destroy); the
    read-only calls are fine. Debug builds assert this.
*/
#include "evr_repl.h"
#include "evr_hlc.h"

#include <czmq.h>

#include <assert.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

//  Keys up to this size are composed on the stack.
#define KEY_STACK 256

//  How long past its deadline a record may still be live: OpenSIPS' rule
//  counts whole seconds (see evr_repl_live).
#define LIVE_SLACK_MS 999

typedef struct _rec_t rec_t;
typedef struct _origin_t origin_t;

//  One record.
struct _rec_t {
    evr_record_t view; //  what find/foreach hand out; strings point below
    rec_t *prev;       //  list of every record
    rec_t *next;
    uint64_t hash; //  this record's share of the digest
    char *vals;    //  "socket\0origin\0", owned
    char key[];    //  "event\nmatch_key\0event\0"; also the zhashx key
};

//  The highest contiguous seq of one instance of an origin.
typedef struct {
    uint64_t instance;
    uint64_t seq;
} inst_t;

//  One origin of the version vector.
struct _origin_t {
    origin_t *next; //  list of every origin
    uint64_t floor; //  instances below this were forgotten
    inst_t *insts;  //  in the order first seen
    size_t count;
    size_t cap;
    char name[]; //  also the zhashx key
};

struct _evr_repl_t {
    int64_t max_lease_ms; //  longest deadline after a record's own time
    int64_t max_skew_ms;  //  clock skew allowed between relays
    int64_t window_ms;    //  gc drops a record this long after physical(hlc)
    zhashx_t *records;    //  key -> rec_t, keys owned by the records
    rec_t *head;          //  list of every record
    size_t size;
    uint64_t digest;
    zhashx_t *origins; //  name -> origin_t, keys owned by the origins
    origin_t *origins_head;
    bool busy; //  inside a callback: the map must not change
};

//  --------------------------------------------------------------------------
//  Helpers

//  Whether s is a non-empty string.
static bool s_nonempty(const char *s)
{
    return s && *s;
}

//  a + b for non-negative a and b, clamped to INT64_MAX.
static int64_t s_add_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return INT64_MAX;
    return r;
}

//  Milliseconds to whole seconds, rounding down (also for negative times).
static int64_t s_seconds(int64_t ms)
{
    int64_t s = ms / 1000;
    if (ms % 1000 < 0)
        s--;
    return s;
}

//  Run a callback: mark the map busy so that debug builds catch a callback
//  that changes it. The map is never really const (it comes from
//  evr_repl_new), so writing the flag through a const pointer is sound.
static void s_set_busy(const evr_repl_t *self, bool busy)
{
    ((evr_repl_t *)self)->busy = busy;
}

//  --------------------------------------------------------------------------
//  Digest: FNV-1a over the fields, then a 64-bit finalizer (from
//  MurmurHash3) so that every bit of the result depends on every input bit
//  and XORing hashes does not cancel patterns. Byte order is fixed, so
//  relays on any platform compute the same digest.

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

//  Feed size bytes into an FNV-1a state.
static uint64_t s_fnv(uint64_t h, const void *data, size_t size)
{
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < size; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

//  Spread the bits of h.
static uint64_t s_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

//  The digest share of a record. Strings are hashed with their NUL, so the
//  fields cannot run into each other.
static uint64_t s_record_hash(const char *key, uint64_t hlc, const char *origin,
                              bool tombstone)
{
    uint64_t h = FNV_OFFSET;
    h = s_fnv(h, key, strlen(key) + 1);
    h = s_fnv(h, origin, strlen(origin) + 1);
    unsigned char tail[9];
    for (int i = 0; i < 8; i++)
        tail[i] = (unsigned char)(hlc >> (8 * i));
    tail[8] = tombstone ? 1 : 0;
    h = s_fnv(h, tail, sizeof(tail));
    return s_mix(h);
}

//  --------------------------------------------------------------------------
//  Keys

//  Compose event '\n' match_key into buf when it fits, else into a new
//  heap buffer. Returns the key (free it unless it is buf), or NULL if out
//  of memory.
static char *s_key_compose(char *buf, size_t bufsize, const char *event,
                           const char *match_key)
{
    size_t event_len = strlen(event);
    size_t match_len = strlen(match_key);
    size_t need = event_len + 1 + match_len + 1;
    char *key = need <= bufsize ? buf : (char *)malloc(need);
    if (!key)
        return NULL;
    memcpy(key, event, event_len);
    key[event_len] = '\n';
    memcpy(key + event_len + 1, match_key, match_len + 1);
    return key;
}

//  --------------------------------------------------------------------------
//  Records

//  Whether a record may be stored: well formed, and within the rules gc()
//  relies on (the lease rule and the skew rule).
static bool s_valid(const evr_repl_t *self, const evr_record_t *rec)
{
    if (!s_nonempty(rec->event) || !s_nonempty(rec->socket) ||
        !s_nonempty(rec->match_key) || !s_nonempty(rec->origin))
        return false;
    if (strchr(rec->event, '\n'))
        return false; //  would make keys ambiguous
    uint64_t physical = EVR_HLC_PHYSICAL(rec->hlc);
    //  sub_time_ms > physical + max_skew_ms, without overflow.
    if (rec->sub_time_ms > physical &&
        rec->sub_time_ms - physical > (uint64_t)self->max_skew_ms)
        return false;
    if (rec->tombstone)
        return true;
    if (rec->expire_s == 0)
        return false;
    //  The lease rule: sub_time_ms + expire_s * 1000 > physical +
    //  max_lease_ms refuses, without overflow.
    uint64_t deadline;
    if (__builtin_add_overflow(rec->sub_time_ms, (uint64_t)rec->expire_s * 1000,
                               &deadline))
        return false;
    if (deadline > physical &&
        deadline - physical > (uint64_t)self->max_lease_ms)
        return false;
    return true;
}

//  Whether version a (hlc, then origin) is strictly newer than version b.
static bool s_newer(const evr_record_t *a, const evr_record_t *b)
{
    if (a->hlc != b->hlc)
        return a->hlc > b->hlc;
    return strcmp(a->origin, b->origin) > 0;
}

//  Copy src's version and contents (not its key) into r and recompute its
//  hash. Returns 0, or -1 if out of memory (r unchanged). src's strings may
//  point into r itself.
static int s_rec_set(rec_t *r, const evr_record_t *src)
{
    if (!r->vals || strcmp(r->view.socket, src->socket) != 0 ||
        strcmp(r->view.origin, src->origin) != 0) {
        size_t socket_len = strlen(src->socket);
        size_t origin_len = strlen(src->origin);
        char *vals = (char *)malloc(socket_len + 1 + origin_len + 1);
        if (!vals)
            return -1;
        memcpy(vals, src->socket, socket_len + 1);
        memcpy(vals + socket_len + 1, src->origin, origin_len + 1);
        free(r->vals); //  only now: src's strings may have pointed here
        r->vals = vals;
        r->view.socket = vals;
        r->view.origin = vals + socket_len + 1;
    }
    r->view.expire_s = src->expire_s;
    r->view.sub_time_ms = src->sub_time_ms;
    r->view.hlc = src->hlc;
    r->view.tombstone = src->tombstone;
    r->hash =
        s_record_hash(r->key, r->view.hlc, r->view.origin, r->view.tombstone);
    return 0;
}

//  Create a record under key (event '\n' match_key) holding a copy of src.
//  Returns it, or NULL if out of memory.
static rec_t *s_rec_new(const char *key, const evr_record_t *src)
{
    size_t key_len = strlen(key);
    size_t event_len = strlen(src->event);
    rec_t *r = (rec_t *)malloc(sizeof(rec_t) + key_len + 1 + event_len + 1);
    if (!r)
        return NULL;
    memset(r, 0, sizeof(rec_t));
    memcpy(r->key, key, key_len + 1);
    char *event = r->key + key_len + 1;
    memcpy(event, key, event_len);
    event[event_len] = '\0';
    r->view.event = event;
    r->view.match_key = r->key + event_len + 1;
    if (s_rec_set(r, src)) {
        free(r);
        return NULL;
    }
    return r;
}

//  Store a new record under key. Returns 0, or -1 if out of memory.
static int s_rec_insert(evr_repl_t *self, const char *key,
                        const evr_record_t *src)
{
    rec_t *r = s_rec_new(key, src);
    if (!r)
        return -1;
    if (zhashx_insert(self->records, r->key, r)) {
        //  Cannot happen: the caller looked the key up.
        free(r->vals);
        free(r);
        return -1;
    }
    r->next = self->head;
    if (self->head)
        self->head->prev = r;
    self->head = r;
    self->size++;
    self->digest ^= r->hash;
    return 0;
}

//  Replace a stored record's version. Returns 0, or -1 if out of memory
//  (unchanged).
static int s_rec_replace(evr_repl_t *self, rec_t *r, const evr_record_t *src)
{
    uint64_t old_hash = r->hash;
    if (s_rec_set(r, src))
        return -1;
    self->digest ^= old_hash ^ r->hash;
    return 0;
}

//  Unlink a record from everything and free it.
static void s_rec_remove(evr_repl_t *self, rec_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        self->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    zhashx_delete(self->records, r->key);
    self->size--;
    self->digest ^= r->hash;
    free(r->vals);
    free(r);
}

//  Whether gc() drops a record at now_ms: once its shadow window is over,
//  the same rule for tombstones and subscriptions (see evr_repl.h).
static bool s_rec_collectable(const evr_repl_t *self, const rec_t *r,
                              int64_t now_ms)
{
    bool over = now_ms > s_add_sat((int64_t)EVR_HLC_PHYSICAL(r->view.hlc),
                                   self->window_ms);
    //  The lease rule merge() enforces: never dropped while live.
    assert(!over || !evr_repl_live(&r->view, now_ms));
    return over;
}

//  --------------------------------------------------------------------------
//  Version vector

//  The origin of that name, or NULL.
static origin_t *s_origin_lookup(const evr_repl_t *self, const char *name)
{
    return (origin_t *)zhashx_lookup(self->origins, name);
}

//  The origin of that name, created if new. NULL if out of memory.
static origin_t *s_origin_require(evr_repl_t *self, const char *name)
{
    origin_t *o = s_origin_lookup(self, name);
    if (o)
        return o;
    size_t len = strlen(name);
    o = (origin_t *)calloc(1, sizeof(origin_t) + len + 1);
    if (!o)
        return NULL;
    memcpy(o->name, name, len + 1);
    if (zhashx_insert(self->origins, o->name, o)) {
        free(o);
        return NULL;
    }
    o->next = self->origins_head;
    self->origins_head = o;
    return o;
}

//  The entry of an instance of an origin, or NULL.
static inst_t *s_inst_lookup(const origin_t *o, uint64_t instance)
{
    for (size_t i = 0; i < o->count; i++)
        if (o->insts[i].instance == instance)
            return &o->insts[i];
    return NULL;
}

//  Add an entry for a new instance of an origin. Returns it, or NULL if out
//  of memory.
static inst_t *s_inst_add(origin_t *o, uint64_t instance, uint64_t seq)
{
    if (o->count == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 2;
        inst_t *insts = (inst_t *)realloc(o->insts, cap * sizeof(inst_t));
        if (!insts)
            return NULL;
        o->insts = insts;
        o->cap = cap;
    }
    inst_t *in = &o->insts[o->count++];
    in->instance = instance;
    in->seq = seq;
    return in;
}

//  --------------------------------------------------------------------------
//  Create an empty map. Negative bounds are taken as 0.

evr_repl_t *evr_repl_new(int64_t max_lease_ms, int64_t max_skew_ms)
{
    evr_repl_t *self = (evr_repl_t *)calloc(1, sizeof(evr_repl_t));
    if (!self)
        return NULL;
    self->max_lease_ms = max_lease_ms < 0 ? 0 : max_lease_ms;
    self->max_skew_ms = max_skew_ms < 0 ? 0 : max_skew_ms;
    self->window_ms = s_add_sat(
        s_add_sat(self->max_lease_ms, self->max_skew_ms), LIVE_SLACK_MS);
    self->records = zhashx_new();
    self->origins = zhashx_new();
    if (!self->records || !self->origins) {
        zhashx_destroy(&self->records);
        zhashx_destroy(&self->origins);
        free(self);
        return NULL;
    }
    //  Keys are the records' and origins' own strings.
    zhashx_set_key_duplicator(self->records, NULL);
    zhashx_set_key_destructor(self->records, NULL);
    zhashx_set_key_duplicator(self->origins, NULL);
    zhashx_set_key_destructor(self->origins, NULL);
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy and NULL the pointer. Safe on NULL.

void evr_repl_destroy(evr_repl_t **self_p)
{
    assert(self_p);
    evr_repl_t *self = *self_p;
    if (!self)
        return;
    assert(!self->busy);
    zhashx_destroy(&self->records);
    zhashx_destroy(&self->origins);
    rec_t *r = self->head;
    while (r) {
        rec_t *next = r->next;
        free(r->vals);
        free(r);
        r = next;
    }
    origin_t *o = self->origins_head;
    while (o) {
        origin_t *next = o->next;
        free(o->insts);
        free(o);
        o = next;
    }
    free(self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Merge a record (copied). Out of memory refuses it (nothing changed).

evr_repl_result_t evr_repl_merge(evr_repl_t *self, const evr_record_t *rec)
{
    assert(self);
    assert(rec);
    assert(!self->busy);
    if (!s_valid(self, rec))
        return EVR_REPL_REFUSED;
    char buf[KEY_STACK];
    char *key = s_key_compose(buf, sizeof(buf), rec->event, rec->match_key);
    if (!key)
        return EVR_REPL_REFUSED;
    evr_repl_result_t result;
    rec_t *r = (rec_t *)zhashx_lookup(self->records, key);
    if (r && !s_newer(rec, &r->view))
        result = EVR_REPL_STALE;
    else if (r)
        result =
            s_rec_replace(self, r, rec) ? EVR_REPL_REFUSED : EVR_REPL_APPLIED;
    else
        result =
            s_rec_insert(self, key, rec) ? EVR_REPL_REFUSED : EVR_REPL_APPLIED;
    if (key != buf)
        free(key);
    return result;
}

//  --------------------------------------------------------------------------
//  The record under (event, match_key), or NULL. Valid until the next call
//  that changes the map.

const evr_record_t *evr_repl_find(const evr_repl_t *self, const char *event,
                                  const char *match_key)
{
    assert(self);
    if (!event || !match_key || strchr(event, '\n'))
        return NULL;
    char buf[KEY_STACK];
    char *key = s_key_compose(buf, sizeof(buf), event, match_key);
    if (!key)
        return NULL;
    rec_t *r = (rec_t *)zhashx_lookup(self->records, key);
    if (key != buf)
        free(key);
    return r ? &r->view : NULL;
}

//  --------------------------------------------------------------------------
//  Call fn for every record (tombstones and expired shadows included), in
//  no order.

void evr_repl_foreach(const evr_repl_t *self, evr_repl_record_fn *fn, void *arg)
{
    assert(self);
    assert(fn);
    assert(!self->busy);
    s_set_busy(self, true);
    for (const rec_t *r = self->head; r; r = r->next)
        fn(&r->view, arg);
    s_set_busy(self, false);
}

//  --------------------------------------------------------------------------
//  Number of records (tombstones and expired shadows included).

size_t evr_repl_size(const evr_repl_t *self)
{
    assert(self);
    return self->size;
}

//  --------------------------------------------------------------------------
//  An order-independent digest of every record's version.

uint64_t evr_repl_digest(const evr_repl_t *self)
{
    assert(self);
    return self->digest;
}

//  --------------------------------------------------------------------------
//  Drop every record whose shadow window is over (a record past its
//  deadline stays until then, not live, so that it keeps making older
//  versions STALE). fn (may be NULL) sees each dropped record first (still
//  in the map). Returns how many went.

size_t evr_repl_gc(evr_repl_t *self, int64_t now_ms, evr_repl_record_fn *fn,
                   void *arg)
{
    assert(self);
    assert(!self->busy);
    size_t dropped = 0;
    rec_t *r = self->head;
    while (r) {
        rec_t *next = r->next;
        if (s_rec_collectable(self, r, now_ms)) {
            if (fn) {
                s_set_busy(self, true);
                fn(&r->view, arg);
                s_set_busy(self, false);
            }
            s_rec_remove(self, r);
            dropped++;
        }
        r = next;
    }
    return dropped;
}

//  --------------------------------------------------------------------------
//  Whether a record is live at now_ms: not a tombstone, and (OpenSIPS'
//  second rule, as in evr_table) now_s <= sub_time_s + expire_s.

bool evr_repl_live(const evr_record_t *rec, int64_t now_ms)
{
    assert(rec);
    if (rec->tombstone)
        return false;
    //  sub_time_ms / 1000 < 2^54 and expire_s < 2^32: no overflow.
    int64_t last_live_s =
        (int64_t)(rec->sub_time_ms / 1000) + (int64_t)rec->expire_s;
    return s_seconds(now_ms) <= last_live_s;
}

//  --------------------------------------------------------------------------
//  Version vector: account for delta `seq` of (origin, instance). A NULL or
//  empty origin, and an instance below what forget_before() dropped, are
//  OLD. Out of memory on a new instance's first delta says GAP (not
//  recorded: anti-entropy repairs it).

evr_seq_result_t evr_repl_seq_check(evr_repl_t *self, const char *origin,
                                    uint64_t instance, uint64_t seq)
{
    assert(self);
    assert(!self->busy);
    if (!s_nonempty(origin))
        return EVR_SEQ_OLD;
    origin_t *o = s_origin_lookup(self, origin);
    if (o && instance < o->floor)
        return EVR_SEQ_OLD;
    inst_t *in = o ? s_inst_lookup(o, instance) : NULL;
    uint64_t cur = in ? in->seq : 0;
    if (seq <= cur)
        return EVR_SEQ_OLD;
    if (seq - cur > 1)
        return EVR_SEQ_GAP;
    if (in) {
        in->seq = seq;
        return EVR_SEQ_NEXT;
    }
    if (!o)
        o = s_origin_require(self, origin);
    if (!o || !s_inst_add(o, instance, seq))
        return EVR_SEQ_GAP;
    return EVR_SEQ_NEXT;
}

//  --------------------------------------------------------------------------
//  Version vector: raise (origin, instance) to at least seq. Ignored for a
//  NULL or empty origin, seq 0, a forgotten instance, or out of memory.

void evr_repl_seq_raise(evr_repl_t *self, const char *origin, uint64_t instance,
                        uint64_t seq)
{
    assert(self);
    assert(!self->busy);
    if (!s_nonempty(origin) || seq == 0)
        return;
    origin_t *o = s_origin_require(self, origin);
    if (!o || instance < o->floor)
        return;
    inst_t *in = s_inst_lookup(o, instance);
    if (!in)
        s_inst_add(o, instance, seq);
    else if (seq > in->seq)
        in->seq = seq;
}

//  --------------------------------------------------------------------------
//  Version vector: the highest contiguous seq of (origin, instance), 0 when
//  unknown.

uint64_t evr_repl_seq_get(const evr_repl_t *self, const char *origin,
                          uint64_t instance)
{
    assert(self);
    if (!s_nonempty(origin))
        return 0;
    const origin_t *o = s_origin_lookup(self, origin);
    const inst_t *in = o ? s_inst_lookup(o, instance) : NULL;
    return in ? in->seq : 0;
}

//  --------------------------------------------------------------------------
//  Version vector: call fn for every entry, in no order.

void evr_repl_seq_foreach(const evr_repl_t *self, evr_repl_seq_fn *fn,
                          void *arg)
{
    assert(self);
    assert(fn);
    assert(!self->busy);
    s_set_busy(self, true);
    for (const origin_t *o = self->origins_head; o; o = o->next)
        for (size_t i = 0; i < o->count; i++)
            fn(o->name, o->insts[i].instance, o->insts[i].seq, arg);
    s_set_busy(self, false);
}

//  --------------------------------------------------------------------------
//  Version vector: forget instances of an origin older than `instance`,
//  and ignore them from now on (late deltas, snapshots of peers that did
//  not forget them yet).

void evr_repl_seq_forget_before(evr_repl_t *self, const char *origin,
                                uint64_t instance)
{
    assert(self);
    assert(!self->busy);
    if (!s_nonempty(origin))
        return;
    origin_t *o = s_origin_require(self, origin);
    if (!o || instance <= o->floor)
        return;
    o->floor = instance;
    size_t kept = 0;
    for (size_t i = 0; i < o->count; i++)
        if (o->insts[i].instance >= instance)
            o->insts[kept++] = o->insts[i];
    o->count = kept;
}
