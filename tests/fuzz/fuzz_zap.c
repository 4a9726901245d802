/*  fuzz_zap.c - libFuzzer target for the ZAP handler's decision
    (evr_zap_parse, evr_zap_decide).

    The input is a ZAP request as frames, each a length byte and that many
    bytes (what ZeroMQ hands the relay's handler). A request must parse or
    fail with a reason; a parsed one is decided against a keyring that
    allows one key on "ingest". Abort when a decision says 200 for anything
    but that key on that domain, or when a refusal names no reason.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "evr_zap.h"

#define MAX_FRAMES 8

static const char *const s_domains[] = {"ingest", "control", "cluster"};
//  The one allowed key (32 bytes of 'k'), and its Z85 text.
static uint8_t s_key[32];
static char s_key_z85[41];
static evr_keyring_t *s_ring;

//  Build the keyring once.
static void s_setup(void)
{
    if (s_ring)
        return;
    memset(s_key, 'k', sizeof s_key);
    zmq_z85_encode(s_key_z85, s_key, sizeof s_key);
    s_ring = evr_keyring_new(s_domains, 3);
    if (!s_ring || evr_keyring_begin(s_ring, 0) ||
        evr_keyring_add(s_ring, s_key_z85, "producer"))
        abort();
    evr_keyring_commit(s_ring);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_setup();
    const void *frames[MAX_FRAMES];
    size_t lens[MAX_FRAMES];
    size_t n = 0, at = 0;
    while (at < size && n < MAX_FRAMES) {
        size_t len = data[at++];
        if (len > size - at)
            len = size - at;
        frames[n] = data + at;
        lens[n++] = len;
        at += len;
    }
    evr_zap_request_t req;
    char err[128] = "";
    if (evr_zap_parse(frames, lens, n, &req, err, sizeof err)) {
        if (!err[0])
            abort();
        return 0;
    }
    evr_zap_reply_t reply;
    bool ok = evr_zap_decide(s_ring, &req, &reply);
    bool expected = !strcmp(req.domain, "ingest") &&
                    !strcmp(req.mechanism, "CURVE") && req.has_key &&
                    !memcmp(req.key, s_key, sizeof s_key);
    if (ok != expected || strcmp(reply.status, ok ? "200" : "400") ||
        !reply.text || !reply.text[0])
        abort();
    if (ok && strcmp(reply.user_id, "producer"))
        abort();
    return 0;
}
