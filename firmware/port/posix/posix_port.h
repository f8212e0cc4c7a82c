/* The POSIX port: sprout_port over BSD sockets, files and a simulated plant pot, for the
 * virtual device (vdev) and host tests. Not thread-safe; one client per sprout_posix. */
#ifndef SPROUT_POSIX_PORT_H
#define SPROUT_POSIX_PORT_H

#include <stdbool.h>
#include <stdint.h>

#include "posix_tls.h"
#include "sprout_port.h"

/* sprout_plant_model is the simulated pot: soil that dries (faster when warm), a tank, a pump. */
typedef struct {
    double moisture_pct;          /* true soil moisture */
    double temperature_c;         /* mean temperature; readings add noise */
    double tank_pct;              /* water left in the tank */
    double dry_pct_per_min;       /* drying rate at 20 degC */
    double tank_ml;               /* tank capacity: 100 % */
    double soil_pct_per_ml;       /* how much one ml raises the moisture */
    double pump_ml_per_s;         /* must match sprout_options.pump_ml_per_s */
    double noise_pct;             /* +- measurement noise on moisture */
    bool sensor_fault;            /* read_sensors fails */
    bool pump_fault;              /* pump_start fails */
} sprout_plant_model;

void sprout_plant_defaults(sprout_plant_model *m);

/* sprout_posix_conditions is the simulated pot's power and radio, what ota_margins measures
 * (and read_sensors reports as supply_mv). */
typedef struct {
    uint32_t supply_mv;           /* default 5000 (USB) */
    int32_t rssi_dbm;             /* default -55 */
    uint32_t free_heap;           /* default 120000 */
} sprout_posix_conditions;

typedef struct {
    int fd;                       /* the TCP connection, -1 if none */
    sprout_tls *tls;              /* NULL: plaintext; else tcp_* run over TLS (posix_tls.h) */
    char state_dir[400];          /* key-value storage: one file per key */
    char log_prefix[80];
    int log_level;                /* messages at or below this level are printed */
    sprout_plant_model plant;
    int64_t plant_updated_ms;
    bool pump_on;
    int64_t pump_off_ms;          /* the port's own stop time (the failsafe) */
    uint64_t noise_state;
    unsigned reboots;
    sprout_posix_conditions conditions;
    /* conditions_file, if set, is read at every measurement: lines "supply_mv N", "rssi_dbm N",
     * "free_heap N" override conditions (a test changes the pot's power while it runs). */
    char conditions_file[400];
} sprout_posix;

/* sprout_posix_measure returns the conditions now (conditions, overridden by conditions_file). */
sprout_posix_conditions sprout_posix_measure(sprout_posix *p);

/* sprout_posix_init prepares a port storing its keys under state_dir (created if missing). */
int sprout_posix_init(sprout_posix *p, const char *state_dir, const char *log_prefix);
void sprout_posix_port(sprout_posix *p, sprout_port *out);

#endif
