/*  evr_policy.c - the control-plane access policy.

    Grants are a bit mask of actions per operator name. The allowlist keeps
    one parsed list per dimension and a flag saying whether the dimension
    was configured at all. Credentials keep the BLAKE2b hash of their
    secret, never the secret: a candidate is hashed and the two hashes are
    compared with libsodium's constant-time crypto_verify_32, so neither
    the content nor the length of a secret shows in the timing.

    Destinations: an IP literal is checked against allow.cidrs, a host
    name against allow.hosts; names are never resolved here, so a name
    meets allow.cidrs only when allow.hosts is absent, and is refused by
    it (likewise an address meets allow.hosts only when allow.cidrs is
    absent). Paths (unix, flatstore, zmq ipc) are checked as text: '//'
    and '.' components are folded, a '..' component is refused, symlinks
    are not looked at.
*/
#include "evr_policy.h"
#include "evr_defaults.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Separators of list values.
#define S_SEPARATORS " \t,"

//  Room for a list printed into a message.
#define S_LIST_TEXT 200

//  One [policy] entry.
typedef struct {
    char *name;
    unsigned actions; //  1u << evr_action_t
} s_grant_t;

//  One allow.cidrs entry, host bits cleared.
typedef struct {
    int family; //  AF_INET or AF_INET6
    uint8_t addr[16];
    int prefix;
} s_cidr_t;

//  One allow.ports entry.
typedef struct {
    int lo, hi;
} s_range_t;

//  crypto_verify_32 compares the hashes.
_Static_assert(crypto_generichash_BYTES == 32, "32-byte hashes");

//  One [http_auth] credential.
typedef struct {
    char *name;
    bool bearer; //  else basic
    uint8_t hash[crypto_generichash_BYTES];
} s_cred_t;

struct _evr_policy_rules_t {
    s_grant_t *grants;
    size_t ngrants;
    bool present[EVR_ALLOW_COUNT];
    unsigned transports; //  1u << index in s_transports
    s_cidr_t *cidrs;
    size_t ncidrs;
    char **hosts; //  lower case; "*.example.net" for a suffix
    size_t nhosts;
    s_range_t *ports;
    size_t nports;
    char **dirs; //  normalised: "/a/b", or "/"
    size_t ndirs;
    s_cred_t *creds;
    size_t ncreds;
};

static const char *const s_actions[EVR_ACTION_COUNT] = {
    "none", "subscribe", "unsubscribe", "raise", "list", "rotate"};

static const char *const s_rules[EVR_ALLOW_COUNT] = {"transports", "cidrs",
                                                     "hosts", "ports", "dirs"};

//  Destination transports as allow.transports names them.
static const char *const s_transports[] = {
    "udp", "unix", "flatstore", "tcp", "rabbitmq", "zmq", "http", "https"};

#define S_NTRANSPORTS (sizeof s_transports / sizeof *s_transports)

//  Every MI method name and its action (evr_control.c's table, all names).
static const struct {
    const char *method;
    evr_action_t action;
} s_methods[] = {
    {"subscribe", EVR_ACTION_SUBSCRIBE},
    {"event_subscribe", EVR_ACTION_SUBSCRIBE},
    {"evi:subscribe", EVR_ACTION_SUBSCRIBE},
    {"list", EVR_ACTION_LIST},
    {"events_list", EVR_ACTION_LIST},
    {"evi:list", EVR_ACTION_LIST},
    {"subscribers", EVR_ACTION_LIST},
    {"subscribers_list", EVR_ACTION_LIST},
    {"evi:subscribers", EVR_ACTION_LIST},
    {"raise", EVR_ACTION_RAISE},
    {"raise_event", EVR_ACTION_RAISE},
    {"evi:raise", EVR_ACTION_RAISE},
    {"stats", EVR_ACTION_LIST},
    {"cluster", EVR_ACTION_LIST},
    {"health", EVR_ACTION_NONE},
    {"flatstore-rotate", EVR_ACTION_ROTATE},
    {"evi_flat_rotate", EVR_ACTION_ROTATE},
    {"event_flatstore:rotate", EVR_ACTION_ROTATE},
};

//  --- construction ---------------------------------------------------------

//  An empty policy.
evr_policy_rules_t *evr_policy_new(void)
{
    return calloc(1, sizeof(evr_policy_rules_t));
}

