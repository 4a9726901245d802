/*  evr_amqp_consume.c - a tiny AMQP client for the rabbitmq integration
    tests (tests/integration/test_rabbitmq.py): Python's standard library
    has no AMQP client, and the interpreter that runs the tests cannot be
    assumed to see Debian's python3-pika.

        evr-amqp-consume setup   [options] --queue Q [--exchange X] [--key K]
                                 [--durable 1]
            declare the exchange (direct, when given), declare (durable
            when asked) and purge the queue, bind it to the exchange with
            the key; prints "ok"
        evr-amqp-consume consume [options] --queue Q --count N
                                 [--timeout-ms T]
            consume up to N messages (auto-ack), waiting at most T ms in
            all (default 10000); prints one JSON line per message:
            {"exchange","routing_key","content_type","message_id",
             "delivery_mode","body_hex"}

    options: --host H (127.0.0.1) --port P (5672) --vhost V (/) --user U
    (guest) --password P (guest). Exit code 0, or 1 with a message on
    stderr when the broker refuses something.
*/
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

typedef struct {
    const char *host, *vhost, *user, *password, *queue, *exchange, *key;
    int port, count, timeout_ms, durable;
} s_args_t;

//  Print why and exit 1.
static void s_die(const char *what, const char *why)
{
    fprintf(stderr, "evr-amqp-consume: %s: %s\n", what, why);
    exit(1);
}

//  Exit 1 unless an RPC reply is normal.
static void s_check(amqp_rpc_reply_t r, const char *what)
{
    char why[256];
    switch (r.reply_type) {
        case AMQP_RESPONSE_NORMAL:
            return;
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            s_die(what, amqp_error_string2(r.library_error));
            break;
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
                amqp_connection_close_t *c = r.reply.decoded;
                snprintf(why, sizeof why, "connection closed: %u %.*s",
                         c->reply_code, (int)c->reply_text.len,
                         (char *)c->reply_text.bytes);
            } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                amqp_channel_close_t *c = r.reply.decoded;
                snprintf(why, sizeof why, "channel closed: %u %.*s",
                         c->reply_code, (int)c->reply_text.len,
                         (char *)c->reply_text.bytes);
            } else
                snprintf(why, sizeof why, "method 0x%08x",
                         (unsigned)r.reply.id);
            s_die(what, why);
            break;
        default:
            s_die(what, "no reply");
    }
}

