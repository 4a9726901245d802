/*  evr_event.h - a borrowed view of one event and its parameters.

    Encoders and the dispatcher work on this view; it points into memory
    owned by someone else (a decoded protobuf message, a test's literals),
    so building one costs no allocation.
*/
#ifndef EVR_EVENT_H_INCLUDED
#define EVR_EVENT_H_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef enum {
    EVR_PARAM_NULL = 0, //  a string param with no value: JSON null
    EVR_PARAM_INT = 1,
    EVR_PARAM_STR = 2
} evr_param_type_t;

typedef struct {
    const char *name; //  NULL for a positional (unnamed) param
    size_t name_len;
    evr_param_type_t type;
    int64_t i;
    const char *s; //  not NUL-terminated
    size_t s_len;
} evr_param_t;

typedef struct {
    const char *name;
    size_t name_len;
    const evr_param_t *params;
    size_t nparams;
} evr_event_view_t;

//  Wall-clock microseconds since the epoch: the clock producers stamp
//  raised_us with, so raise->delivery latency compares like with like.
static inline int64_t evr_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#endif
