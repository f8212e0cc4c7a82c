/* The POSIX port over TLS (posix_tls.c), under the sanitizers, against an mbedTLS server in a
 * thread of this process on real TCP: a verified session carries bytes both ways, a read
 * without data times out with 0, the server's close_notify is -1, the context is reusable after
 * a close and after a refusal; another CA, another name, a peer that never answers TLS are
 * refused by tcp_connect; bad CA settings are refused by sprout_tls_new. The certificates in
 * test/tls are for these tests only (a P-256 CA, a node certificate for DNS:localhost, and
 * another CA with the same name but its own key), valid until 2126. */
#define _GNU_SOURCE
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "posix_port.h"

#define TLS_DIR SPROUT_TEST_DIR "/tls"

enum server_mode { SERVE_ECHO_THEN_CLOSE, SERVE_HANDSHAKE_ONLY, SERVE_SILENT };

typedef struct {
    int listen_fd;
    uint16_t port;
    enum server_mode mode;
    int accepts;          /* connections to serve */
    int handshake_ret[4]; /* mbedtls_ssl_handshake's result per connection */
    pthread_t thread;
} server;

static int srv_rng(void *ctx, unsigned char *buf, size_t len)
{
    (void)ctx;
    return getrandom(buf, len, 0) == (ssize_t)len ? 0 : -1;
}

static void *serve(void *arg)
{
    server *s = arg;
    mbedtls_x509_crt cert;
    mbedtls_pk_context key;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt_init(&cert);
    mbedtls_pk_init(&key);
    mbedtls_ssl_config_init(&conf);
    if (mbedtls_x509_crt_parse_file(&cert, TLS_DIR "/node.pem") != 0 ||
        mbedtls_pk_parse_keyfile(&key, TLS_DIR "/node-key.pem", NULL) != 0 ||
        mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0 ||
        mbedtls_ssl_conf_own_cert(&conf, &cert, &key) != 0) {
        fprintf(stderr, "test server: cannot load test/tls\n");
        abort();
    }
    mbedtls_ssl_conf_rng(&conf, srv_rng, NULL);
    for (int i = 0; i < s->accepts; i++) {
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0) {
            break;
        }
        if (s->mode == SERVE_SILENT) {
            char b[512];
            while (read(fd, b, sizeof b) > 0) { /* hold the connection, say nothing */
            }
            close(fd);
            continue;
        }
        mbedtls_ssl_context ssl;
        mbedtls_ssl_init(&ssl);
        mbedtls_ssl_setup(&ssl, &conf);
        mbedtls_net_context net = {.fd = fd};
        mbedtls_ssl_set_bio(&ssl, &net, mbedtls_net_send, mbedtls_net_recv, NULL);
        int ret = mbedtls_ssl_handshake(&ssl);
        s->handshake_ret[i] = ret;
        if (ret == 0 && s->mode == SERVE_ECHO_THEN_CLOSE) {
            unsigned char b[64];
            int n = mbedtls_ssl_read(&ssl, b, sizeof b);
            if (n > 0) {
                mbedtls_ssl_write(&ssl, b, (size_t)n);
            }
            /* wait for the client's "close now" byte, then close_notify */
            n = mbedtls_ssl_read(&ssl, b, sizeof b);
            mbedtls_ssl_close_notify(&ssl);
        } else if (ret == 0) {
            unsigned char b[64];
            while (mbedtls_ssl_read(&ssl, b, sizeof b) > 0) {
            }
        }
        mbedtls_ssl_free(&ssl);
        close(fd);
    }
    mbedtls_ssl_config_free(&conf);
    mbedtls_pk_free(&key);
    mbedtls_x509_crt_free(&cert);
    return NULL;
}

