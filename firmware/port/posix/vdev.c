/* vdev: one virtual plant pot. The portable core over the POSIX port, with a simulated pot.
 *
 *   vdev --server host:port[,host:port...] --id ID --secret HEX [options]
 *
 * Runs until SIGTERM or SIGINT (or --run-for-ms). Logs go to stderr. With --tls (or --ca FILE) the
 * link runs over TLS (mbedTLS), the server verified against the CA and --server-name. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "client.h"
#include "ota_posix.h"
#include "posix_port.h"

#define MAX_SERVERS 8
#define FIRMWARE_VERSION "vdev-0.1.0"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

#ifdef VDEV_OTA_PUBKEY
static const char builtin_key_note[] = " (default: the key compiled in)";
#else
static const char builtin_key_note[] = "";
#endif

static void usage(FILE *to)
{
    fprintf(to,
            "usage: vdev --server host:port[,host:port...] --id ID --secret HEX [options]\n"
            "  --state-dir DIR          key-value storage (default ./vdev-state-ID)\n"
            "  --report-interval-ms N   take a reading every N ms instead of the server's config\n"
            "  --start-dry              start with soil at 10%% moisture (raises a soil_dry alert)\n"
            "  --moisture PCT           initial soil moisture (default 45)\n"
            "  --tank PCT               initial tank level (default 80)\n"
            "  --dry-rate PCT           moisture lost per minute at 20 degC (default 0.5)\n"
            "  --temperature C          mean temperature (default 22)\n"
            "  --silent                 never answer commands (the server times them out)\n"
            "  --backoff-max-ms N       cap on the reconnect delay (default 60000)\n"
            "  --run-for-ms N           exit after N ms\n"
            "  --tls                    connect over TLS (TLS 1.2+), verifying the server against the CA\n"
            "                           compiled in (make VDEV_CA=ca.pem)%s, or --ca\n"
            "  --ca FILE                trusted CA certificate(s), PEM (implies --tls)\n"
            "  --server-name NAME       DNS name the server's certificate must carry (default: the\n"
            "                           host of --server; IP-address SANs are not matched)\n"
            "  --tls-handshake-timeout-ms N  bound on the TLS handshake (default 10000)\n"
            "  --firmware-version V     the version of the built-in image (default " FIRMWARE_VERSION ");\n"
            "                           an image in an OTA slot says its own on its first line\n"
            "  --ota-pubkey FILE        accept firmware updates signed by this Ed25519 key (64 hex\n"
            "                           digits, as 'sprout firmware keygen' writes OUT.pub)%s\n"
            "  --product NAME           refuse updates for another product\n"
            "  --ota-slot-bytes N       capacity of an update slot (default 4194304)\n"
            "  --ota-fail-version V     simulate an image V that crashes before connecting (tests rollback)\n"
            "  --ota-retry-ms N         first re-check of short download margins (default 30000);\n"
            "                           doubling up to --ota-retry-max-ms (default 900000)\n"
            "  --ota-save-every-bytes N persist a download's offset every N bytes (default 16384)\n"
            "  --supply-mv N            the simulated supply (default 5000, USB; a download waits\n"
            "                           below 3600)\n"
            "  --wifi-rssi-dbm N        the simulated WiFi signal (default -55; a download waits below -80)\n"
            "  --free-heap N            the simulated free heap (default 120000; a download waits below 16384)\n"
            "  --conditions-file FILE   re-read at every measurement: lines 'supply_mv N', 'rssi_dbm N',\n"
            "                           'free_heap N' override the three flags above while vdev runs\n"
            "  --verbose / --quiet      more or fewer log lines\n",
            sprout_tls_builtin_ca() ? " (one is)" : " (none is)", builtin_key_note);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static int parse_hex(const char *s, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = strlen(s);
    if (n == 0 || n % 2 != 0 || n / 2 > cap) {
        return -1;
    }
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *len = n / 2;
    return 0;
}

/* parse_servers splits "a:1,b:2" in place into servers. */
static int parse_servers(char *list, sprout_server *servers, size_t *count)
{
    *count = 0;
    for (char *tok = strtok(list, ","); tok != NULL; tok = strtok(NULL, ",")) {
        char *colon = strrchr(tok, ':');
        if (colon == NULL || *count == MAX_SERVERS) {
            return -1;
        }
        *colon = '\0';
        char *end = NULL;
        long port = strtol(colon + 1, &end, 10);
        if (*end != '\0' || port <= 0 || port > 65535) {
            return -1;
        }
        if (tok[0] == '[') { /* [::1]:port */
            tok++;
            size_t l = strlen(tok);
            if (l > 0 && tok[l - 1] == ']') {
                tok[l - 1] = '\0';
            }
        }
        servers[*count].host = tok;
        servers[*count].port = (uint16_t)port;
        (*count)++;
    }
    return *count > 0 ? 0 : -1;
}

