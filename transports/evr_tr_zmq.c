/*  evr_tr_zmq.c - placeholder until the zmq transport lands on this branch. */
#include "evr_transport.h"

#include <stdio.h>

//  Refuse: the transport is not built yet.
static int s_open(evr_target_t *t, char *err, size_t errlen)
{
    snprintf(err, errlen, "zmq: transport not available yet");
    return -1;
}

//  Nothing to flush.
static void s_flush(evr_target_t *t, int64_t now_us)
{
}

const evr_transport_ops_t evr_tr_zmq = {
    .name = "zmq",
    .open = s_open,
    .flush = s_flush,
};
