/*  evr_decode.c - the relay's ingest decoding: Publish frames and events.
*/
#include "evr_decode.h"
#include "evr_defaults.h"
#include "evr_table.h"

#include <stdlib.h>
#include <string.h>

//  --- arena allocator for protobuf-c ---------------------------------------

//  protobuf-c alloc hook: bump-allocate, 16-byte aligned.
static void *s_arena_alloc(void *data, size_t size)
{
    evr_arena_t *a = data;
    size = (size + 15) & ~(size_t)15;
    if (size <= a->cap - a->used) {
        void *p = a->base + a->used;
        a->used += size;
        return p;
    }
    if (a->nbig == a->bigcap) {
        size_t cap = a->bigcap ? a->bigcap * 2 : 16;
        void **grown = realloc(a->big, cap * sizeof *grown);
        if (!grown)
            return NULL;
        a->big = grown;
        a->bigcap = cap;
    }
    void *p = malloc(size);
    if (p) {
        a->big[a->nbig++] = p;
        a->oversize += size;
    }
    return p;
}

//  protobuf-c free hook: nothing, the arena is reset per frame.
static void s_arena_free(void *data, void *ptr)
{
}

//  Start an empty arena.
void evr_arena_init(evr_arena_t *arena)
{
    *arena = (evr_arena_t){.pb = {s_arena_alloc, s_arena_free, arena}};
}

//  Forget every allocation; grow the base block if the last frame needed
//  more, so the steady state does no malloc at all.
void evr_arena_reset(evr_arena_t *a)
{
    for (size_t i = 0; i < a->nbig; i++)
        free(a->big[i]);
    a->nbig = 0;
    if (a->oversize && a->cap + a->oversize <= 64 * 1024 * 1024) {
        size_t cap = (a->cap + a->oversize) * 2;
        char *base = malloc(cap);
        if (base) {
            free(a->base);
            a->base = base;
            a->cap = cap;
        }
    }
    a->oversize = 0;
    a->used = 0;
}

//  Free everything the arena holds.
void evr_arena_free(evr_arena_t *a)
{
    evr_arena_reset(a);
    free(a->base);
    free(a->big);
    evr_arena_init(a);
}

//  --- Publish --------------------------------------------------------------

//  Decode one Publish frame and check its header.
evr_decode_rc_t evr_decode_publish(const void *frame, size_t size,
                                   size_t max_bytes, ProtobufCAllocator *alloc,
                                   Evrelay__Publish **pub_p)
{
    *pub_p = NULL;
    if (size > max_bytes)
        return EVR_DECODE_TOO_LARGE;
    Evrelay__Publish *pub = evrelay__publish__unpack(alloc, size, frame);
    if (!pub)
        return EVR_DECODE_MALFORMED;
    *pub_p = pub;
    if (pub->version != EVR_PROTOCOL_VERSION)
        return EVR_DECODE_BAD_VERSION;
    if (pub->producer_id.len == 0 || pub->producer_id.len > 64 ||
        pub->first_seq == 0 ||
        (pub->n_events > 0 &&
         pub->first_seq + (pub->n_events - 1) < pub->first_seq))
        return EVR_DECODE_BAD_HEADER;
    return EVR_DECODE_OK;
}

//  --- Event ----------------------------------------------------------------

//  Fill view (and params) from e.
int evr_decode_event(const Evrelay__Event *e, evr_param_t *params,
                     size_t max_params, evr_event_view_t *view)
{
    if (!e->name || !evr_table_valid_name(e->name))
        return EVR_DECODE_BAD_NAME;
    if (e->n_params > max_params)
        return EVR_DECODE_TOO_MANY_PARAMS;
    for (size_t i = 0; i < e->n_params; i++) {
        const Evrelay__Param *p = e->params[i];
        evr_param_t *out = &params[i];
        out->name = p->name;
        out->name_len = p->name ? strlen(p->name) : 0;
        out->i = 0;
        out->s = NULL;
        out->s_len = 0;
        switch (p->value_case) {
            case EVRELAY__PARAM__VALUE_INT_VALUE:
                out->type = EVR_PARAM_INT;
                out->i = p->int_value;
                break;
            case EVRELAY__PARAM__VALUE_STR_VALUE:
                out->type = EVR_PARAM_STR;
                out->s = (const char *)p->str_value.data;
                out->s_len = p->str_value.len;
                break;
            default:
                out->type = EVR_PARAM_NULL;
                break;
        }
    }
    view->name = e->name;
    view->name_len = strlen(e->name);
    view->params = params;
    view->nparams = e->n_params;
    return EVR_DECODE_OK;
}
