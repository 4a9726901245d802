/*  evr_curve.h - CURVE for evrelay's clients (libevrelay, evrelayctl,
    evrelay-agent, the bench and test tools).

    A client presents its certificate (a secret certificate file written
    by `evrelayctl keygen`, read with czmq's zcert) and must know each
    relay's public key: given as 40 characters of Z85, or as the path of
    the relay's public certificate file.
*/
#ifndef EVR_CURVE_H_INCLUDED
#define EVR_CURVE_H_INCLUDED

#include <czmq.h>
#include <stddef.h>

//  Resolve a server key argument (Z85 text, or a certificate file) into
//  key[41]. Returns 0, or -1 with a reason in err.
int evr_curve_server_key(const char *arg, char *key, char *err, size_t errlen);

//  Make sock a CURVE client presenting mine (its secret key loaded) to the
//  server whose public key is server_z85 (40 characters). Returns 0 or -1.
int evr_curve_apply(void *sock, zcert_t *mine, const char *server_z85);

//  Make sock a CURVE client: cert is the client's secret certificate file,
//  server a server key argument (see evr_curve_server_key). Call before
//  each connect whose server differs. Returns 0, or -1 with a reason.
int evr_curve_client(void *sock, const char *cert, const char *server,
                     char *err, size_t errlen);

#endif
