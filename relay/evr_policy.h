/*  evr_policy.h - the control-plane access policy: which operator may do
    what, where a subscription may point, and who the HTTP face's
    credentials name.

    Pure module: no I/O, no name resolution, no file system (paths are
    checked as text and symlinks are not followed), no clock. It is built
    once from the config file and only read afterwards, so the core thread
    and the HTTP thread read it without a lock. The type is
    evr_policy_rules_t because evr_policy_t names the virtual policies of
    evr_sockspec.h.

    Config (docs/SECURITY.md), one evr_policy_set call per INI key:

      [policy]     NAME = ACTION ...    subscribe unsubscribe raise list
                                        rotate, or all, or none
                   * = ACTION ...       any authenticated operator not listed
                   local = ACTION ...   unauthenticated callers (a plain
                                        control socket, the HTTP face
                                        without [http_auth])
      [allow]      transports = udp unix flatstore tcp rabbitmq zmq http https
                   cidrs = 10.0.0.0/8 127.0.0.1 ::1/128
                   hosts = rabbit.internal *.example.net
                   ports = 9000 10000-10100
                   dirs = /var/lib/evrelay/flat
      [http_auth]  NAME = bearer:TOKEN | basic:PASSWORD

    Without a [policy] entry every caller may do everything (the relay is
    loopback-only by default); with one, what is not granted is refused.
    Each [allow] key present restricts its dimension; an absent key does
    not. Values are lists separated by spaces or commas; a key given again
    adds to its list.
*/
#ifndef EVR_POLICY_H_INCLUDED
#define EVR_POLICY_H_INCLUDED

#include "evr_sockspec.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

//  What a control request does. Every MI method maps to one action.
typedef enum {
    EVR_ACTION_NONE = 0, //  needs no grant: health
    EVR_ACTION_SUBSCRIBE,
    EVR_ACTION_UNSUBSCRIBE, //  subscribe with expire 0
    EVR_ACTION_RAISE,
    EVR_ACTION_LIST, //  list, subscribers, stats, cluster, GET /metrics
    EVR_ACTION_ROTATE,
    EVR_ACTION_COUNT,
    EVR_ACTION_UNKNOWN = -1 //  a method this module does not know
} evr_action_t;

//  The dimensions of the destination allowlist, in the order they are
//  checked.
typedef enum {
    EVR_ALLOW_TRANSPORTS = 0,
    EVR_ALLOW_CIDRS,
    EVR_ALLOW_HOSTS,
    EVR_ALLOW_PORTS,
    EVR_ALLOW_DIRS,
    EVR_ALLOW_COUNT
} evr_allow_rule_t;

//  Why a request was refused.
typedef struct {
    int allow_rule;    //  the evr_allow_rule_t that refused, -1 for [policy]
    char rule[160];    //  "allow.cidrs", "policy.alice", "policy.*", "policy"
    char message[512]; //  one line naming the rule and the offending value
} evr_denial_t;

typedef struct _evr_policy_rules_t evr_policy_rules_t;

//  An empty policy: everyone may do everything, anywhere; no credentials.
evr_policy_rules_t *evr_policy_new(void);

//  Free and NULL the pointer. Safe on NULL.
void evr_policy_destroy(evr_policy_rules_t **self_p);

//  True for the INI sections this module reads: policy, allow, http_auth.
bool evr_policy_section(const char *section);

//  Take one INI key of one of those sections. Returns 0, or -1 with a
//  reason in err; the reason never holds a [http_auth] secret.
int evr_policy_set(evr_policy_rules_t *self, const char *section,
                   const char *key, const char *value, char *err,
                   size_t errlen);

//  True once a [policy] entry was read: actions are then refused unless
//  granted.
bool evr_policy_enforced(const evr_policy_rules_t *self);

//  True when an [allow] key was read.
bool evr_policy_has_allowlist(const evr_policy_rules_t *self);

//  How many [http_auth] credentials of one kind (bearer true: bearer
//  tokens, false: basic passwords) were read.
size_t evr_policy_credentials(const evr_policy_rules_t *self, bool bearer);

//  The name of an action ("subscribe" ...), "none" for EVR_ACTION_NONE.
const char *evr_policy_action_name(evr_action_t action);

//  The key of an allowlist rule ("transports" ...); its rule name is
//  "allow." and the key.
const char *evr_policy_rule_key(evr_allow_rule_t rule);

//  The action of an MI request: method under any of its names (evrelay,
//  OpenSIPS 3.x and 4.x), params as given (a subscribe whose expire is 0
//  is an unsubscribe). EVR_ACTION_UNKNOWN for an unknown method.
evr_action_t evr_policy_request_action(const char *method,
                                       const json_t *params);

//  May operator `who` do action? Returns 0, or -1 with the denial filled
//  in. EVR_ACTION_NONE is always allowed; EVR_ACTION_UNKNOWN never is
//  (under an enforced policy).
int evr_policy_permit(const evr_policy_rules_t *self, const char *who,
                      evr_action_t action, evr_denial_t *denial);

//  May a subscription point at spec? Every present [allow] rule must pass;
//  a virtual spec passes when each of its children does. Returns 0, or -1
//  with the denial of the first rule (and child) that refused.
int evr_policy_check_socket(const evr_policy_rules_t *self,
                            const evr_sockspec_t *spec, evr_denial_t *denial);

//  The operator a bearer token names, or NULL. Secrets are compared in
//  constant time.
const char *evr_policy_bearer(const evr_policy_rules_t *self,
                              const char *token);

//  The operator basic credentials name (user = the operator's name), or
//  NULL. Secrets are compared in constant time.
const char *evr_policy_basic(const evr_policy_rules_t *self, const char *user,
                             const char *password);

//  True when addr is a loopback address: 127.0.0.0/8, ::1, or
//  ::ffff:127.0.0.0/104.
bool evr_policy_loopback(const struct sockaddr *addr);

#endif
