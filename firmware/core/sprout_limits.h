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

/* How long a session must stay up before the reconnect backoff forgets earlier failures, in
 * ms. A server that welcomes and drops at once must not make the pot reconnect every second. */
#ifndef SPROUT_BACKOFF_STABLE_MS
#define SPROUT_BACKOFF_STABLE_MS 60000
#endif

#endif
