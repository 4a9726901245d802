/*  evr_zap.c - the ZAP protocol (ZeroMQ RFC 27) and per-socket key lists.

    See evr_zap.h. A domain's key list is two hashes (key -> name and
    name -> key) swapped whole under a mutex, so a reload never shows a
    half-read directory.
*/
#include "evr_zap.h"

#include <czmq.h>
#include <pthread.h>
#include <string.h>

#define MAX_DOMAINS 8

typedef struct {
    zhashx_t *by_key;  //  Z85 key -> name
    zhashx_t *by_name; //  name -> Z85 key
} s_list_t;

struct _evr_keyring_t {
    const char *const *names;
    int n;
    s_list_t lists[MAX_DOMAINS];
    s_list_t building;
    int building_domain;
    pthread_mutex_t lock;
};

//  Copy a frame into a NUL-terminated string. Returns 0, or -1 when it
//  does not fit.
static int s_copy(char *dst, size_t cap, const void *data, size_t len)
{
    if (len >= cap)
        return -1;
    memcpy(dst, data, len);
    dst[len] = 0;
    return 0;
}

//  Parse the frames of a ZAP request.
int evr_zap_parse(const void *const *data, const size_t *len, size_t n,
                  evr_zap_request_t *req, char *err, size_t errlen)
{
    memset(req, 0, sizeof *req);
    if (n < 6) {
        snprintf(err, errlen, "ZAP request of %zu frames, expected 6 or more",
                 n);
        return -1;
    }
    if (len[0] != 3 || memcmp(data[0], "1.0", 3)) {
        snprintf(err, errlen, "ZAP version is not 1.0");
        return -1;
    }
    req->request_id = data[1];
    req->request_id_len = len[1];
    if (s_copy(req->domain, sizeof req->domain, data[2], len[2]) ||
        s_copy(req->address, sizeof req->address, data[3], len[3]) ||
        s_copy(req->mechanism, sizeof req->mechanism, data[5], len[5])) {
        snprintf(err, errlen, "ZAP request frame too long");
        return -1;
    }
    if (!strcmp(req->mechanism, "CURVE")) {
        if (n != 7 || len[6] != 32) {
            snprintf(err, errlen, "ZAP CURVE request without a 32-byte key");
            return -1;
        }
        memcpy(req->key, data[6], 32);
        req->has_key = true;
    }
    return 0;
}

//  Free a list's hashes.
static void s_list_free(s_list_t *list)
{
    zhashx_destroy(&list->by_key);
    zhashx_destroy(&list->by_name);
}

//  Empty hashes that own copies of their string values.
static int s_list_init(s_list_t *list)
{
    list->by_key = zhashx_new();
    list->by_name = zhashx_new();
    if (!list->by_key || !list->by_name) {
        s_list_free(list);
        return -1;
    }
    zhashx_set_duplicator(list->by_key, (zhashx_duplicator_fn *)strdup);
    zhashx_set_destructor(list->by_key, (zhashx_destructor_fn *)zstr_free);
    zhashx_set_duplicator(list->by_name, (zhashx_duplicator_fn *)strdup);
    zhashx_set_destructor(list->by_name, (zhashx_destructor_fn *)zstr_free);
    return 0;
}

//  Create a keyring over the named domains.
evr_keyring_t *evr_keyring_new(const char *const *domains, int ndomains)
{
    if (ndomains < 1 || ndomains > MAX_DOMAINS)
        return NULL;
    evr_keyring_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->names = domains;
    self->n = ndomains;
    self->building_domain = -1;
    pthread_mutex_init(&self->lock, NULL);
    for (int i = 0; i < ndomains; i++)
        if (s_list_init(&self->lists[i])) {
            evr_keyring_destroy(&self);
            break;
        }
    return self;
}

