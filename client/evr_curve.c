/*  evr_curve.c - CURVE for evrelay's clients (see evr_curve.h).
*/
#include "evr_curve.h"

#include <czmq.h>
#include <string.h>

//  Resolve a server key argument into key[41].
int evr_curve_server_key(const char *arg, char *key, char *err, size_t errlen)
{
    uint8_t raw[32];
    if (!arg || !*arg) {
        snprintf(err, errlen, "no server key");
        return -1;
    }
    if (strlen(arg) == 40 && zmq_z85_decode(raw, arg)) {
        memcpy(key, arg, 41);
        return 0;
    }
    zcert_t *cert = zcert_load(arg);
    if (!cert) {
        snprintf(err, errlen,
                 "server key %s: neither 40 characters of Z85 nor a readable "
                 "certificate file",
                 arg);
        return -1;
    }
    snprintf(key, 41, "%s", zcert_public_txt(cert));
    zcert_destroy(&cert);
    return 0;
}

//  Make sock a CURVE client presenting mine to server_z85.
int evr_curve_apply(void *sock, zcert_t *mine, const char *server_z85)
{
    return zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_z85, 40) ||
                   zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY,
                                  zcert_public_txt(mine), 40) ||
                   zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY,
                                  zcert_secret_txt(mine), 40)
               ? -1
               : 0;
}

//  Make sock a CURVE client.
int evr_curve_client(void *sock, const char *cert, const char *server,
                     char *err, size_t errlen)
{
    char key[41];
    if (evr_curve_server_key(server, key, err, errlen))
        return -1;
    zcert_t *mine = zcert_load(cert);
    if (!mine) {
        snprintf(err, errlen, "cannot load the certificate %s", cert);
        return -1;
    }
    int rc = evr_curve_apply(sock, mine, key);
    bool secret_missing = !strcmp(zcert_secret_txt(mine),
                                  "0000000000000000000000000000000000000000");
    zcert_destroy(&mine);
    if (secret_missing) {
        snprintf(err, errlen,
                 "%s holds no secret key (use the NAME.cert_secret file)",
                 cert);
        return -1;
    }
    if (rc) {
        snprintf(err, errlen, "CURVE: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}
