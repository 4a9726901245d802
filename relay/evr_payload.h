/*  evr_payload.h - payload encoders, byte-compatible with OpenSIPS.

    Pure module (no I/O). Builds the bytes a subscriber receives:
    - the compact JSON-RPC 2.0 notification of OpenSIPS 3.1+ (datagram,
      stream, rabbitmq): keys id?,jsonrpc,method,params; object or array
      chosen by the first param; params left out when there are none;
      cJSON string escaping;
    - the legacy (<= 3.0) datagram text format;
    - the event_flatstore line.
    Output goes to an evr_buf_t, a growable byte buffer.
*/
#ifndef EVR_PAYLOAD_H_INCLUDED
#define EVR_PAYLOAD_H_INCLUDED

#include "evr_event.h"
#include <stdbool.h>

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} evr_buf_t;

//  Empty the buffer, keeping its memory.
void evr_buf_reset(evr_buf_t *buf);

//  Release the buffer's memory.
void evr_buf_free(evr_buf_t *buf);

//  Append len bytes. Returns 0, or -1 when out of memory.
int evr_buf_append(evr_buf_t *buf, const void *data, size_t len);

//  Append s as a JSON string literal (with quotes), escaped as cJSON
//  does: \" \\ \b \f \n \r \t, other bytes < 0x20 as \u00xx (lowercase hex),
//  everything else raw. Returns 0 or -1.
int evr_buf_append_json_string(evr_buf_t *buf, const char *s, size_t len);

//  Options for the JSON-RPC notification.
typedef struct {
    uint64_t id;             //  0 = notification (no "id" key); else put first
    const char *method;      //  NULL = the event name
    const char *event_param; //  NULL = none; else event_stream's event_param
} evr_jsonrpc_opts_t;

//  Append the JSON-RPC notification for ev. opts may be NULL.
//  Returns 0 or -1.
int evr_payload_jsonrpc(evr_buf_t *buf, const evr_event_view_t *ev,
                        const evr_jsonrpc_opts_t *opts);

//  Append to out the variant for opts (id, method, event_param) of a
//  notification that evr_payload_jsonrpc(buf, ev, NULL) produced (json,
//  len bytes), byte-identical to evr_payload_jsonrpc(buf, ev, opts). event
//  is the event's name (not escaped; needed for opts->event_param). This
//  is how a transport derives its own variant (event_stream's ids, methods
//  and event_param) from the payload the relay encoded once per event,
//  without the event itself. opts may be NULL (a copy). Returns 0, or -1
//  when json is not of that shape or out of memory (out unchanged).
int evr_payload_jsonrpc_rewrite(evr_buf_t *out, const char *json, size_t len,
                                const char *event,
                                const evr_jsonrpc_opts_t *opts);

//  The name of the param that carries the event id for evid: subscribers
//  (docs/OPERATIONS.md, event ids).
#define EVR_PAYLOAD_ID_PARAM "evrelay_id"

//  Append to out the notification json (len bytes, as evr_payload_jsonrpc
//  with no opts produced it) with the event id added as its FIRST param:
//  an object gets "evrelay_id":"ID" as its first key, an array "ID" as its
//  first element, and a notification without params gets
//  "params":{"evrelay_id":"ID"}. Everything else is copied byte for byte.
//  Returns 0, or -1 when json is not of that shape or out of memory (out
//  unchanged).
int evr_payload_jsonrpc_add_id(evr_buf_t *out, const char *json, size_t len,
                               const char *id);

//  Append to out the legacy text (as evr_payload_legacy produced it) with
//  the line "evrelay_id::ID" as its first param line, after the name.
//  Returns 0 or -1 (out unchanged).
int evr_payload_legacy_add_id(evr_buf_t *out, const char *text, size_t len,
                              const char *id);

//  Append to out the flatstore line (as evr_payload_flatstore produced it
//  for event with this delimiter and suppress_name) with the event id as
//  its first value (delimiter characters in it replaced as in any value).
//  Returns 0 or -1 (out unchanged).
int evr_payload_flatstore_add_id(evr_buf_t *out, const char *line, size_t len,
                                 const char *event, const char *delimiter,
                                 bool suppress_name, const char *id);

//  Append the legacy (OpenSIPS <= 3.0) datagram text: "NAME\n", then
//  "name::value\n" per param (value in quotes with inner quotes escaped when
//  it holds a newline), then an empty line. Returns 0 or -1.
int evr_payload_legacy(evr_buf_t *buf, const evr_event_view_t *ev);

//  Append the flatstore line "[NAME<D>]v1<D>v2...\n": values only, ints in
//  decimal, null/empty strings empty, each occurrence of the delimiter's
//  first character inside a string value replaced by a space.
//  Returns 0 or -1.
int evr_payload_flatstore(evr_buf_t *buf, const evr_event_view_t *ev,
                          const char *delimiter, bool suppress_name);

#endif
