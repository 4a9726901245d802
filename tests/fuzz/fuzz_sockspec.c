/*  fuzz_sockspec.c - libFuzzer target for evr_sockspec_parse.

    Any input must parse or fail cleanly with a one-line reason. A parsed
    spec's canonical form must parse again to the same canonical form,
    match key, transport, port and evid: flag (a rabbitmq re-parse gets
    the default password, since the canonical form hides it), and a dup
    must equal the original, password and children included; abort()
    otherwise.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evr_sockspec.h"

//  Abort with a message naming the canonical form.
static void s_fail(const evr_sockspec_t *spec, const char *what)
{
    fprintf(stderr, "'%s': %s\n", evr_sockspec_canonical(spec), what);
    abort();
}

//  True if a and b are both NULL or equal strings.
static int s_same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

//  Abort unless copy equals spec in every field, children included.
static void s_check_copy(const evr_sockspec_t *spec, const evr_sockspec_t *copy)
{
    const char *(*fields[])(const evr_sockspec_t *) = {
        evr_sockspec_canonical, evr_sockspec_match_key,
        evr_sockspec_host,      evr_sockspec_path,
        evr_sockspec_method,    evr_sockspec_user,
        evr_sockspec_password,  evr_sockspec_vhost,
        evr_sockspec_exchange,  evr_sockspec_routing_key,
        evr_sockspec_endpoint,  evr_sockspec_transport_name,
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (!s_same(fields[i](spec), fields[i](copy)))
            s_fail(spec, "dup differs");
    if (evr_sockspec_transport(spec) != evr_sockspec_transport(copy) ||
        evr_sockspec_port(spec) != evr_sockspec_port(copy) ||
        evr_sockspec_persistent(spec) != evr_sockspec_persistent(copy) ||
        evr_sockspec_zmq_pub(spec) != evr_sockspec_zmq_pub(copy) ||
        evr_sockspec_tls(spec) != evr_sockspec_tls(copy) ||
        evr_sockspec_event_id(spec) != evr_sockspec_event_id(copy) ||
        evr_sockspec_policy(spec) != evr_sockspec_policy(copy) ||
        evr_sockspec_child_count(spec) != evr_sockspec_child_count(copy))
        s_fail(spec, "dup differs");
    for (size_t i = 0; i < evr_sockspec_child_count(spec); i++)
        s_check_copy(evr_sockspec_child(spec, i), evr_sockspec_child(copy, i));
}

//  Abort unless the canonical form looks right: no whitespace except the
//  single spaces between a virtual socket's parts.
static void s_check_canonical(const evr_sockspec_t *spec)
{
    const char *canonical = evr_sockspec_canonical(spec);
    int is_virtual = evr_sockspec_transport(spec) == EVR_TRANSPORT_VIRTUAL;
    for (const char *p = canonical; *p; p++) {
        if (*p == ' ' && is_virtual && p[1] != ' ' && p[1] != '\0')
            continue;
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            s_fail(spec, "whitespace or control byte in canonical form");
    }
}

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
    if (err[0] != '\0')
        s_fail(spec, "accepted with a reason");
    s_check_canonical(spec);

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
        strcmp(evr_sockspec_transport_name(spec),
               evr_sockspec_transport_name(again)) != 0 ||
        evr_sockspec_port(spec) != evr_sockspec_port(again) ||
        evr_sockspec_event_id(spec) != evr_sockspec_event_id(again) ||
        evr_sockspec_child_count(spec) != evr_sockspec_child_count(again)) {
        fprintf(stderr, "canonical '%s' re-parses to '%s'\n",
                evr_sockspec_canonical(spec), evr_sockspec_canonical(again));
        abort();
    }
    //  The canonical form hides the password: a re-parse gets the default.
    if (evr_sockspec_transport(spec) == EVR_TRANSPORT_RABBITMQ &&
        strcmp(evr_sockspec_password(again), "guest") != 0)
        s_fail(spec, "canonical form shows a password");

    evr_sockspec_t *copy = evr_sockspec_dup(spec);
    if (!copy)
        s_fail(spec, "dup failed");
    s_check_copy(spec, copy);
    evr_sockspec_destroy(&spec);
    //  Use the copy after the original is gone: AddressSanitizer catches
    //  a shallow copy here.
    evr_sockspec_t *copy2 = evr_sockspec_dup(copy);
    if (!copy2)
        s_fail(copy, "dup failed");
    s_check_copy(copy, copy2);
    evr_sockspec_destroy(&again);
    evr_sockspec_destroy(&copy);
    evr_sockspec_destroy(&copy2);
    free(text);
    return 0;
}
