#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE

#include "posix_tls.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

struct sprout_tls {
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    mbedtls_x509_crt ca;
    char server_name[256]; /* empty: the host connected to */
    uint32_t handshake_timeout_ms;
    int fd;                /* the socket of the current connection, -1 if none */
    int active;            /* handshake done, not yet ended */
};

int sprout_tls_builtin_ca(void)
{
#ifdef SPROUT_TLS_BUILTIN_CA_PEM
    return 1;
#else
    return 0;
#endif
}

static void errf(char *err, size_t cap, const char *fmt, ...)
{
    if (err == NULL || cap == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

static void mbed_errf(char *err, size_t cap, const char *what, int ret)
{
    char msg[160];
    mbedtls_strerror(ret, msg, sizeof msg);
    errf(err, cap, "%s: %s (-0x%04x)", what, msg, (unsigned)-ret);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* rng feeds mbedTLS from the kernel's CSPRNG, as the port's random_bytes does. */
static int rng(void *ctx, unsigned char *buf, size_t len)
{
    (void)ctx;
    while (len > 0) {
        ssize_t n = getrandom(buf, len, 0);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The BIO over the non-blocking socket: EAGAIN becomes WANT_READ/WANT_WRITE, and the callers
 * below wait with poll() within their own deadline. */
static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    int fd = *(int *)ctx;
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) {
            return (int)n;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return MBEDTLS_ERR_SSL_WANT_WRITE;
        }
        return errno == EPIPE || errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_SEND_FAILED;
    }
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    int fd = *(int *)ctx;
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0) {
            return (int)n; /* 0: EOF, which mbedTLS reports as MBEDTLS_ERR_SSL_CONN_EOF */
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return MBEDTLS_ERR_SSL_WANT_READ;
        }
        return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
    }
}

/* wait_io waits until the socket is ready for what mbedTLS asked (ret), at most until deadline.
 * 1: ready, 0: the deadline passed, -1: the socket failed. */
static int wait_io(int fd, int ret, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            return 0;
        }
        struct pollfd pfd = {.fd = fd, .events = ret == MBEDTLS_ERR_SSL_WANT_WRITE ? POLLOUT : POLLIN};
        int r = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
        if (r > 0) {
            return 1; /* POLLERR/POLLHUP too: the next call reports what happened */
        }
        if (r < 0 && errno != EINTR) {
            return -1;
        }
    }
}

int sprout_tls_new(sprout_tls **out, const sprout_tls_options *o, char *err, size_t errcap)
{
    *out = NULL;
    sprout_tls *t = calloc(1, sizeof *t);
    if (t == NULL) {
        errf(err, errcap, "out of memory");
        return -1;
    }
    t->fd = -1;
    t->handshake_timeout_ms = o->handshake_timeout_ms != 0 ? o->handshake_timeout_ms : SPROUT_TLS_DEFAULT_HANDSHAKE_MS;
    if (o->server_name != NULL) {
        if (strlen(o->server_name) >= sizeof t->server_name || o->server_name[0] == '\0') {
            errf(err, errcap, "server name must be 1..%zu bytes", sizeof t->server_name - 1);
            free(t);
            return -1;
        }
        snprintf(t->server_name, sizeof t->server_name, "%s", o->server_name);
    }
    mbedtls_x509_crt_init(&t->ca);
    mbedtls_ssl_config_init(&t->conf);
    mbedtls_ssl_init(&t->ssl);

    int ret;
    if (o->ca_file != NULL) {
        ret = mbedtls_x509_crt_parse_file(&t->ca, o->ca_file);
        if (ret != 0) {
            /* >0: that many certificates in the file failed to parse (the others loaded) */
            if (ret > 0) {
                errf(err, errcap, "CA file %s: %d certificate(s) could not be parsed", o->ca_file, ret);
            } else {
                char what[300];
                snprintf(what, sizeof what, "CA file %s", o->ca_file);
                mbed_errf(err, errcap, what, ret);
            }
            goto fail;
        }
    } else {
        const char *pem = o->ca_pem;
#ifdef SPROUT_TLS_BUILTIN_CA_PEM
        if (pem == NULL) {
            pem = SPROUT_TLS_BUILTIN_CA_PEM;
        }
#endif
        if (pem == NULL) {
            errf(err, errcap, "no CA: give a CA file, or build with one compiled in (make VDEV_CA=ca.pem)");
            goto fail;
        }
        /* PEM input is parsed with its terminating NUL counted. */
        ret = mbedtls_x509_crt_parse(&t->ca, (const unsigned char *)pem, strlen(pem) + 1);
        if (ret != 0) {
            if (ret > 0) {
                errf(err, errcap, "CA PEM: %d certificate(s) could not be parsed", ret);
            } else {
                mbed_errf(err, errcap, "CA PEM", ret);
            }
            goto fail;
        }
    }

    ret = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0) {
        mbed_errf(err, errcap, "TLS config", ret);
        goto fail;
    }
    /* TLS 1.2 minimum (major 3, minor 3); 2.28 speaks nothing newer anyway. */
    mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, NULL);
    mbedtls_ssl_conf_rng(&t->conf, rng, NULL);
    ret = mbedtls_ssl_setup(&t->ssl, &t->conf);
    if (ret != 0) {
        mbed_errf(err, errcap, "TLS setup", ret);
        goto fail;
    }
    *out = t;
    return 0;