//  Free a list of strings.
static void s_free_strings(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

//  Free and NULL the pointer.
void evr_policy_destroy(evr_policy_rules_t **self_p)
{
    evr_policy_rules_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    for (size_t i = 0; i < self->ngrants; i++)
        free(self->grants[i].name);
    free(self->grants);
    free(self->cidrs);
    s_free_strings(self->hosts, self->nhosts);
    free(self->ports);
    s_free_strings(self->dirs, self->ndirs);
    for (size_t i = 0; i < self->ncreds; i++)
        free(self->creds[i].name);
    sodium_memzero(self->creds, self->ncreds * sizeof *self->creds);
    free(self->creds);
    free(self);
}

//  Grow an array of n items of size bytes by one; returns the new item
//  (zeroed) or NULL.
static void *s_append(void **array, size_t *n, size_t size)
{
    char *grown = realloc(*array, (*n + 1) * size);
    if (!grown)
        return NULL;
    *array = grown;
    memset(grown + *n * size, 0, size);
    return grown + (*n)++ * size;
}

//  --- parsing the config ---------------------------------------------------

typedef int(s_item_fn)(evr_policy_rules_t *self, const char *item, char *err,
                       size_t errlen);

//  Call fn for each item of a list separated by spaces or commas. Returns
//  0, or -1 at the first item fn refuses.
static int s_each_item(evr_policy_rules_t *self, const char *value,
                       s_item_fn *fn, char *err, size_t errlen)
{
    char *copy = strdup(value);
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, S_SEPARATORS, &save); item && rc == 0;
         item = strtok_r(NULL, S_SEPARATORS, &save))
        rc = fn(self, item, err, errlen);
    free(copy);
    return rc;
}

//  Check an operator name (a [policy] or [http_auth] key).
static int s_check_name(const char *name, char *err, size_t errlen)
{
    size_t len = strlen(name);
    if (len == 0 || len > EVR_POLICY_NAME_MAX) {
        snprintf(err, errlen, "an operator name has 1 to %d characters",
                 EVR_POLICY_NAME_MAX);
        return -1;
    }
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            snprintf(err, errlen,
                     "an operator name has no spaces or control characters");
            return -1;
        }
    return 0;
}

//  The grant of an exact operator name, or NULL.
static s_grant_t *s_grant_find(const evr_policy_rules_t *self, const char *name)
{
    for (size_t i = 0; i < self->ngrants; i++)
        if (!strcmp(self->grants[i].name, name))
            return &self->grants[i];
    return NULL;
}

//  The bit mask of one action word (or all, none); -1 when unknown.
static long s_action_bits(const char *word)
{
    if (!strcmp(word, "all"))
        return (long)((1u << EVR_ACTION_COUNT) - 2); //  every action but none
    if (!strcmp(word, "none"))
        return 0;
    for (int a = EVR_ACTION_SUBSCRIBE; a < EVR_ACTION_COUNT; a++)
        if (!strcmp(word, s_actions[a]))
            return (long)(1u << a);
    return -1;
}

//  Add the actions of a [policy] value to the grant being built (the
//  grant is the last one of the list).
static int s_add_action(evr_policy_rules_t *self, const char *item, char *err,
                        size_t errlen)
{
    long bits = s_action_bits(item);
    if (bits < 0) {
        snprintf(err, errlen,
                 "unknown action '%.40s' (known: subscribe, unsubscribe, "
                 "raise, list, rotate, all, none)",
                 item);
        return -1;
    }
    self->grants[self->ngrants - 1].actions |= (unsigned)bits;
    return 0;
}

