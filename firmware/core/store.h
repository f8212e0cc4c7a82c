/* What the device keeps in key-value storage across reboots: the next sequence number, the
 * config, the recent command results (so a command id runs at most once) and when the pump last
 * ran. Values are nanopb messages or little-endian integers, so a port only stores bytes. */
#ifndef SPROUT_STORE_H
#define SPROUT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devicepb/device.pb.h"
#include "sprout_port.h"

#define SPROUT_KEY_SEQ "seq"
#define SPROUT_KEY_CONFIG "config"
#define SPROUT_KEY_COMMANDS "commands"
#define SPROUT_KEY_LAST_WATER "last_water"

/* SPROUT_CMD_HISTORY is how many command results the device remembers. The server retries a
 * command only while it waits for its result, so a handful is plenty. */
#ifndef SPROUT_CMD_HISTORY
#define SPROUT_CMD_HISTORY 8
#endif

/* Config defaults (device.proto). A zero field in a received config means "default". */
#define SPROUT_DEFAULT_REPORT_INTERVAL_S 60
#define SPROUT_DEFAULT_HEARTBEAT_INTERVAL_S 30
#define SPROUT_DEFAULT_MAX_WATER_MS 30000
#define SPROUT_DEFAULT_MIN_WATER_INTERVAL_S 60
#define SPROUT_DEFAULT_SOIL_MOISTURE_MIN_PCT 20.0f
#define SPROUT_DEFAULT_TEMPERATURE_MAX_C 35.0f
#define SPROUT_DEFAULT_TANK_EMPTY_PCT 5.0f
#define SPROUT_DEFAULT_HYSTERESIS_PCT 5.0f
#define SPROUT_DEFAULT_HYSTERESIS_C 2.0f

typedef sprout_device_v1_Config sprout_config;
typedef sprout_device_v1_CommandResult sprout_command_result;

void sprout_config_defaults(sprout_config *c);
/* sprout_config_normalize replaces unset (zero) fields by their defaults and clamps every field
 * to the build-time hard limits of sprout_limits.h. */
void sprout_config_normalize(sprout_config *c);
/* sprout_config_equal compares field by field (never the padding between them). */
bool sprout_config_equal(const sprout_config *a, const sprout_config *b);

/* sprout_history is the list of remembered command results, newest last. undelivered marks a
 * result not yet handed to a connection (RAM only: after a reboot the server's retry of the
 * command fetches it). */
typedef struct {
    sprout_command_result result;
    bool undelivered;
} sprout_history_entry;

typedef struct {
    sprout_history_entry items[SPROUT_CMD_HISTORY];
    size_t count;
} sprout_history;

sprout_history_entry *sprout_history_find(sprout_history *h, const char *command_id);
/* sprout_history_put stores r, replacing the entry with the same id or evicting the oldest. */
sprout_history_entry *sprout_history_put(sprout_history *h, const sprout_command_result *r);

/* Loaders return 0, SPROUT_KV_NOT_FOUND (the out value is then the default), or <0 on a
 * storage error or corrupt value (also leaving the default). Savers return 0 or <0. */
int sprout_store_load_seq(const sprout_port *p, uint64_t *next_seq);
int sprout_store_save_seq(const sprout_port *p, uint64_t next_seq);
int sprout_store_load_config(const sprout_port *p, sprout_config *c);
int sprout_store_save_config(const sprout_port *p, const sprout_config *c);
int sprout_store_load_history(const sprout_port *p, sprout_history *h);
int sprout_store_save_history(const sprout_port *p, const sprout_history *h);
int sprout_store_load_i64(const sprout_port *p, const char *key, int64_t *v);
int sprout_store_save_i64(const sprout_port *p, const char *key, int64_t v);

#endif
