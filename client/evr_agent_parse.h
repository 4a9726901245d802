/*  evr_agent_parse.h - parsers of an unmodified OpenSIPS's event output.

    Pure module (no I/O), used by evrelay-agent. It reads what OpenSIPS
    sends to its subscribers and gives back the event it describes:

    - a JSON-RPC 2.0 notification of OpenSIPS 3.1+ (event_datagram,
      event_stream), {"jsonrpc":"2.0","method":"E_X","params":{..}|[..]},
      optionally with an "id" (event_stream's reliable mode);
    - the legacy (<= 3.0) datagram text: "NAME\n", one "name::value\n" or
      "value\n" line per param (a value holding a newline in double quotes
      with inner quotes written \"), then an empty line.

    The JSON reader is our own small RFC 8259 scanner rather than jansson,
    because the event has to be re-encoded byte for byte as OpenSIPS would
    (the relay does that), and jansson cannot give back what OpenSIPS
    sends: it refuses bytes that are not UTF-8 (cJSON, which OpenSIPS uses,
    copies a value's bytes raw, whatever they are) and it merges duplicate
    keys (OpenSIPS repeats the key "" for every unnamed param that follows
    a named one). The scanner keeps key order and duplicates and takes any
    byte >= 0x80 inside a string as it is.

    Params map to the event like this:
    - object -> named params in key order; array -> positional params;
    - an integer literal that fits 64 bits -> int param (but "-0", which
      no encoder prints, stays text); a string -> string param (escapes
      decoded); null -> null param;
    - anything else (a fraction or exponent, an integer beyond 64 bits,
      true/false, a nested object or array) -> a string param holding the
      value's compact JSON text (its source with the whitespace between
      tokens removed: "1.50" stays "1.50", not 1.5).

    Everything a parse returns points into the parser and stays valid until
    the next parse with the same parser.
*/
#ifndef EVR_AGENT_PARSE_H_INCLUDED
#define EVR_AGENT_PARSE_H_INCLUDED

#include "evr_event.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct _evr_agent_parser_t evr_agent_parser_t;

//  Outcome of a parse. Everything but OK and INCOMPLETE is a reason to
//  count the input as malformed.
typedef enum {
    EVR_AGENT_OK = 0,
    EVR_AGENT_INCOMPLETE,  //  stream framing: more bytes needed (no error)
    EVR_AGENT_BAD_JSON,    //  not JSON: syntax, nesting too deep, bad escape
    EVR_AGENT_BAD_JSONRPC, //  JSON, not a JSON-RPC 2.0 notification/request
    EVR_AGENT_BAD_NAME,    //  the event name is not 1..64 printable ASCII
    EVR_AGENT_BAD_PARAMS,  //  a param name holds a NUL, or too many params
    EVR_AGENT_BAD_ID,      //  "id" is not an integer or a string
    EVR_AGENT_BAD_LEGACY,  //  legacy text not shaped as OpenSIPS writes it
    EVR_AGENT_BAD_FRAME,   //  a netstring (Kamailio evapi) not LEN:DATA,
    EVR_AGENT_TOO_LARGE,   //  over a size bound (datagram, stream object)
    EVR_AGENT_RC_COUNT
} evr_agent_rc_t;

//  Parser options; zero-initialise, then set what you need.
typedef struct {
    //  Params per event; more is BAD_PARAMS. 0 = EVR_DEFAULT_MAX_PARAMS.
    size_t max_params;
    //  event_stream's event_param, as configured in OpenSIPS, or NULL.
    //  When set, the event name is taken from the params' first entry (the
    //  key event_param of an object, or the first element of an array) and
    //  that entry is removed; "method" then names the event only when the
    //  event has no params (OpenSIPS leaves event_param out then).
    const char *event_param;
    //  Legacy text: keep every value a string. Default: a value written as
    //  a canonical decimal integer (-?(0|[1-9][0-9]*), 64-bit) becomes an
    //  int param, since the legacy format does not say which values were
    //  ints.
    bool legacy_strings;
} evr_agent_parse_opts_t;