fail:
    sprout_tls_free(t);
    return -1;
}

void sprout_tls_free(sprout_tls *t)
{
    if (t == NULL) {
        return;
    }
    mbedtls_ssl_free(&t->ssl);
    mbedtls_ssl_config_free(&t->conf);
    mbedtls_x509_crt_free(&t->ca);
    free(t);
}

int sprout_tls_start(sprout_tls *t, int fd, const char *host, char *err, size_t errcap)
{
    sprout_tls_end(t);
    t->fd = fd;
    const char *name = t->server_name[0] != '\0' ? t->server_name : host;
    /* The name is both sent (SNI) and checked against the certificate. */
    int ret = mbedtls_ssl_set_hostname(&t->ssl, name);
    if (ret != 0) {
        mbed_errf(err, errcap, "server name", ret);
        t->fd = -1;
        return -1;
    }
    mbedtls_ssl_set_bio(&t->ssl, &t->fd, bio_send, bio_recv, NULL);
    int64_t deadline = now_ms() + t->handshake_timeout_ms;
    while ((ret = mbedtls_ssl_handshake(&t->ssl)) != 0) {
        if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
            int w = wait_io(fd, ret, deadline);
            if (w == 1) {
                continue;
            }
            errf(err, errcap, w == 0 ? "TLS handshake timed out after %u ms" : "TLS handshake: poll failed",
                 (unsigned)t->handshake_timeout_ms);
        } else if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
            char why[256];
            int n = mbedtls_x509_crt_verify_info(why, sizeof why, "", mbedtls_ssl_get_verify_result(&t->ssl));
            /* verify_info ends each reason with a newline: keep the text on one line */
            for (int i = 0; i < n && why[i] != '\0'; i++) {
                if (why[i] == '\n') {
                    why[i] = (why[i + 1] == '\0') ? '\0' : ';';
                }
            }
            errf(err, errcap, "server certificate refused (name %s): %s", name, n > 0 ? why : "verification failed");
        } else {
            mbed_errf(err, errcap, "TLS handshake", ret);
        }
        mbedtls_ssl_session_reset(&t->ssl);
        t->fd = -1;
        return -1;
    }
    t->active = 1;
    return 0;
}

void sprout_tls_describe(const sprout_tls *t, char *buf, size_t cap)
{
    errf(buf, cap, "%s %s, server verified as %s", mbedtls_ssl_get_version(&t->ssl),
         mbedtls_ssl_get_ciphersuite(&t->ssl), t->ssl.hostname != NULL ? t->ssl.hostname : "?");
}

int sprout_tls_send(sprout_tls *t, const uint8_t *buf, size_t len, uint32_t timeout_ms, char *err, size_t errcap)
{
    if (!t->active) {
        errf(err, errcap, "TLS: not connected");
        return -1;
    }
    int64_t deadline = now_ms() + timeout_ms;
    while (len > 0) {
        int ret = mbedtls_ssl_write(&t->ssl, buf, len);
        if (ret > 0) {
            buf += ret;
            len -= (size_t)ret;
            continue;
        }
        if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
            int w = wait_io(t->fd, ret, deadline);
            if (w == 1) {
                continue;
            }
            errf(err, errcap, w == 0 ? "TLS send timed out" : "TLS send: poll failed");
            return -1;
        }
        mbed_errf(err, errcap, "TLS send", ret);
        return -1;
    }
    return 0;
}

int sprout_tls_recv(sprout_tls *t, uint8_t *buf, size_t cap, uint32_t timeout_ms, char *err, size_t errcap)
{
    if (!t->active) {
        errf(err, errcap, "TLS: not connected");
        return -1;
    }
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        /* Decrypted bytes already buffered are returned without waiting; otherwise the read
         * waits for a whole record within the timeout. */
        if (mbedtls_ssl_get_bytes_avail(&t->ssl) == 0 && mbedtls_ssl_check_pending(&t->ssl) == 0) {
            int w = wait_io(t->fd, MBEDTLS_ERR_SSL_WANT_READ, deadline);
            if (w == 0) {
                return 0;
            }
            if (w < 0) {
                errf(err, errcap, "TLS recv: poll failed");
                return -1;
            }
        }
        int ret = mbedtls_ssl_read(&t->ssl, buf, cap);
        if (ret > 0) {
            return ret;
        }
        if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
            if (now_ms() >= deadline) {
                return 0; /* part of a record: the rest is read on the next call */
            }
            continue;
        }
        if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == MBEDTLS_ERR_SSL_CONN_EOF) {
            errf(err, errcap, "TLS: the server closed the connection");
        } else {
            mbed_errf(err, errcap, "TLS recv", ret);
        }
        return -1;
    }
}

void sprout_tls_end(sprout_tls *t)
{
    if (t->active && t->fd >= 0) {
        (void)mbedtls_ssl_close_notify(&t->ssl); /* non-blocking socket: best effort */
    }
    t->active = 0;
    if (t->fd >= 0) {
        mbedtls_ssl_session_reset(&t->ssl);
    }
    t->fd = -1;
}
