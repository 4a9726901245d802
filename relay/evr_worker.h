/*  evr_worker.h - a delivery worker thread.

    Each worker owns the I/O of the targets pinned to it (per-target order
    is kept because one thread writes each target). The core thread hands
    it batches of (target, message) jobs over an inproc PAIR socket, one
    ZeroMQ message per batch carrying a pointer; a job of a DELIVERED
    batch also hands over one hold on the batch's tracker (evr_track.h),
    which its delivery lets go at its final outcome. The worker is a reactor
    over its targets' sockets and timers (evr_transport.h), so one slow or
    dead backend never stalls the others.
*/
#ifndef EVR_WORKER_H_INCLUDED
#define EVR_WORKER_H_INCLUDED

#include "evr_target.h"
#include "evr_track.h"

typedef struct {
    evr_target_t *target; //  one reference, handed to the worker
    evr_msg_t *msg;       //  one reference, handed to the worker
    evr_track_t *track;   //  DELIVERED: one hold, handed over; else NULL
    uint32_t event;       //  the event's index in the tracker's batch
} evr_job_t;

typedef struct _evr_worker_t evr_worker_t;

//  Start worker number index on the ZeroMQ context ctx. NULL on failure.
evr_worker_t *evr_worker_new(void *ctx, int index);

//  Stop the thread (dropping what is still queued), free, NULL the pointer.
void evr_worker_destroy(evr_worker_t **self_p);

//  Core thread: hand over n jobs (jobs must be malloc'd; the worker frees
//  the array and owns every reference in it). Returns 0 or -1 (then the
//  caller still owns jobs).
int evr_worker_submit(evr_worker_t *self, evr_job_t *jobs, size_t n);

#endif