//  [policy] NAME = ACTION ...: a name given again adds to its grant.
static int s_set_grant(evr_policy_rules_t *self, const char *name,
                       const char *value, char *err, size_t errlen)
{
    if (s_check_name(name, err, errlen))
        return -1;
    s_grant_t *grant = s_grant_find(self, name);
    if (grant) {
        //  move it last, where s_add_action adds
        s_grant_t keep = *grant;
        *grant = self->grants[self->ngrants - 1];
        self->grants[self->ngrants - 1] = keep;
    } else {
        grant = s_append((void **)&self->grants, &self->ngrants,
                         sizeof *self->grants);
        if (!grant || !(grant->name = strdup(name))) {
            if (grant)
                self->ngrants--;
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return s_each_item(self, value, s_add_action, err, errlen);
}

//  allow.transports: one transport name.
static int s_add_transport(evr_policy_rules_t *self, const char *item,
                           char *err, size_t errlen)
{
    for (size_t t = 0; t < S_NTRANSPORTS; t++)
        if (!strcmp(item, s_transports[t])) {
            self->transports |= 1u << t;
            return 0;
        }
    snprintf(err, errlen,
             "unknown transport '%.40s' (known: udp, unix, flatstore, tcp, "
             "rabbitmq, zmq, http, https; a virtual socket is checked child "
             "by child)",
             item);
    return -1;
}

//  Parse an IPv4 or IPv6 literal into addr (16 bytes). Returns the family,
//  or 0 when text is no address.
static int s_parse_address(const char *text, uint8_t *addr)
{
    if (inet_pton(AF_INET, text, addr) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, text, addr) == 1)
        return AF_INET6;
    return 0;
}

//  allow.cidrs: ADDRESS[/PREFIX], IPv4 or IPv6; host bits are cleared.
static int s_add_cidr(evr_policy_rules_t *self, const char *item, char *err,
                      size_t errlen)
{
    char text[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(item, '/');
    size_t len = slash ? (size_t)(slash - item) : strlen(item);
    s_cidr_t cidr = {0};
    if (len < sizeof text) {
        memcpy(text, item, len);
        text[len] = 0;
        cidr.family = s_parse_address(text, cidr.addr);
    }
    if (!cidr.family) {
        snprintf(err, errlen,
                 "'%.60s' is not an IPv4 or IPv6 address (expected "
                 "ADDRESS[/PREFIX])",
                 item);
        return -1;
    }
    int bits = cidr.family == AF_INET ? 32 : 128;
    cidr.prefix = bits;
    if (slash) {
        char *end;
        long prefix = strtol(slash + 1, &end, 10);
        if (!isdigit((unsigned char)slash[1]) || *end || prefix > bits) {
            snprintf(err, errlen, "bad prefix length in '%.60s' (0 to %d)",
                     item, bits);
            return -1;
        }
        cidr.prefix = (int)prefix;
    }
    for (int b = cidr.prefix; b < bits; b++)
        cidr.addr[b / 8] &= (uint8_t) ~(0x80u >> (b % 8));
    s_cidr_t *slot =
        s_append((void **)&self->cidrs, &self->ncidrs, sizeof *self->cidrs);
    if (!slot) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *slot = cidr;
    return 0;
}

//  allow.hosts: a host name, or "*." and a name for every name under it.
//  The name follows the socket grammar's rules (checked by parsing it as
//  a udp socket); an address belongs in allow.cidrs.
static int s_add_host(evr_policy_rules_t *self, const char *item, char *err,
                      size_t errlen)
{
    const char *name = strncmp(item, "*.", 2) ? item : item + 2;
    uint8_t addr[16];
    if (*name && (s_parse_address(name, addr) ||
                  strspn(name, "0123456789.") == strlen(name))) {
        snprintf(err, errlen,
                 "'%.60s' is an address, not a host name (addresses go in "
                 "allow.cidrs)",
                 item);
        return -1;
    }
    char socket[300], why[256];
    snprintf(socket, sizeof socket, "udp:%s:1", name);
    evr_sockspec_t *spec =
        strlen(name) < 260 && !strchr(name, ':') && !strchr(name, '*')
            ? evr_sockspec_parse(socket, why, sizeof why)
            : NULL;
    if (!spec) {
        snprintf(err, errlen, "'%.60s' is not a host name or *.NAME", item);
        return -1;
    }
    evr_sockspec_destroy(&spec);
    char *copy = strdup(item);
    char **slot =
        copy ? s_append((void **)&self->hosts, &self->nhosts, sizeof(char *))
             : NULL;
    if (!slot) {
        free(copy);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (char *p = copy; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    *slot = copy;
    return 0;
}

//  Parse a port 1..65535 made of digits only; -1 when it is not one.
static int s_parse_port(const char *text, size_t len)
{
    int port = 0;
    if (len == 0 || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)text[i]))
            return -1;
        port = port * 10 + (text[i] - '0');
    }
    return port >= 1 && port <= 65535 ? port : -1;
}

//  allow.ports: PORT or LOW-HIGH.
static int s_add_ports(evr_policy_rules_t *self, const char *item, char *err,
                       size_t errlen)
{
    const char *dash = strchr(item, '-');
    s_range_t range;
    range.lo = s_parse_port(item, dash ? (size_t)(dash - item) : strlen(item));
    range.hi = dash ? s_parse_port(dash + 1, strlen(dash + 1)) : range.lo;
    if (range.lo < 0 || range.hi < 0 || range.lo > range.hi) {
        snprintf(err, errlen,
                 "'%.40s' is not a port or a range LOW-HIGH of ports 1 to "
                 "65535",
                 item);
        return -1;
    }
    s_range_t *slot =
        s_append((void **)&self->ports, &self->nports, sizeof *self->ports);
    if (!slot) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *slot = range;
    return 0;
}

//  Normalise an absolute path: fold '//' and '.' components and a trailing
//  '/'. Returns a new string ("/" for the root), or NULL when it is not
//  absolute or has a '..' component (*dotdot tells which; may be NULL) or
//  memory runs out.
static char *s_normalise(const char *path, bool *dotdot)
{
    if (dotdot)
        *dotdot = false;
    if (path[0] != '/')
        return NULL;
    char *out = malloc(strlen(path) + 2);
    if (!out)
        return NULL;
    size_t n = 0;
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        size_t len = strcspn(p, "/");
        if (len == 0)
            break;
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            if (dotdot)
                *dotdot = true;
            free(out);
            return NULL;
        }
        if (!(len == 1 && p[0] == '.')) {
            out[n++] = '/';
            memcpy(out + n, p, len);
            n += len;
        }
        p += len;
    }
    if (n == 0)
        out[n++] = '/';
    out[n] = 0;
    return out;
}