static double number(const char *flag, const char *v)
{
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0') {
        fprintf(stderr, "vdev: %s: not a number: %s\n", flag, v);
        exit(2);
    }
    return d;
}

int main(int argc, char **argv)
{
    char *server_list = NULL;
    const char *id = NULL, *secret_hex = NULL, *state_dir = NULL;
    static sprout_client client;
    static sprout_posix posix;
    sprout_options opts;
    sprout_plant_model plant;
    sprout_options_defaults(&opts);
    sprout_plant_defaults(&plant);
    double run_for_ms = 0;
    int log_level = SPROUT_LOG_INFO;
    bool use_tls = false;
    const char *firmware_default = FIRMWARE_VERSION, *ota_key_file = NULL, *product = NULL, *fail_version = NULL;
    sprout_posix_ota_options ota_opts;
    memset(&ota_opts, 0, sizeof ota_opts);
    sprout_tls_options tls_opts;
    memset(&tls_opts, 0, sizeof tls_opts);
    sprout_posix_conditions conditions = {.supply_mv = 5000, .rssi_dbm = -55, .free_heap = 120000};
    const char *conditions_file = NULL;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                    \
    do {                                                                \
        if (v == NULL) {                                                \
            fprintf(stderr, "vdev: %s needs a value\n", a);             \
            return 2;                                                   \
        }                                                               \
        i++;                                                            \
    } while (0)
        if (strcmp(a, "--server") == 0) {
            NEED_VALUE();
            server_list = strdup(argv[i]); /* parsed in place: argv stays intact for a re-exec */
            if (server_list == NULL) {
                return 1;
            }
        } else if (strcmp(a, "--id") == 0) {
            NEED_VALUE();
            id = v;
        } else if (strcmp(a, "--secret") == 0) {
            NEED_VALUE();
            secret_hex = v;
        } else if (strcmp(a, "--state-dir") == 0) {
            NEED_VALUE();
            state_dir = v;
        } else if (strcmp(a, "--report-interval-ms") == 0) {
            NEED_VALUE();
            opts.report_interval_ms = (uint32_t)number(a, v);
        } else if (strcmp(a, "--start-dry") == 0) {
            plant.moisture_pct = 10;
        } else if (strcmp(a, "--moisture") == 0) {
            NEED_VALUE();
            plant.moisture_pct = number(a, v);
        } else if (strcmp(a, "--tank") == 0) {
            NEED_VALUE();
            plant.tank_pct = number(a, v);
        } else if (strcmp(a, "--dry-rate") == 0) {
            NEED_VALUE();
            plant.dry_pct_per_min = number(a, v);
        } else if (strcmp(a, "--temperature") == 0) {
            NEED_VALUE();
            plant.temperature_c = number(a, v);
        } else if (strcmp(a, "--silent") == 0) {
            opts.ignore_commands = true;
        } else if (strcmp(a, "--backoff-max-ms") == 0) {
            NEED_VALUE();
            opts.backoff_max_ms = (uint32_t)number(a, v);
        } else if (strcmp(a, "--run-for-ms") == 0) {
            NEED_VALUE();
            run_for_ms = number(a, v);
        } else if (strcmp(a, "--tls") == 0) {
            use_tls = true;
        } else if (strcmp(a, "--ca") == 0) {
            NEED_VALUE();
            tls_opts.ca_file = v;
            use_tls = true;
        } else if (strcmp(a, "--server-name") == 0) {
            NEED_VALUE();
            tls_opts.server_name = v;
        } else if (strcmp(a, "--tls-handshake-timeout-ms") == 0) {
            NEED_VALUE();
            tls_opts.handshake_timeout_ms = (uint32_t)number(a, v);
        } else if (strcmp(a, "--firmware-version") == 0) {
            NEED_VALUE();
            firmware_default = v;
        } else if (strcmp(a, "--ota-pubkey") == 0) {
            NEED_VALUE();
            ota_key_file = v;
        } else if (strcmp(a, "--product") == 0) {
            NEED_VALUE();
            product = v;
        } else if (strcmp(a, "--ota-slot-bytes") == 0) {
            NEED_VALUE();
            ota_opts.slot_bytes = (uint32_t)number(a, v);
        } else if (strcmp(a, "--ota-fail-version") == 0) {
            NEED_VALUE();
            fail_version = v;
        } else if (strcmp(a, "--ota-retry-ms") == 0) {
            NEED_VALUE();
            opts.ota_retry_min_ms = (uint32_t)number(a, v);
        } else if (strcmp(a, "--ota-retry-max-ms") == 0) {
            NEED_VALUE();
            opts.ota_retry_max_ms = (uint32_t)number(a, v);
        } else if (strcmp(a, "--ota-save-every-bytes") == 0) {
            NEED_VALUE();
            opts.ota_save_every_bytes = (uint32_t)number(a, v);
        } else if (strcmp(a, "--supply-mv") == 0) {
            NEED_VALUE();
            conditions.supply_mv = (uint32_t)number(a, v);
        } else if (strcmp(a, "--wifi-rssi-dbm") == 0) {
            NEED_VALUE();
            conditions.rssi_dbm = (int32_t)number(a, v);
        } else if (strcmp(a, "--free-heap") == 0) {
            NEED_VALUE();
            conditions.free_heap = (uint32_t)number(a, v);
        } else if (strcmp(a, "--conditions-file") == 0) {
            NEED_VALUE();
            conditions_file = v;
        } else if (strcmp(a, "--verbose") == 0) {
            log_level = SPROUT_LOG_DEBUG;
        } else if (strcmp(a, "--quiet") == 0) {
            log_level = SPROUT_LOG_WARN;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "vdev: unknown flag %s\n", a);
            usage(stderr);
            return 2;
        }