//  Destroy and NULL the pointer.
void evr_keyring_destroy(evr_keyring_t **self_p)
{
    evr_keyring_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    for (int i = 0; i < self->n; i++)
        s_list_free(&self->lists[i]);
    s_list_free(&self->building);
    pthread_mutex_destroy(&self->lock);
    free(self);
}

//  The index of a domain name, or -1.
int evr_keyring_domain(const evr_keyring_t *self, const char *domain)
{
    for (int i = 0; i < self->n; i++)
        if (!strcmp(self->names[i], domain))
            return i;
    return -1;
}

//  Start building a domain's next list.
int evr_keyring_begin(evr_keyring_t *self, int domain)
{
    if (domain < 0 || domain >= self->n)
        return -1;
    s_list_free(&self->building);
    if (s_list_init(&self->building))
        return -1;
    self->building_domain = domain;
    return 0;
}

//  Add a key and its name to the list being built.
int evr_keyring_add(evr_keyring_t *self, const char *key_z85, const char *name)
{
    uint8_t raw[32];
    if (self->building_domain < 0 || strlen(key_z85) != 40 ||
        !zmq_z85_decode(raw, key_z85))
        return -1;
    const char *label = name && *name ? name : key_z85;
    zhashx_update(self->building.by_key, key_z85, (void *)label);
    zhashx_update(self->building.by_name, label, (void *)key_z85);
    return 0;
}

//  Swap the built list in.
void evr_keyring_commit(evr_keyring_t *self)
{
    int d = self->building_domain;
    if (d < 0)
        return;
    pthread_mutex_lock(&self->lock);
    s_list_t old = self->lists[d];
    self->lists[d] = self->building;
    pthread_mutex_unlock(&self->lock);
    s_list_free(&old);
    memset(&self->building, 0, sizeof self->building);
    self->building_domain = -1;
}

//  Whether domain allows key; copy its name.
bool evr_keyring_lookup(evr_keyring_t *self, int domain, const char *key_z85,
                        char *name, size_t namelen)
{
    if (domain < 0 || domain >= self->n)
        return false;
    pthread_mutex_lock(&self->lock);
    const char *found = zhashx_lookup(self->lists[domain].by_key, key_z85);
    if (found && name)
        snprintf(name, namelen, "%s", found);
    pthread_mutex_unlock(&self->lock);
    return found != NULL;
}

//  Whether a name is still allowed on domain.
bool evr_keyring_has_name(evr_keyring_t *self, int domain, const char *name)
{
    if (domain < 0 || domain >= self->n || !name)
        return false;
    pthread_mutex_lock(&self->lock);
    bool found = zhashx_lookup(self->lists[domain].by_name, name) != NULL;
    pthread_mutex_unlock(&self->lock);
    return found;
}

//  Number of keys a domain allows.
size_t evr_keyring_size(evr_keyring_t *self, int domain)
{
    if (domain < 0 || domain >= self->n)
        return 0;
    pthread_mutex_lock(&self->lock);
    size_t n = zhashx_size(self->lists[domain].by_key);
    pthread_mutex_unlock(&self->lock);
    return n;
}

//  Decide a parsed request.
bool evr_zap_decide(evr_keyring_t *ring, const evr_zap_request_t *req,
                    evr_zap_reply_t *reply)
{
    memset(reply, 0, sizeof *reply);
    reply->status = "400";
    reply->domain = evr_keyring_domain(ring, req->domain);
    if (reply->domain < 0) {
        reply->text = "unknown ZAP domain";
        return false;
    }
    if (!req->has_key || strcmp(req->mechanism, "CURVE")) {
        reply->text = "CURVE required";
        return false;
    }
    zmq_z85_encode(reply->key_z85, req->key, 32);
    if (!evr_keyring_lookup(ring, reply->domain, reply->key_z85, reply->user_id,
                            sizeof reply->user_id)) {
        reply->text = "key not allowed";
        return false;
    }
    reply->status = "200";
    reply->text = "OK";
    return true;
}
