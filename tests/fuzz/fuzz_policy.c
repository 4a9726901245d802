/*  fuzz_policy.c - libFuzzer target for the control-plane policy
    (evr_policy): its INI values, the destination allowlist, grants and
    HTTP credentials.

    The input is lines: "SECTION KEY VALUE" lines set the policy (as the
    config file would), then the last line is a socket string checked
    against the allowlist, and its first word also serves as an operator
    name, a bearer token and a basic password. Everything must succeed or
    fail with a reason; a refusal must name its rule.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evr_policy.h"
#include "evr_sockspec.h"

//  Abort on a refusal without a rule name or message.
static void s_check_denial(int rc, const evr_denial_t *denial)
{
    if (rc && (!denial->rule[0] || !denial->message[0]))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    evr_policy_rules_t *rules = evr_policy_new();
    char *save = NULL, *last = "";
    for (char *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        last = line;
        char section[32], key[128];
        int used = 0;
        if (sscanf(line, "%31s %127s %n", section, key, &used) == 2 &&
            evr_policy_section(section)) {
            char err[512] = "";
            if (evr_policy_set(rules, section, key, line + used, err,
                               sizeof err) &&
                !err[0])
                abort();
        }
    }
    char err[256];
    evr_sockspec_t *spec = evr_sockspec_parse(last, err, sizeof err);
    evr_denial_t denial;
    if (spec) {
        memset(&denial, 0, sizeof denial);
        s_check_denial(evr_policy_check_socket(rules, spec, &denial), &denial);
        evr_sockspec_destroy(&spec);
    }
    char who[64] = "";
    sscanf(last, "%63s", who);
    for (int a = EVR_ACTION_UNKNOWN; a < EVR_ACTION_COUNT; a++) {
        memset(&denial, 0, sizeof denial);
        s_check_denial(evr_policy_permit(rules, who, (evr_action_t)a, &denial),
                       &denial);
    }
    evr_policy_bearer(rules, who);
    evr_policy_basic(rules, who, last);
    evr_policy_destroy(&rules);
    free(text);
    return 0;
}