#undef NEED_VALUE
    }
    if (server_list == NULL || id == NULL || secret_hex == NULL) {
        usage(stderr);
        return 2;
    }

    sprout_server servers[MAX_SERVERS];
    size_t server_count = 0;
    if (parse_servers(server_list, servers, &server_count) != 0) {
        fprintf(stderr, "vdev: --server: want host:port[,host:port...] (at most %d)\n", MAX_SERVERS);
        return 2;
    }
    uint8_t secret[128];
    size_t secret_len = 0;
    if (parse_hex(secret_hex, secret, sizeof secret, &secret_len) != 0) {
        fprintf(stderr, "vdev: --secret: want an even number of hex digits (at most 256)\n");
        return 2;
    }
    char default_dir[256];
    if (state_dir == NULL) {
        snprintf(default_dir, sizeof default_dir, "vdev-state-%s", id);
        state_dir = default_dir;
    }
    char prefix[80];
    snprintf(prefix, sizeof prefix, "vdev[%s] ", id);
    if (sprout_posix_init(&posix, state_dir, prefix) != 0) {
        fprintf(stderr, "vdev: cannot use state dir %s: %s\n", state_dir, strerror(errno));
        return 1;
    }
    posix.log_level = log_level;
    posix.conditions = conditions;
    if (conditions_file != NULL &&
        snprintf(posix.conditions_file, sizeof posix.conditions_file, "%s", conditions_file) >=
            (int)sizeof posix.conditions_file) {
        fprintf(stderr, "vdev: --conditions-file: path too long\n");
        return 2;
    }
    if (!use_tls && (tls_opts.server_name != NULL || tls_opts.handshake_timeout_ms != 0)) {
        fprintf(stderr, "vdev: --server-name and --tls-handshake-timeout-ms need --tls or --ca\n");
        return 2;
    }
    if (use_tls) {
        char err[400];
        if (sprout_tls_new(&posix.tls, &tls_opts, err, sizeof err) != 0) {
            fprintf(stderr, "vdev: TLS: %s\n", err);
            return 2;
        }
    }
    plant.pump_ml_per_s = opts.pump_ml_per_s;
    posix.plant = plant;

    /* The "bootloader": pick the slot, roll back an image that never confirmed itself. */
    char firmware_version[33];
    bool on_trial = false, rolled_back = false;
    if (sprout_posix_ota_boot(state_dir, firmware_default, firmware_version, sizeof firmware_version, &on_trial,
                              &rolled_back) != 0) {
        fprintf(stderr, "vdev: cannot read or write the boot state in %s: %s\n", state_dir, strerror(errno));
        return 1;
    }
    if (rolled_back) {
        fprintf(stderr, "%sboot: the new image never confirmed itself: rolled back to %s\n", prefix, firmware_version);
    }
    fprintf(stderr, "%sboot: running %s%s\n", prefix, firmware_version, on_trial ? " (on trial)" : "");
    if (fail_version != NULL && on_trial && strcmp(fail_version, firmware_version) == 0) {
        /* A broken image: it crashes before it ever connects, and the watchdog resets the pot. */
        fprintf(stderr, "%sboot: image %s crashes (--ota-fail-version): resetting\n", prefix, firmware_version);
        execv("/proc/self/exe", argv);
        fprintf(stderr, "vdev: re-exec failed: %s\n", strerror(errno));
        return 1;
    }

    sprout_port port;
    sprout_posix_port(&posix, &port);