static void server_start(server *s, enum server_mode mode, int accepts)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->accepts = accepts;
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->listen_fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->listen_fd, 4), 0);
    socklen_t alen = sizeof a;
    assert_int_equal(getsockname(s->listen_fd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void server_join(server *s)
{
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
}

static char dir[64];
static sprout_posix p;
static sprout_port port;

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sprout-tls-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(sprout_posix_init(&p, dir, "tls-test "), 0);
    p.log_level = SPROUT_LOG_DEBUG; /* the refusals' reasons show in the test output */
    sprout_posix_port(&p, &port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    port.tcp_close(port.ctx);
    sprout_tls_free(p.tls);
    p.tls = NULL;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static void use_tls(const char *ca_file, const char *server_name, uint32_t handshake_ms)
{
    sprout_tls_options o = {.ca_file = ca_file, .server_name = server_name, .handshake_timeout_ms = handshake_ms};
    char err[300] = "";
    int rc = sprout_tls_new(&p.tls, &o, err, sizeof err);
    if (rc != 0) {
        fail_msg("sprout_tls_new: %s", err);
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_a_verified_session_carries_bytes_and_ends_on_close_notify(void **state)
{
    (void)state;
    server s;
    server_start(&s, SERVE_ECHO_THEN_CLOSE, 2);
    use_tls(TLS_DIR "/ca.pem", NULL, 2000);
    for (int round = 0; round < 2; round++) { /* the same context, a second connection */
        assert_int_equal(port.tcp_connect(port.ctx, "localhost", s.port, 2000), 0);
        assert_int_equal(port.tcp_send(port.ctx, (const uint8_t *)"ping", 4, 2000), 0);
        uint8_t buf[16];
        int got = 0;
        while (got < 4) {
            int n = port.tcp_recv(port.ctx, buf + got, sizeof buf - (size_t)got, 2000);
            assert_true(n > 0);
            got += n;
        }
        assert_memory_equal(buf, "ping", 4);
        /* nothing more to read: a timeout is 0, within its bound */
        int64_t t0 = now_ms();
        assert_int_equal(port.tcp_recv(port.ctx, buf, sizeof buf, 100), 0);
        assert_true(now_ms() - t0 < 1000);
        /* the server's close_notify ends the connection: -1 */
        assert_int_equal(port.tcp_send(port.ctx, (const uint8_t *)"x", 1, 2000), 0);
        int n;
        while ((n = port.tcp_recv(port.ctx, buf, sizeof buf, 2000)) == 0) {
        }
        assert_int_equal(n, -1);
        port.tcp_close(port.ctx);
        assert_int_equal(p.fd, -1);
        /* a closed connection sends and receives nothing */
        assert_int_equal(port.tcp_send(port.ctx, (const uint8_t *)"x", 1, 100), -1);
        assert_int_equal(port.tcp_recv(port.ctx, buf, sizeof buf, 100), -1);
    }
    server_join(&s);
    assert_int_equal(s.handshake_ret[0], 0);
    assert_int_equal(s.handshake_ret[1], 0);
}

/* refused: tcp_connect fails, the socket is closed, and the server's handshake fails (the
 * client's fatal alert, or a reset when the client closed with the server's flight unread). */
static void expect_refused(void)
{
    server s;
    server_start(&s, SERVE_HANDSHAKE_ONLY, 1);
    assert_int_equal(port.tcp_connect(port.ctx, "localhost", s.port, 2000), -1);
    assert_int_equal(p.fd, -1);
    server_join(&s);
    assert_true(s.handshake_ret[0] == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE || s.handshake_ret[0] == MBEDTLS_ERR_NET_CONN_RESET);
}

static void test_another_ca_is_refused(void **state)
{
    (void)state;
    use_tls(TLS_DIR "/other-ca.pem", NULL, 2000);
    expect_refused();
}

static void test_another_name_is_refused_and_the_context_is_reusable(void **state)
{
    (void)state;
    use_tls(TLS_DIR "/ca.pem", "not-this-node.example", 2000);
    expect_refused();
    /* The same name, dialled as an address: IP SANs are not matched by mbedTLS 2.28, and the
     * node's certificate has none. The name given is what counts. */
    sprout_tls_free(p.tls);
    use_tls(TLS_DIR "/ca.pem", "localhost", 2000);
    server s;
    server_start(&s, SERVE_HANDSHAKE_ONLY, 1);
    assert_int_equal(port.tcp_connect(port.ctx, "127.0.0.1", s.port, 2000), 0);
    port.tcp_close(port.ctx);
    server_join(&s);
    assert_int_equal(s.handshake_ret[0], 0);
}

static void test_a_peer_that_never_answers_times_the_handshake_out(void **state)
{
    (void)state;
    server s;
    server_start(&s, SERVE_SILENT, 1);
    use_tls(TLS_DIR "/ca.pem", NULL, 200);
    int64_t t0 = now_ms();
    assert_int_equal(port.tcp_connect(port.ctx, "localhost", s.port, 2000), -1);
    int64_t took = now_ms() - t0;
    assert_true(took >= 200 && took < 1500);
    server_join(&s); /* our close ends the silent server's read */
}

static void test_bad_ca_settings_are_refused(void **state)
{
    (void)state;
    sprout_tls *t = NULL;
    char err[300];
    sprout_tls_options missing = {.ca_file = TLS_DIR "/missing.pem"};
    assert_int_equal(sprout_tls_new(&t, &missing, err, sizeof err), -1);
    assert_non_null(strstr(err, "missing.pem"));
    assert_null(t);
    sprout_tls_options key = {.ca_file = TLS_DIR "/node-key.pem"};
    assert_int_equal(sprout_tls_new(&t, &key, err, sizeof err), -1);
    assert_non_null(strstr(err, "CA file"));
    sprout_tls_options garbage = {.ca_pem = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"};
    assert_int_equal(sprout_tls_new(&t, &garbage, err, sizeof err), -1);
    assert_non_null(strstr(err, "CA PEM"));
    sprout_tls_options none = {0};
    assert_int_equal(sprout_tls_new(&t, &none, err, sizeof err), sprout_tls_builtin_ca() ? 0 : -1);
    sprout_tls_free(t);
    t = NULL;
    char long_name[300];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    sprout_tls_options name = {.ca_file = TLS_DIR "/ca.pem", .server_name = long_name};
    assert_int_equal(sprout_tls_new(&t, &name, err, sizeof err), -1);
    assert_null(t);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* the test server writes with write(): a refused peer is EPIPE, not death */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_verified_session_carries_bytes_and_ends_on_close_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_another_ca_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_another_name_is_refused_and_the_context_is_reusable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_peer_that_never_answers_times_the_handshake_out, setup, teardown),
        cmocka_unit_test(test_bad_ca_settings_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
