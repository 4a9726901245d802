/*  fuzz_sockspec.c - libFuzzer target for evr_sockspec_parse.

    Any input must parse or fail cleanly. A parsed spec's canonical form
    must parse again to the same canonical form and match key; abort()
    otherwise.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evr_sockspec.h"

//  Parse one input; check the canonical form round-trips.
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = (char *)malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    char err[256];
    evr_sockspec_t *spec = evr_sockspec_parse(text, err, sizeof(err));
    if (!spec) {
        if (strlen(err) == 0 || strchr(err, '\n')) {
            fprintf(stderr, "bad reason for rejected input\n");
            abort();
        }
        free(text);
        return 0;
    }
    char err2[256];
    evr_sockspec_t *again =
        evr_sockspec_parse(evr_sockspec_canonical(spec), err2, sizeof(err2));
    if (!again) {
        fprintf(stderr, "canonical '%s' rejected: %s\n",
                evr_sockspec_canonical(spec), err2);
        abort();
    }
    if (strcmp(evr_sockspec_canonical(spec), evr_sockspec_canonical(again)) !=
            0 ||
        strcmp(evr_sockspec_match_key(spec), evr_sockspec_match_key(again)) !=
            0 ||
        evr_sockspec_transport(spec) != evr_sockspec_transport(again) ||
        evr_sockspec_port(spec) != evr_sockspec_port(again)) {
        fprintf(stderr, "canonical '%s' re-parses to '%s'\n",
                evr_sockspec_canonical(spec), evr_sockspec_canonical(again));
        abort();
    }
    evr_sockspec_destroy(&again);
    evr_sockspec_destroy(&spec);
    free(text);
    return 0;
}
