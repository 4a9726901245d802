/*  evr_zap.h - the ZAP protocol (ZeroMQ RFC 27) and per-socket key lists.

    Pure module. ZeroMQ asks a ZAP handler whether each new CURVE client
    may connect; the request names the socket's ZAP domain ("ingest",
    "control", "cluster"), so every socket has a key list of its own.
    czmq's zauth keeps one key directory for the whole process and ignores
    the domain, which is why evrelay answers ZAP itself (evr_auth.c) and
    keeps the decision here, free of I/O:

    - evr_zap_parse reads a request's frames;
    - an evr_keyring_t holds, per domain, the allowed Z85 public keys and
      each one's name (a certificate's "name" metadata, or the key); it is
      thread-safe: the ZAP thread decides with it and the core thread asks
      it whether a connected client was revoked since its handshake;
    - evr_zap_decide turns a request into the reply's status and user id.
*/
#ifndef EVR_ZAP_H_INCLUDED
#define EVR_ZAP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EVR_ZAP_KEY_Z85 41 //  a Z85 public key and its NUL
#define EVR_ZAP_NAME_MAX 128

//  One ZAP request, pointing into the frames it was parsed from.
typedef struct {
    const void *request_id;
    size_t request_id_len;
    char domain[64];
    char address[64];
    char mechanism[16];
    uint8_t key[32]; //  CURVE: the client's public key
    bool has_key;
} evr_zap_request_t;

//  The reply a request gets.
typedef struct {
    const char *status; //  "200", "400" or "500"
    const char *text;   //  human reason
    char user_id[EVR_ZAP_NAME_MAX];
    char key_z85[EVR_ZAP_KEY_Z85];
    int domain; //  index of the request's domain, or -1
} evr_zap_reply_t;

//  Parse the n frames of a ZAP request. Returns 0, or -1 with a reason in
//  err (the version is wrong, a frame is missing or too long).
int evr_zap_parse(const void *const *data, const size_t *len, size_t n,
                  evr_zap_request_t *req, char *err, size_t errlen);

typedef struct _evr_keyring_t evr_keyring_t;

//  A keyring for ndomains domains, named by domains[] (kept by pointer).
evr_keyring_t *evr_keyring_new(const char *const *domains, int ndomains);

//  Destroy and NULL the pointer. Safe on NULL.
void evr_keyring_destroy(evr_keyring_t **self_p);

//  The index of a domain name, or -1.
int evr_keyring_domain(const evr_keyring_t *self, const char *domain);

//  Start a new key list for a domain (replaced atomically by commit).
//  Returns 0 or -1 (bad domain, out of memory).
int evr_keyring_begin(evr_keyring_t *self, int domain);

//  Add a key (Z85 text) and its name to the list being built. Returns 0,
//  or -1 when the key is not 40 characters of Z85.
int evr_keyring_add(evr_keyring_t *self, const char *key_z85, const char *name);

//  Replace the domain's list with the one built since begin.
void evr_keyring_commit(evr_keyring_t *self);

//  Whether domain allows key; its name is copied to name (may be NULL).
bool evr_keyring_lookup(evr_keyring_t *self, int domain, const char *key_z85,
                        char *name, size_t namelen);

//  Whether a client named `name` is still allowed on domain (names are
//  what handshakes reported as User-Id). Thread-safe.
bool evr_keyring_has_name(evr_keyring_t *self, int domain, const char *name);

//  Number of keys a domain allows.
size_t evr_keyring_size(evr_keyring_t *self, int domain);

//  Decide a parsed request. Returns true when the client may connect.
bool evr_zap_decide(evr_keyring_t *ring, const evr_zap_request_t *req,
                    evr_zap_reply_t *reply);

#endif
