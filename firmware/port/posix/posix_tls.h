/* TLS for the POSIX port, with mbedTLS (2.28, Debian's libmbedtls-dev): the port's tcp_* functions
 * run over it when sprout_posix.tls is set, so the portable core neither knows nor cares. TLS 1.2
 * or newer; the server's certificate must chain to the configured CA and name the expected host.
 * A failed handshake is a failed tcp_connect (-1): the core backs off as for a refused socket and
 * never sends its Hello to a server it could not verify. */
#ifndef SPROUT_POSIX_TLS_H
#define SPROUT_POSIX_TLS_H

#include <stddef.h>
#include <stdint.h>

/* SPROUT_TLS_DEFAULT_HANDSHAKE_MS bounds the TLS handshake after the TCP connect. */
#define SPROUT_TLS_DEFAULT_HANDSHAKE_MS 10000

typedef struct {
    /* The trusted CA certificates, PEM: ca_file if set, else ca_pem (NUL-terminated), else the
     * CA compiled in (make VDEV_CA=ca.pem, which defines SPROUT_TLS_BUILTIN_CA_PEM). */
    const char *ca_file;
    const char *ca_pem;
    /* The DNS name the certificate must carry (subjectAltName, or its CN without one); NULL: the
     * host given to tcp_connect. mbedTLS 2.28 does not match IP-address SANs: name a DNS name. */
    const char *server_name;
    uint32_t handshake_timeout_ms; /* 0: SPROUT_TLS_DEFAULT_HANDSHAKE_MS */
} sprout_tls_options;

typedef struct sprout_tls sprout_tls;

/* sprout_tls_builtin_ca says whether a CA was compiled in. */
int sprout_tls_builtin_ca(void);

/* sprout_tls_new loads the CA and prepares a client; on failure it writes why into err. */
int sprout_tls_new(sprout_tls **out, const sprout_tls_options *o, char *err, size_t errcap);
void sprout_tls_free(sprout_tls *t);

/* sprout_tls_start runs the handshake over the connected, non-blocking socket fd: 0 when the
 * server is verified, -1 (with err) otherwise. host is the name connected to. */
int sprout_tls_start(sprout_tls *t, int fd, const char *host, char *err, size_t errcap);
/* send: 0 when all of buf is sent, -1 on error or timeout. recv: bytes read (>0), 0 on timeout,
 * -1 when the connection is closed (close_notify or EOF) or broken. Both log nothing. */
int sprout_tls_send(sprout_tls *t, const uint8_t *buf, size_t len, uint32_t timeout_ms, char *err, size_t errcap);
int sprout_tls_recv(sprout_tls *t, uint8_t *buf, size_t cap, uint32_t timeout_ms, char *err, size_t errcap);
/* sprout_tls_describe writes the session's version, cipher suite and verified name. */
void sprout_tls_describe(const sprout_tls *t, char *buf, size_t cap);
/* sprout_tls_end sends close_notify (best effort, never blocks) and readies t for the next
 * connection; the caller closes the socket. */
void sprout_tls_end(sprout_tls *t);

#endif