#ifdef VDEV_OTA_PUBKEY
    if (ota_key_file == NULL) {
        const char *hex = VDEV_OTA_PUBKEY;
        size_t kl = 0;
        if (parse_hex(hex, ota_opts.pubkey, sizeof ota_opts.pubkey, &kl) != 0 || kl != 32) {
            fprintf(stderr, "vdev: VDEV_OTA_PUBKEY: want 64 hex digits\n");
            return 2;
        }
        if (sprout_posix_ota_install(&ota_opts, &port) != 0) {
            fprintf(stderr, "vdev: cannot initialise libsodium\n");
            return 1;
        }
    }
#endif
    if (ota_key_file != NULL) {
        if (sprout_posix_ota_parse_key(ota_key_file, ota_opts.pubkey) != 0) {
            fprintf(stderr, "vdev: --ota-pubkey %s: want a file with 64 hex digits\n", ota_key_file);
            return 2;
        }
        if (sprout_posix_ota_install(&ota_opts, &port) != 0) {
            fprintf(stderr, "vdev: cannot initialise libsodium\n");
            return 1;
        }
    }
    sprout_client_config cfg = {
        .device_id = id,
        .secret = secret,
        .secret_len = secret_len,
        .firmware_version = firmware_version,
        .product = product,
        .servers = servers,
        .server_count = server_count,
        .options = opts,
    };
    if (sprout_client_init(&client, &port, &cfg) != 0) {
        fprintf(stderr, "vdev: --id must be 1..64 bytes\n");
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int64_t start = port.monotonic_ms(port.ctx);
    while (!stop) {
        if (run_for_ms > 0 && port.monotonic_ms(port.ctx) - start >= (int64_t)run_for_ms) {
            break;
        }
        sprout_client_step(&client);
        if (sprout_posix_ota_restart_wanted()) {
            /* The client switched slots and "rebooted": boot for real into the new image. */
            sprout_client_shutdown(&client);
            sprout_tls_free(posix.tls);
            fprintf(stderr, "%srestarting into the new slot\n", prefix);
            execv("/proc/self/exe", argv);
            fprintf(stderr, "vdev: re-exec failed: %s\n", strerror(errno));
            return 1;
        }
    }
    sprout_client_shutdown(&client);
    const sprout_stats *s = &client.stats;
    fprintf(stderr,
            "%sstats: connects %u (failed %u) handshakes %u frames in %u out %u resent %u acks %u "
            "commands %u results_resent %u dropped %u ota_record_writes %u ota_deferrals %u\n",
            prefix, s->connect_attempts, s->connect_failures, s->handshakes, s->frames_in, s->frames_out,
            s->records_resent, s->acks, s->commands_executed, s->results_resent, client.ring.dropped,
            s->ota_record_writes, s->ota_deferrals);
    sprout_tls_free(posix.tls);
    return 0;
}