//  Print bytes as a JSON string (escaping quotes, backslashes, controls).
static void s_json_string(amqp_bytes_t b)
{
    putchar('"');
    for (size_t i = 0; i < b.len; i++) {
        unsigned char c = ((unsigned char *)b.bytes)[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

//  Print one consumed message as a JSON line.
static void s_print(const amqp_envelope_t *env)
{
    const amqp_basic_properties_t *p = &env->message.properties;
    printf("{\"exchange\":");
    s_json_string(env->exchange);
    printf(",\"routing_key\":");
    s_json_string(env->routing_key);
    printf(",\"content_type\":");
    if (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
        s_json_string(p->content_type);
    else
        printf("null");
    printf(",\"message_id\":");
    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        s_json_string(p->message_id);
    else
        printf("null");
    printf(",\"delivery_mode\":");
    if (p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG)
        printf("%u", p->delivery_mode);
    else
        printf("null");
    printf(",\"body_hex\":\"");
    const unsigned char *body = env->message.body.bytes;
    for (size_t i = 0; i < env->message.body.len; i++)
        printf("%02x", body[i]);
    printf("\"}\n");
    fflush(stdout);
}

//  Milliseconds on the monotonic clock.
static long long s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  Parse the command line into args; returns the subcommand.
static const char *s_parse(int argc, char **argv, s_args_t *a)
{
    *a = (s_args_t){.host = "127.0.0.1",
                    .vhost = "/",
                    .user = "guest",
                    .password = "guest",
                    .port = 5672,
                    .count = 1,
                    .timeout_ms = 10000};
    if (argc < 2)
        s_die("usage", "setup|consume [options]");
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc)
            s_die(opt, "needs a value");
        const char *v = argv[++i];
        if (!strcmp(opt, "--host"))
            a->host = v;
        else if (!strcmp(opt, "--port"))
            a->port = atoi(v);
        else if (!strcmp(opt, "--vhost"))
            a->vhost = v;
        else if (!strcmp(opt, "--user"))
            a->user = v;
        else if (!strcmp(opt, "--password"))
            a->password = v;
        else if (!strcmp(opt, "--queue"))
            a->queue = v;
        else if (!strcmp(opt, "--exchange"))
            a->exchange = v;
        else if (!strcmp(opt, "--key"))
            a->key = v;
        else if (!strcmp(opt, "--durable"))
            a->durable = atoi(v);
        else if (!strcmp(opt, "--count"))
            a->count = atoi(v);
        else if (!strcmp(opt, "--timeout-ms"))
            a->timeout_ms = atoi(v);
        else
            s_die(opt, "unknown option");
    }
    if (!a->queue)
        s_die("--queue", "required");
    return argv[1];
}

//  Declare the exchange, declare and purge the queue, bind them.
static void s_setup(amqp_connection_state_t conn, const s_args_t *a)
{
    amqp_bytes_t queue = amqp_cstring_bytes(a->queue);
    if (a->exchange && *a->exchange) {
        amqp_exchange_declare(conn, 1, amqp_cstring_bytes(a->exchange),
                              amqp_cstring_bytes("direct"), 0, 0, 0, 0,
                              amqp_empty_table);
        s_check(amqp_get_rpc_reply(conn), "exchange.declare");
    }
    amqp_queue_declare(conn, 1, queue, 0, a->durable != 0, 0, 0,
                       amqp_empty_table);
    s_check(amqp_get_rpc_reply(conn), "queue.declare");
    amqp_queue_purge(conn, 1, queue);
    s_check(amqp_get_rpc_reply(conn), "queue.purge");
    if (a->exchange && *a->exchange) {
        amqp_queue_bind(conn, 1, queue, amqp_cstring_bytes(a->exchange),
                        amqp_cstring_bytes(a->key ? a->key : a->queue),
                        amqp_empty_table);
        s_check(amqp_get_rpc_reply(conn), "queue.bind");
    }
    printf("ok\n");
}

//  Consume up to count messages within timeout_ms.
static void s_consume(amqp_connection_state_t conn, const s_args_t *a)
{
    amqp_basic_consume(conn, 1, amqp_cstring_bytes(a->queue), amqp_empty_bytes,
                       0, 1, 0, amqp_empty_table);
    s_check(amqp_get_rpc_reply(conn), "basic.consume");
    long long deadline = s_now_ms() + a->timeout_ms;
    for (int got = 0; got < a->count;) {
        long long left = deadline - s_now_ms();
        if (left <= 0)
            break;
        struct timeval tv = {(time_t)(left / 1000),
                             (suseconds_t)(left % 1000) * 1000};
        amqp_envelope_t env;
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t r = amqp_consume_message(conn, &env, &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            r.library_error == AMQP_STATUS_TIMEOUT)
            break;
        s_check(r, "consume");
        s_print(&env);
        amqp_destroy_envelope(&env);
        got++;
    }
}

int main(int argc, char **argv)
{
    s_args_t a;
    const char *cmd = s_parse(argc, argv, &a);
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *sock = amqp_tcp_socket_new(conn);
    struct timeval tv = {5, 0};
    if (!sock)
        s_die("socket", "out of memory");
    int rc = amqp_socket_open_noblock(sock, a.host, a.port, &tv);
    if (rc != AMQP_STATUS_OK)
        s_die("connect", amqp_error_string2(rc));
    amqp_set_handshake_timeout(conn, &tv);
    amqp_set_rpc_timeout(conn, &tv);
    s_check(amqp_login(conn, a.vhost, 0, AMQP_DEFAULT_FRAME_SIZE, 0,
                       AMQP_SASL_METHOD_PLAIN, a.user, a.password),
            "login");
    amqp_channel_open(conn, 1);
    s_check(amqp_get_rpc_reply(conn), "channel.open");
    if (!strcmp(cmd, "setup"))
        s_setup(conn, &a);
    else if (!strcmp(cmd, "consume"))
        s_consume(conn, &a);
    else
        s_die(cmd, "unknown command (setup, consume)");
    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    return 0;
}