//  One parsed input.
typedef struct {
    //  The event: name (NUL-terminated) and params. Param names and string
    //  values are NUL-terminated too (a value may also hold NULs; use
    //  s_len). An empty key "" is a named param with an empty name.
    evr_event_view_t event;
    //  JSON: the "id" member's source text (an integer literal, or a
    //  string literal with its quotes), ready to be echoed in a reply;
    //  NULL when there is none. Points into the parsed input.
    const char *id;
    size_t id_len;
    //  true when the input was legacy text.
    bool legacy;
} evr_agent_msg_t;

//  Create a parser. opts may be NULL. NULL when out of memory.
evr_agent_parser_t *evr_agent_parser_new(const evr_agent_parse_opts_t *opts);

//  Destroy a parser and NULL the pointer.
void evr_agent_parser_destroy(evr_agent_parser_t **self_p);

//  Parse one JSON-RPC object (whitespace around it allowed, nothing else).
//  Returns EVR_AGENT_OK and fills *msg, or a reason.
evr_agent_rc_t evr_agent_parse_jsonrpc(evr_agent_parser_t *self,
                                       const char *data, size_t len,
                                       evr_agent_msg_t *msg);

//  Parse one legacy text datagram. Returns EVR_AGENT_OK or a reason.
evr_agent_rc_t evr_agent_parse_legacy(evr_agent_parser_t *self,
                                      const char *data, size_t len,
                                      evr_agent_msg_t *msg);

//  Parse one datagram: JSON-RPC when its first byte is '{', else legacy
//  text. Returns EVR_AGENT_OK or a reason.
evr_agent_rc_t evr_agent_parse_datagram(evr_agent_parser_t *self,
                                        const char *data, size_t len,
                                        evr_agent_msg_t *msg);

//  The short name of a reason, for counters and logs ("bad_json", ...).
const char *evr_agent_rc_name(evr_agent_rc_t rc);

//  --------------------------------------------------------------------------
//  Stream framing: event_stream writes JSON objects back to back with no
//  delimiter. The framer finds where the first object of a buffer ends by
//  tracking strings, escapes and bracket depth, resuming where it stopped
//  when more bytes arrive; the object is then parsed in full with
//  evr_agent_parse_jsonrpc. Whitespace between objects is skipped.

typedef struct {
    size_t scanned; //  bytes of the buffer already looked at
    size_t depth;   //  open brackets
    bool started;   //  the object's '{' was seen
    bool in_string;
    bool escape;
} evr_agent_framer_t;

//  Forget the state: call after the buffer's front was consumed.
void evr_agent_framer_reset(evr_agent_framer_t *framer);

//  Look for the end of the first object of data[0..len) (the same buffer
//  as the previous call, possibly with more bytes appended). Returns
//  - EVR_AGENT_OK: the object is data[*skip .. *end);
//  - EVR_AGENT_INCOMPLETE: more bytes needed; the first *skip bytes are
//    whitespace that may be dropped (then reset the framer);
//  - EVR_AGENT_BAD_JSON: the next thing is not an object (the stream
//    cannot be resynchronised: close it).
evr_agent_rc_t evr_agent_framer_next(evr_agent_framer_t *framer,
                                     const char *data, size_t len, size_t *skip,
                                     size_t *end);

//  --------------------------------------------------------------------------
//  Netstring framing, as Kamailio's evapi module writes its messages with
//  netstring_format=1 (the default): "LEN:DATA," where LEN is the decimal
//  length of DATA (no sign, no leading zeros).

//  Look for the first netstring of data[0..len). Returns
//  - EVR_AGENT_OK: the payload is data[*start .. *end), and the netstring
//    takes *end + 1 bytes (the ',');
//  - EVR_AGENT_INCOMPLETE: more bytes needed;
//  - EVR_AGENT_TOO_LARGE: LEN is over max;
//  - EVR_AGENT_BAD_FRAME: not a netstring (the stream cannot go on).
evr_agent_rc_t evr_agent_netstring_next(const char *data, size_t len,
                                        size_t max, size_t *start, size_t *end);

#endif
