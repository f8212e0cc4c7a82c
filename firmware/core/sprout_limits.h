/* Hard limits compiled into the firmware. No configuration (Welcome, SET_CONFIG, storage) and no
 * command can go past them: the core clamps every config to them and refuses commands beyond
 * them, and a port's pump_start refuses (and its failsafe timer caps) a run longer than
 * SPROUT_HARD_MAX_WATER_MS. A manufacturer sets them for the pot's pump and tank at build time,
 * e.g. -DSPROUT_HARD_MAX_WATER_MS=20000 (ESP-IDF: Kconfig "Sprout pot" > "Hard limits"). */
#ifndef SPROUT_LIMITS_H
#define SPROUT_LIMITS_H

/* ESP-IDF: port/esp-idf/components/sprout_core passes the Kconfig values as -D flags to the core
 * and to the port; where sdkconfig.h is included first, its values are taken. */
#if defined(CONFIG_SPROUT_HARD_MAX_WATER_MS) && !defined(SPROUT_HARD_MAX_WATER_MS)
#define SPROUT_HARD_MAX_WATER_MS CONFIG_SPROUT_HARD_MAX_WATER_MS
#define SPROUT_HARD_MIN_REPORT_INTERVAL_S CONFIG_SPROUT_HARD_MIN_REPORT_INTERVAL_S
#define SPROUT_HARD_MIN_TANK_EMPTY_PCT ((float)CONFIG_SPROUT_HARD_MIN_TANK_EMPTY_PCT)
#endif

/* The longest the pump may ever run for one command, in ms (one minute). */
#ifndef SPROUT_HARD_MAX_WATER_MS
#define SPROUT_HARD_MAX_WATER_MS 60000u
#endif

/* The shortest report interval, in seconds: a pot never sends readings faster than this. */
#ifndef SPROUT_HARD_MIN_REPORT_INTERVAL_S
#define SPROUT_HARD_MIN_REPORT_INTERVAL_S 10u
#endif

/* The shortest heartbeat interval, in seconds. */
#ifndef SPROUT_HARD_MIN_HEARTBEAT_INTERVAL_S
#define SPROUT_HARD_MIN_HEARTBEAT_INTERVAL_S 5u
#endif

/* The shortest pause between two pump runs, in seconds. */
#ifndef SPROUT_HARD_MIN_WATER_INTERVAL_S
#define SPROUT_HARD_MIN_WATER_INTERVAL_S 10u
#endif

/* The lowest tank level the pump may draw from, in percent: at or below it the tank counts as
 * empty whatever the config says (a dry-running pump burns out). */
#ifndef SPROUT_HARD_MIN_TANK_EMPTY_PCT
#define SPROUT_HARD_MIN_TANK_EMPTY_PCT 3.0f
#endif

/* ---- Firmware updates (core/ota.h, docs/ota.md) ----
 * When the pot may download an offered image, and how often it persists the download. They are
 * the defaults of the ota_* fields of sprout_options (core/client.h). ESP-IDF: Kconfig "Sprout
 * pot" > "Firmware updates". */
#if defined(CONFIG_SPROUT_OTA_MIN_SUPPLY_MV) && !defined(SPROUT_OTA_MIN_SUPPLY_MV)
#define SPROUT_OTA_MIN_SUPPLY_MV CONFIG_SPROUT_OTA_MIN_SUPPLY_MV
#define SPROUT_OTA_MIN_RSSI_DBM CONFIG_SPROUT_OTA_MIN_RSSI_DBM
#define SPROUT_OTA_MIN_FREE_HEAP CONFIG_SPROUT_OTA_MIN_FREE_HEAP
#define SPROUT_OTA_SAVE_EVERY_BYTES CONFIG_SPROUT_OTA_SAVE_EVERY_BYTES
#define SPROUT_OTA_SAVE_EVERY_MS (CONFIG_SPROUT_OTA_SAVE_EVERY_S * 1000u)
#define SPROUT_OTA_RETRY_MIN_MS (CONFIG_SPROUT_OTA_RETRY_MIN_S * 1000u)
#define SPROUT_OTA_RETRY_MAX_MS (CONFIG_SPROUT_OTA_RETRY_MAX_S * 1000u)
#endif

/* The lowest supply, in mV, a download starts or goes on at: a flash write and the radio draw
 * current peaks that a weak battery answers with a brown-out. 3600 mV is a single Li-ion cell
 * with roughly a fifth of its charge left, and above the dropout of the 3.3 V regulator; USB
 * (5 V) passes. */
#ifndef SPROUT_OTA_MIN_SUPPLY_MV
#define SPROUT_OTA_MIN_SUPPLY_MV 3600u
#endif

/* The weakest WiFi signal, in dBm, a download starts or goes on at: below it retransmissions
 * stall the download and crowd out the pot's telemetry. */
#ifndef SPROUT_OTA_MIN_RSSI_DBM
#define SPROUT_OTA_MIN_RSSI_DBM (-80)
#endif

/* The least free heap, in bytes, a download starts or goes on at. */
#ifndef SPROUT_OTA_MIN_FREE_HEAP
#define SPROUT_OTA_MIN_FREE_HEAP 16384u
#endif

/* The download's offset is persisted (NVS, a file) once this many bytes more are written, or
 * SPROUT_OTA_SAVE_EVERY_MS after the last save, whichever comes first, and when a connection
 * ends or the download pauses: a power cut re-downloads at most this much. 16 KiB: 64 writes
 * of a 74-byte record per MiB instead of one per chunk (2,341 per MiB). */
#ifndef SPROUT_OTA_SAVE_EVERY_BYTES
#define SPROUT_OTA_SAVE_EVERY_BYTES 16384u
#endif
#ifndef SPROUT_OTA_SAVE_EVERY_MS
#define SPROUT_OTA_SAVE_EVERY_MS 60000u
#endif

/* A deferred download checks its margins again after this delay, doubling (with jitter) up to
 * the maximum while they stay short. */
#ifndef SPROUT_OTA_RETRY_MIN_MS
#define SPROUT_OTA_RETRY_MIN_MS 30000u
#endif
#ifndef SPROUT_OTA_RETRY_MAX_MS
#define SPROUT_OTA_RETRY_MAX_MS 900000u
#endif

/* How long a session must stay up before the reconnect backoff forgets earlier failures, in
 * ms. A server that welcomes and drops at once must not make the pot reconnect every second. */
#ifndef SPROUT_BACKOFF_STABLE_MS
#define SPROUT_BACKOFF_STABLE_MS 60000
#endif

#endif