//  allow.dirs: an absolute directory without '..'.
static int s_add_dir(evr_policy_rules_t *self, const char *item, char *err,
                     size_t errlen)
{
    bool dotdot;
    char *dir = s_normalise(item, &dotdot);
    if (!dir && (dotdot || item[0] != '/')) {
        snprintf(err, errlen,
                 "'%.60s' is not an absolute directory without '..'", item);
        return -1;
    }
    char **slot =
        dir ? s_append((void **)&self->dirs, &self->ndirs, sizeof(char *))
            : NULL;
    if (!slot) {
        free(dir);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *slot = dir;
    return 0;
}

//  [allow] KEY = LIST.
static int s_set_allow(evr_policy_rules_t *self, const char *key,
                       const char *value, char *err, size_t errlen)
{
    static s_item_fn *const parsers[EVR_ALLOW_COUNT] = {
        s_add_transport, s_add_cidr, s_add_host, s_add_ports, s_add_dir};
    for (int r = 0; r < EVR_ALLOW_COUNT; r++)
        if (!strcmp(key, s_rules[r])) {
            self->present[r] = true;
            return s_each_item(self, value, parsers[r], err, errlen);
        }
    snprintf(err, errlen,
             "unknown key '%.40s' in [allow] (known: transports, cidrs, "
             "hosts, ports, dirs)",
             key);
    return -1;
}

//  The hash of a secret.
static void s_hash(const char *secret, uint8_t *hash)
{
    crypto_generichash(hash, crypto_generichash_BYTES,
                       (const unsigned char *)secret, strlen(secret), NULL, 0);
}

//  [http_auth] NAME = bearer:TOKEN | basic:PASSWORD. No secret in err.
static int s_set_cred(evr_policy_rules_t *self, const char *name,
                      const char *value, char *err, size_t errlen)
{
    if (s_check_name(name, err, errlen))
        return -1;
    if (!strcmp(name, "*") || !strcmp(name, EVR_POLICY_LOCAL)) {
        snprintf(err, errlen,
                 "'%s' names a [policy] entry, not an operator: pick "
                 "another name",
                 name);
        return -1;
    }
    bool bearer = !strncmp(value, "bearer:", 7);
    const char *secret = bearer                         ? value + 7
                         : !strncmp(value, "basic:", 6) ? value + 6
                                                        : NULL;
    if (!secret || !*secret) {
        snprintf(err, errlen,
                 "expected bearer:TOKEN or basic:PASSWORD (not empty)");
        return -1;
    }
    for (const char *p = secret; *p; p++)
        if ((unsigned char)*p < ' ' || *p == 0x7f ||
            (bearer && (unsigned char)*p == ' ')) {
            snprintf(err, errlen, "the secret has a control character%s",
                     bearer ? " or a space" : "");
            return -1;
        }
    s_cred_t cred = {.bearer = bearer};
    s_hash(secret, cred.hash);
    for (size_t i = 0; bearer && i < self->ncreds; i++)
        if (self->creds[i].bearer &&
            !memcmp(self->creds[i].hash, cred.hash, sizeof cred.hash) &&
            strcmp(self->creds[i].name, name)) {
            snprintf(err, errlen, "the same bearer token is given to '%s'",
                     self->creds[i].name);
            return -1;
        }
    s_cred_t *slot =
        s_append((void **)&self->creds, &self->ncreds, sizeof *self->creds);
    if (!slot || !(cred.name = strdup(name))) {
        if (slot)
            self->ncreds--;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *slot = cred;
    return 0;
}

//  True for the sections this module reads.
bool evr_policy_section(const char *section)
{
    return !strcmp(section, "policy") || !strcmp(section, "allow") ||
           !strcmp(section, "http_auth");
}

//  Take one INI key.
int evr_policy_set(evr_policy_rules_t *self, const char *section,
                   const char *key, const char *value, char *err, size_t errlen)
{
    if (!strcmp(section, "policy"))
        return s_set_grant(self, key, value, err, errlen);
    if (!strcmp(section, "allow"))
        return s_set_allow(self, key, value, err, errlen);
    if (!strcmp(section, "http_auth"))
        return s_set_cred(self, key, value, err, errlen);
    snprintf(err, errlen, "unknown section [%.40s]", section);
    return -1;
}

//  --- queries --------------------------------------------------------------

//  True once a [policy] entry was read.
bool evr_policy_enforced(const evr_policy_rules_t *self)
{
    return self && self->ngrants > 0;
}

//  True when an [allow] key was read.
bool evr_policy_has_allowlist(const evr_policy_rules_t *self)
{
    for (int r = 0; self && r < EVR_ALLOW_COUNT; r++)
        if (self->present[r])
            return true;
    return false;
}

//  How many credentials of one kind.
size_t evr_policy_credentials(const evr_policy_rules_t *self, bool bearer)
{
    size_t n = 0;
    for (size_t i = 0; self && i < self->ncreds; i++)
        n += self->creds[i].bearer == bearer;
    return n;
}

//  The name of an action.
const char *evr_policy_action_name(evr_action_t action)
{
    return action >= 0 && action < EVR_ACTION_COUNT ? s_actions[action]
                                                    : "unknown";
}

//  The key of an allowlist rule.
const char *evr_policy_rule_key(evr_allow_rule_t rule)
{
    return rule >= 0 && rule < EVR_ALLOW_COUNT ? s_rules[rule] : "unknown";
}

//  True when a subscribe's expire param is 0 (an integer, or a string of
//  one as the MI accepts it).
static bool s_expire_zero(const json_t *params)
{
    const json_t *expire = json_is_array(params) ? json_array_get(params, 2)
                           : json_is_object(params)
                               ? json_object_get(params, "expire")
                               : NULL;
    if (json_is_integer(expire))
        return json_integer_value(expire) == 0;
    if (!json_is_string(expire))
        return false;
    const char *text = json_string_value(expire);
    char *end;
    long long v = strtoll(text, &end, 10);
    return *text && !*end && v == 0;
}

//  The action of an MI request.
evr_action_t evr_policy_request_action(const char *method, const json_t *params)
{
    for (size_t i = 0; i < sizeof s_methods / sizeof *s_methods; i++)
        if (!strcmp(method, s_methods[i].method)) {
            evr_action_t action = s_methods[i].action;
            if (action == EVR_ACTION_SUBSCRIBE && s_expire_zero(params))
                action = EVR_ACTION_UNSUBSCRIBE;
            return action;
        }
    return EVR_ACTION_UNKNOWN;
}

//  May operator who do action?
int evr_policy_permit(const evr_policy_rules_t *self, const char *who,
                      evr_action_t action, evr_denial_t *denial)
{
    if (action == EVR_ACTION_NONE || !evr_policy_enforced(self))
        return 0;
    const s_grant_t *grant = s_grant_find(self, who);
    if (!grant && strcmp(who, EVR_POLICY_LOCAL))
        grant = s_grant_find(self, "*");
    denial->allow_rule = -1;
    if (!grant) {
        snprintf(denial->rule, sizeof denial->rule, "policy");
        snprintf(denial->message, sizeof denial->message,
                 "refused by policy: operator '%.*s' is not listed in "
                 "[policy]",
                 EVR_POLICY_NAME_MAX, who);
        return -1;
    }
    if (action > EVR_ACTION_NONE && action < EVR_ACTION_COUNT &&
        (grant->actions & (1u << action)))
        return 0;
    snprintf(denial->rule, sizeof denial->rule, "policy.%s", grant->name);
    snprintf(denial->message, sizeof denial->message,
             "refused by %s: operator '%.*s' may not %s", denial->rule,
             EVR_POLICY_NAME_MAX, who,
             action == EVR_ACTION_UNKNOWN ? "run this method"
                                          : s_actions[action]);
    return -1;
}

//  --- the allowlist --------------------------------------------------------

//  Print an allowlist's entries, separated by ", ", into text (cut with
//  "..." when they do not fit).
static void s_list_text(const evr_policy_rules_t *self, evr_allow_rule_t rule,
                        char *text, size_t size)
{
    size_t n = rule == EVR_ALLOW_CIDRS   ? self->ncidrs
               : rule == EVR_ALLOW_HOSTS ? self->nhosts
               : rule == EVR_ALLOW_PORTS ? self->nports
               : rule == EVR_ALLOW_DIRS  ? self->ndirs
                                         : S_NTRANSPORTS;
    size_t used = 0;
    text[0] = 0;
    for (size_t i = 0; i < n; i++) {
        char item[INET6_ADDRSTRLEN + 8];
        const char *shown = item;
        if (rule == EVR_ALLOW_CIDRS) {
            inet_ntop(self->cidrs[i].family, self->cidrs[i].addr, item,
                      sizeof item);
            size_t len = strlen(item);
            snprintf(item + len, sizeof item - len, "/%d",
                     self->cidrs[i].prefix);
        } else if (rule == EVR_ALLOW_PORTS) {
            if (self->ports[i].lo == self->ports[i].hi)
                snprintf(item, sizeof item, "%d", self->ports[i].lo);
            else
                snprintf(item, sizeof item, "%d-%d", self->ports[i].lo,
                         self->ports[i].hi);
        } else if (rule == EVR_ALLOW_HOSTS)
            shown = self->hosts[i];
        else if (rule == EVR_ALLOW_DIRS)
            shown = self->dirs[i];
        else if (self->transports & (1u << i))
            shown = s_transports[i];
        else
            continue;
        size_t need = strlen(shown) + (used ? 2 : 0);
        if (used + need + 4 >= size) {
            snprintf(text + used, size - used, "%s...", used ? ", " : "");
            return;
        }
        used += (size_t)snprintf(text + used, size - used, "%s%s",
                                 used ? ", " : "", shown);
    }
    if (used == 0)
        snprintf(text, size, "(nothing)");
}

//  Fill a denial by an allowlist rule; where names the virtual child (or
//  is empty), why says what is wrong.
static int s_deny(const evr_policy_rules_t *self, evr_denial_t *denial,
                  evr_allow_rule_t rule, const char *where, const char *why)
{
    denial->allow_rule = (int)rule;
    snprintf(denial->rule, sizeof denial->rule, "allow.%s", s_rules[rule]);
    snprintf(denial->message, sizeof denial->message,
             "destination refused by %.20s: %.200s%.250s", denial->rule, where,
             why);
    return -1;
}

//  Fill a denial for a value outside a rule's list: "VALUE is not in
//  LIST".
static int s_deny_value(const evr_policy_rules_t *self, evr_denial_t *denial,
                        evr_allow_rule_t rule, const char *where,
                        const char *value)
{
    char list[S_LIST_TEXT], why[S_LIST_TEXT + 300];
    s_list_text(self, rule, list, sizeof list);
    snprintf(why, sizeof why, "%.200s is not %s %s", value,
             rule == EVR_ALLOW_DIRS ? "inside" : "in", list);
    return s_deny(self, denial, rule, where, why);
}

//  True when addr (of family) is in a cidr; an IPv4-mapped IPv6 address
//  is in the IPv4 entries too.
static bool s_in_cidr(const s_cidr_t *cidr, int family, const uint8_t *addr)
{
    if (family == AF_INET6 && cidr->family == AF_INET &&
        IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)addr))
        return s_in_cidr(cidr, AF_INET, addr + 12);
    if (cidr->family != family)
        return false;
    int whole = cidr->prefix / 8, rest = cidr->prefix % 8;
    if (memcmp(addr, cidr->addr, (size_t)whole))
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (addr[whole] & mask) == cidr->addr[whole];
}

