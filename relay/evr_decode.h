/*  evr_decode.h - the relay's ingest decoding: Publish frames and events.

    Pure module shared by the relay's ingest path and the fuzz target:
    - evr_decode_publish: size bound, protobuf decode (into an arena, or
      with malloc), protocol version, producer id and sequence range;
    - evr_decode_event: checks one event against the limits (name, param
      count) and builds the borrowed evr_event_view_t the payload encoders
      read;
    - evr_arena_t: the bump allocator a frame is decoded into, reset once
      the frame is handled, so the steady state does no malloc.
*/
#ifndef EVR_DECODE_H_INCLUDED
#define EVR_DECODE_H_INCLUDED

#include "evr_event.h"
#include "evrelay.pb-c.h"

//  A bump allocator for protobuf-c: one decode, one reset. Embed it (its
//  address must not change after evr_arena_init).
typedef struct {
    char *base;
    size_t used, cap;
    size_t oversize; //  bytes handed out with malloc when base was full
    void **big;      //  those blocks
    size_t nbig, bigcap;
    ProtobufCAllocator pb; //  the hooks to pass to protobuf-c
} evr_arena_t;

//  Start an empty arena.
void evr_arena_init(evr_arena_t *arena);

//  Forget every allocation; grow the base block if the last decode needed
//  more (up to 64 MiB).
void evr_arena_reset(evr_arena_t *arena);

//  Free everything the arena holds (it can be initialised again).
void evr_arena_free(evr_arena_t *arena);

//  What evr_decode_publish found.
typedef enum {
    EVR_DECODE_OK = 0,
    EVR_DECODE_TOO_LARGE,   //  over max_bytes: not decoded, nothing to answer
    EVR_DECODE_MALFORMED,   //  not a Publish: nothing to answer
    EVR_DECODE_BAD_VERSION, //  decoded, another protocol version
    EVR_DECODE_BAD_HEADER   //  decoded, producer_id not 1..64 bytes, or
                            //  first_seq 0 or its range past 2^64
} evr_decode_rc_t;

//  Decode one Publish frame of size bytes with alloc (NULL: malloc). Sets
//  *pub for OK, BAD_VERSION and BAD_HEADER (free it with
//  evrelay__publish__free_unpacked(pub, alloc), or reset the arena), else
//  to NULL.
evr_decode_rc_t evr_decode_publish(const void *frame, size_t size,
                                   size_t max_bytes, ProtobufCAllocator *alloc,
                                   Evrelay__Publish **pub);

//  Why an event was refused (evr_decode_event's return values; 0,
//  EVR_DECODE_OK, when it is not).
typedef enum {
    EVR_DECODE_BAD_NAME = -1,       //  not 1..64 printable non-space chars
    EVR_DECODE_TOO_MANY_PARAMS = -2 //  more than max_params params
} evr_decode_result_t;

//  Fill view (and params, room for max_params entries) from e. Returns
//  EVR_DECODE_OK (0), or the first rule e breaks, checked in this order:
//  EVR_DECODE_BAD_NAME, EVR_DECODE_TOO_MANY_PARAMS (both negative).
int evr_decode_event(const Evrelay__Event *e, evr_param_t *params,
                     size_t max_params, evr_event_view_t *view);

#endif
