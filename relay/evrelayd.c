/*  evrelayd.c - the relay daemon: read settings, run the relay. */
#include "evr_config.h"
#include "evr_relay.h"

#include <czmq.h>
#include <curl/curl.h>

//  Entry point.
int main(int argc, char **argv)
{
    //  Our own signal handling: SIGTERM/SIGINT stop, SIGHUP rotates.
    zsys_handler_set(NULL);
    char err[1024];
    evr_config_t *cfg = evr_config_new();
    if (!cfg) {
        fprintf(stderr, "evrelayd: out of memory\n");
        return 1;
    }
    int rc = evr_config_args(cfg, argc, argv, err, sizeof err);
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "evrelayd: %s\n", err);
        evr_config_destroy(&cfg);
        return rc < 0 ? 2 : 0;
    }
    zsys_set_logident("evrelayd");
    zsys_set_logstream(stderr);
    if (cfg->syslog) {
        zsys_set_logsystem(true);
        zsys_set_logstream(NULL);
    }
    //  libcurl (http transport) once, before any worker thread uses it
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        zsys_error("cannot initialise libcurl");
        evr_config_destroy(&cfg);
        return 1;
    }
    evr_relay_t *relay = evr_relay_new(cfg, err, sizeof err);
    if (!relay) {
        zsys_error("%s", err);
        curl_global_cleanup();
        evr_config_destroy(&cfg);
        return 1;
    }
    rc = evr_relay_run(relay);
    evr_relay_destroy(&relay);
    curl_global_cleanup();
    evr_config_destroy(&cfg);
    return rc == 0 ? 0 : 1;
}