//  True when a lower-case name matches a hosts entry: equal, or under
//  the name of a "*." entry.
static bool s_host_matches(const char *pattern, const char *name)
{
    if (strncmp(pattern, "*.", 2))
        return !strcmp(pattern, name);
    size_t plen = strlen(pattern + 1), nlen = strlen(name); //  ".suffix"
    return nlen > plen && !strcmp(name + nlen - plen, pattern + 1);
}

//  Check a destination host (as written, no brackets) against cidrs and
//  hosts.
static int s_check_host(const evr_policy_rules_t *self, const char *host,
                        const char *where, evr_denial_t *denial)
{
    bool cidrs = self->present[EVR_ALLOW_CIDRS];
    bool hosts = self->present[EVR_ALLOW_HOSTS];
    if (!cidrs && !hosts)
        return 0;
    uint8_t addr[16];
    int family = s_parse_address(host, addr);
    if (family) {
        char shown[INET6_ADDRSTRLEN];
        inet_ntop(family, addr, shown, sizeof shown);
        if (!cidrs)
            return s_deny(self, denial, EVR_ALLOW_HOSTS, where,
                          "an address is not a host name (addresses are "
                          "allowed by allow.cidrs, which is not set)");
        for (size_t i = 0; i < self->ncidrs; i++)
            if (s_in_cidr(&self->cidrs[i], family, addr))
                return 0;
        return s_deny_value(self, denial, EVR_ALLOW_CIDRS, where, shown);
    }
    char name[300];
    snprintf(name, sizeof name, "%s", host);
    for (char *p = name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (!hosts) {
        char why[400];
        snprintf(why, sizeof why,
                 "host name '%.250s' is not an address (names are not "
                 "resolved; allow them in allow.hosts)",
                 name);
        return s_deny(self, denial, EVR_ALLOW_CIDRS, where, why);
    }
    for (size_t i = 0; i < self->nhosts; i++)
        if (s_host_matches(self->hosts[i], name))
            return 0;
    char value[300];
    snprintf(value, sizeof value, "host '%.250s'", name);
    return s_deny_value(self, denial, EVR_ALLOW_HOSTS, where, value);
}

//  Check a destination port against allow.ports.
static int s_check_port(const evr_policy_rules_t *self, int port,
                        const char *where, evr_denial_t *denial)
{
    if (!self->present[EVR_ALLOW_PORTS])
        return 0;
    for (size_t i = 0; i < self->nports; i++)
        if (port >= self->ports[i].lo && port <= self->ports[i].hi)
            return 0;
    char value[32];
    snprintf(value, sizeof value, "port %d", port);
    return s_deny_value(self, denial, EVR_ALLOW_PORTS, where, value);
}

//  Check a destination path against allow.dirs: it must lie below one of
//  them once normalised, and have no '..' component.
static int s_check_path(const evr_policy_rules_t *self, const char *path,
                        const char *where, evr_denial_t *denial)
{
    if (!self->present[EVR_ALLOW_DIRS])
        return 0;
    bool dotdot;
    char *norm = s_normalise(path, &dotdot);
    if (!norm) {
        char why[400];
        snprintf(why, sizeof why, "%.250s %s", path,
                 dotdot ? "has a '..' component" : "is not an absolute path");
        return s_deny(self, denial, EVR_ALLOW_DIRS, where, why);
    }
    bool inside = false;
    for (size_t i = 0; i < self->ndirs && !inside; i++) {
        const char *dir = self->dirs[i];
        size_t len = strlen(dir);
        if (!strcmp(dir, "/"))
            inside = strcmp(norm, "/") != 0;
        else
            inside = !strncmp(norm, dir, len) && norm[len] == '/';
    }
    free(norm);
    return inside ? 0 : s_deny_value(self, denial, EVR_ALLOW_DIRS, where, path);
}

//  Split a zmq endpoint: tcp://HOST:PORT into host (no brackets) and port,
//  or ipc://PATH into path. Returns 0, or -1 for another form.
static int s_zmq_endpoint(const char *endpoint, char *host, size_t size,
                          int *port, const char **path)
{
    if (!strncmp(endpoint, "ipc://", 6)) {
        *path = endpoint + 6;
        return 0;
    }
    if (strncmp(endpoint, "tcp://", 6))
        return -1;
    const char *start = endpoint + 6;
    const char *colon = strrchr(start, ':');
    if (!colon)
        return -1;
    size_t len = (size_t)(colon - start);
    if (len >= 2 && start[0] == '[' && start[len - 1] == ']') {
        start++;
        len -= 2;
    }
    if (len == 0 || len >= size)
        return -1;
    memcpy(host, start, len);
    host[len] = 0;
    *port = atoi(colon + 1);
    return 0;
}

//  Check one destination (not virtual) against every present rule.
static int s_check_one(const evr_policy_rules_t *self,
                       const evr_sockspec_t *spec, const char *where,
                       evr_denial_t *denial)
{
    const char *transport = evr_sockspec_transport_name(spec);
    if (self->present[EVR_ALLOW_TRANSPORTS]) {
        bool listed = false;
        for (size_t t = 0; t < S_NTRANSPORTS; t++)
            listed |= (self->transports & (1u << t)) &&
                      !strcmp(transport, s_transports[t]);
        if (!listed) {
            char value[64];
            snprintf(value, sizeof value, "transport '%s'", transport);
            return s_deny_value(self, denial, EVR_ALLOW_TRANSPORTS, where,
                                value);
        }
    }
    char zmq_host[300];
    const char *host = NULL, *path = NULL;
    int port = 0;
    switch (evr_sockspec_transport(spec)) {
        case EVR_TRANSPORT_UNIX:
        case EVR_TRANSPORT_FLATSTORE:
            path = evr_sockspec_path(spec);
            break;
        case EVR_TRANSPORT_ZMQ:
            if (s_zmq_endpoint(evr_sockspec_endpoint(spec), zmq_host,
                               sizeof zmq_host, &port, &path))
                return s_deny(self, denial, EVR_ALLOW_TRANSPORTS, where,
                              "unknown zmq endpoint form");
            host = path ? NULL : zmq_host;
            break;
        default:
            host = evr_sockspec_host(spec);
            port = evr_sockspec_port(spec);
            break;
    }
    if (host && s_check_host(self, host, where, denial))
        return -1;
    if (port > 0 && s_check_port(self, port, where, denial))
        return -1;
    if (path && s_check_path(self, path, where, denial))
        return -1;
    return 0;
}

//  May a subscription point at spec?
int evr_policy_check_socket(const evr_policy_rules_t *self,
                            const evr_sockspec_t *spec, evr_denial_t *denial)
{
    if (!evr_policy_has_allowlist(self))
        return 0;
    if (evr_sockspec_transport(spec) != EVR_TRANSPORT_VIRTUAL)
        return s_check_one(self, spec, "", denial);
    for (size_t i = 0; i < evr_sockspec_child_count(spec); i++) {
        const evr_sockspec_t *child = evr_sockspec_child(spec, i);
        char where[400];
        snprintf(where, sizeof where, "virtual child %zu '%.300s': ", i + 1,
                 evr_sockspec_canonical(child));
        if (s_check_one(self, child, where, denial))
            return -1;
    }
    return 0;
}

//  --- credentials ----------------------------------------------------------

//  The operator whose credential of one kind (and, for basic, name) has
//  this secret. Every credential is compared, in constant time each.
static const char *s_match_cred(const evr_policy_rules_t *self, bool bearer,
                                const char *user, const char *secret)
{
    if (!self || !secret)
        return NULL;
    uint8_t hash[crypto_generichash_BYTES];
    s_hash(secret, hash);
    const char *found = NULL;
    for (size_t i = 0; i < self->ncreds; i++) {
        const s_cred_t *cred = &self->creds[i];
        bool same = crypto_verify_32(cred->hash, hash) == 0;
        if (same && cred->bearer == bearer && !found &&
            (bearer || !strcmp(cred->name, user)))
            found = cred->name;
    }
    sodium_memzero(hash, sizeof hash);
    return found;
}

//  The operator a bearer token names, or NULL.
const char *evr_policy_bearer(const evr_policy_rules_t *self, const char *token)
{
    return s_match_cred(self, true, NULL, token);
}

//  The operator basic credentials name, or NULL.
const char *evr_policy_basic(const evr_policy_rules_t *self, const char *user,
                             const char *password)
{
    return user ? s_match_cred(self, false, user, password) : NULL;
}

//  --- addresses ------------------------------------------------------------

//  True when addr is a loopback address.
bool evr_policy_loopback(const struct sockaddr *addr)
{
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
                in6->sin6_addr.s6_addr[12] == 127);
    }
    return false;
}
