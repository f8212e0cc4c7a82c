#include "airkiss.h"

#include <string.h>

uint8_t sprout_airkiss_crc8(const uint8_t *data, size_t len)
{
    uint8_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        for (int b = 0; b < 8; b++) {
            crc = (crc & 1) ? (uint8_t)((crc >> 1) ^ 0x8C) : (uint8_t)(crc >> 1);
        }
    }
    return crc;
}

void sprout_airkiss_reset(sprout_airkiss *ak)
{
    memset(ak, 0, sizeof *ak);
}

static void push4(uint16_t w[4], uint8_t *n, uint16_t v)
{
    if (*n == 4) {
        memmove(w, w + 1, 3 * sizeof w[0]);
        *n = 3;
    }
    w[(*n)++] = v;
}

static void push_window(sprout_airkiss *ak, uint16_t v)
{
    push4(ak->window, &ak->window_len, v);
}

/* window_tagged reports whether the window holds four words tagged first, first+0x10, ... in the
 * high bits given by mask. */
static bool window_tagged(const sprout_airkiss *ak, uint16_t mask, uint16_t first)
{
    if (ak->window_len < 4) {
        return false;
    }
    for (int i = 0; i < 4; i++) {
        if ((ak->window[i] & mask) != first + 0x10 * i) {
            return false;
        }
    }
    return true;
}

static void start_magic(sprout_airkiss *ak, uint16_t base)
{
    uint16_t cand = ak->guide_candidate;
    uint8_t seen = ak->guide_seen;
    sprout_airkiss_reset(ak);
    ak->guide_candidate = cand;
    ak->guide_seen = seen;
    ak->base_len = base;
    ak->state = SPROUT_AIRKISS_MAGIC;
}

/* guide looks for four raw lengths rising by one. A base must be seen twice before it locks,
 * so one chance run in other traffic does not derail the decoder. */
static bool guide(sprout_airkiss *ak)
{
    const uint16_t *raw = ak->raw;
    if (ak->raw_len < 4 || raw[0] == 0) {
        return false;
    }
    for (int i = 1; i < 4; i++) {
        if (raw[i] != raw[i - 1] + 1) {
            return false;
        }
    }
    uint16_t base = (uint16_t)(raw[0] - 1);
    if (ak->state == SPROUT_AIRKISS_MAGIC && base == ak->base_len) {
        return false;
    }
    if (ak->guide_seen > 0 && ak->guide_candidate == base) {
        ak->guide_seen++;
    } else {
        ak->guide_candidate = base;
        ak->guide_seen = 1;
    }
    if (ak->guide_seen >= 2) {
        start_magic(ak, base);
        return true;
    }
    return false;
}

static uint8_t group_size(const sprout_airkiss *ak, uint8_t index)
{
    unsigned rest = ak->total_len - 4u * index;
    return (uint8_t)(rest < 4 ? rest : 4);
}

static uint8_t group_count(const sprout_airkiss *ak)
{
    return (uint8_t)((ak->total_len + 3) / 4);
}

/* leader returns the candidate of a group with the strictly highest count, or NULL. */
static const sprout_airkiss_candidate *leader(const sprout_airkiss *ak, uint8_t index, bool *contested)
{
    const sprout_airkiss_candidate *best = NULL;
    bool tie = false;
    *contested = false;
    for (int i = 0; i < SPROUT_AIRKISS_CANDIDATES; i++) {
        const sprout_airkiss_candidate *c = &ak->groups[index][i];
        if (c->count == 0) {
            continue;
        }
        if (best != NULL) {
            *contested = true;
        }
        if (best == NULL || c->count > best->count) {
            best = c;
            tie = false;
        } else if (c->count == best->count) {
            tie = true;
        }
    }
    return tie ? NULL : best;
}

static bool try_complete(sprout_airkiss *ak)
{
    if (!ak->have_prefix) {
        return false;
    }
    uint8_t data[SPROUT_AIRKISS_MAX_DATA];
    bool all_confirmed = true, any_contested = false;
    for (uint8_t g = 0; g < group_count(ak); g++) {
        bool contested = false;
        const sprout_airkiss_candidate *c = leader(ak, g, &contested);
        if (c == NULL) {
            return false;
        }
        all_confirmed = all_confirmed && c->count >= 2;

        any_contested = any_contested || contested;
        memcpy(data + 4 * g, c->bytes, group_size(ak, g));
    }
    if (!all_confirmed && any_contested) {
        return false;
    }
    uint8_t pl = ak->pwd_len;
    uint8_t sl = (uint8_t)(ak->total_len - pl - 1);
    if (sl == 0) {
        return false; /* an empty SSID names no network */
    }
    if (sprout_airkiss_crc8(data + pl + 1, sl) != ak->ssid_crc) {
        return false;
    }
    memcpy(ak->password, data, pl);
    ak->password[pl] = '\0';
    ak->password_len = pl;
    ak->random = data[pl];
    memcpy(ak->ssid, data + pl + 1, sl);
    ak->ssid[sl] = '\0';
    ak->ssid_len = sl;
    ak->state = SPROUT_AIRKISS_DONE;
    return true;
}

static void vote(sprout_airkiss *ak, uint8_t index, const uint8_t *bytes, uint8_t n)
{
    sprout_airkiss_candidate *slot = NULL;
    for (int i = 0; i < SPROUT_AIRKISS_CANDIDATES; i++) {
        sprout_airkiss_candidate *c = &ak->groups[index][i];
        if (c->count > 0 && memcmp(c->bytes, bytes, n) == 0) {
            if (c->count < UINT8_MAX) {
                c->count++;
            }
            return;
        }
        if (c->count == 0 && slot == NULL) {
            slot = c;
        }
    }
    if (slot != NULL) {
        memcpy(slot->bytes, bytes, n);
        slot->count = 1;
    }
}

static bool data_word(sprout_airkiss *ak, uint16_t v)
{
    push_window(ak, v);
    if (!ak->have_prefix && window_tagged(ak, 0x1F0, 0x40)) {
        uint8_t pl = (uint8_t)((ak->window[0] & 0xF) << 4 | (ak->window[1] & 0xF));
        uint8_t crc = (uint8_t)((ak->window[2] & 0xF) << 4 | (ak->window[3] & 0xF));
        /* total = password + the random byte + the SSID, which has at least one byte */
        if (sprout_airkiss_crc8(&pl, 1) == crc && pl + 2u <= ak->total_len && pl <= SPROUT_AIRKISS_MAX_PASSWORD &&
            ak->total_len - pl - 1 <= SPROUT_AIRKISS_MAX_SSID) {
            ak->pwd_len = pl;
            ak->have_prefix = true;
            return try_complete(ak);
        }
        return false;
    }
    if ((v & 0x180) == 0x80) { /* a sequence header: crc or index, told apart when data follows */
        if (ak->pending.collecting) {
            /* The group being collected was cut short (its last bytes were lost). Its headers
             * must not outlive it: with the next group's crc header lost too, its index would
             * be read as that group's crc, which one time in 128 matches. */
            ak->pending.header_count = 0;
        }
        ak->pending.headers[0] = ak->pending.headers[1];
        ak->pending.headers[1] = (uint8_t)(v & 0x7F);
        if (ak->pending.header_count < 2) {
            ak->pending.header_count++;
        }
        ak->pending.collecting = false;
        ak->pending.n = 0;
        return false;
    }
    if ((v & 0x100) == 0x100 && v <= 0x1FF) { /* a data byte */
        if (!ak->pending.collecting) {
            /* The two headers just before the first byte are the group's crc and index; an
             * earlier stray header (noise) has been shifted out. */
            if (ak->pending.header_count < 2 || ak->pending.headers[1] >= group_count(ak)) {
                memset(&ak->pending, 0, sizeof ak->pending);
                return false;
            }
            ak->pending.crc = ak->pending.headers[0];
            ak->pending.index = ak->pending.headers[1];
            ak->pending.collecting = true;
            ak->pending.n = 0;
        }
        ak->pending.bytes[ak->pending.n++] = (uint8_t)v;
        uint8_t size = group_size(ak, ak->pending.index);
        if (ak->pending.n < size) {
            return false;
        }
        uint8_t buf[5];
        buf[0] = ak->pending.index;
        memcpy(buf + 1, ak->pending.bytes, size);
        bool ok = (sprout_airkiss_crc8(buf, (size_t)size + 1) & 0x7F) == ak->pending.crc;
        uint8_t index = ak->pending.index;
        memset(&ak->pending, 0, sizeof ak->pending);
        if (ok) {
            vote(ak, index, buf + 1, size);
            return try_complete(ak);
        }
        if (ak->bad_groups < UINT16_MAX) {
            ak->bad_groups++;
        }
    }
    /* Anything else (guide and magic repeats, other traffic) is not part of a group. */
    return false;
}

sprout_airkiss_status sprout_airkiss_feed(sprout_airkiss *ak, uint16_t len)
{
    switch (ak->state) {
    case SPROUT_AIRKISS_GUIDE:
        push4(ak->raw, &ak->raw_len, len);
        if (guide(ak)) {
            return SPROUT_AIRKISS_LOCKED;
        }
        return SPROUT_AIRKISS_CONTINUE;
    case SPROUT_AIRKISS_MAGIC: {
        /* Keep watching for a guide with another base: the first lock may have been on noise. */
        push4(ak->raw, &ak->raw_len, len);
        if (guide(ak)) {
            return SPROUT_AIRKISS_LOCKED;
        }
        push_window(ak, len > ak->base_len ? (uint16_t)(len - ak->base_len) : 0xFFFF);
        if (window_tagged(ak, 0x1F0, 0x00)) {
            uint8_t hi = (uint8_t)(ak->window[0] & 0xF);
            if (ak->window[0] == 0x08) {
                hi = 0; /* the sender avoids a zero-length word */
            }
            uint8_t L = (uint8_t)(hi << 4 | (ak->window[1] & 0xF));
            uint8_t crc = (uint8_t)((ak->window[2] & 0xF) << 4 | (ak->window[3] & 0xF));
            uint16_t cand = (uint16_t)(L << 8 | crc);
            if (L < 2 || L > SPROUT_AIRKISS_MAX_DATA) {
                return SPROUT_AIRKISS_CONTINUE;
            }
            if (ak->magic_seen && ak->magic_candidate == cand) {
                ak->total_len = L;
                ak->ssid_crc = crc;
                ak->state = SPROUT_AIRKISS_DATA;
                ak->window_len = 0;
            } else {
                ak->magic_candidate = cand;
                ak->magic_seen = true;
            }
        }
        return SPROUT_AIRKISS_CONTINUE;
    }
    case SPROUT_AIRKISS_DATA:
        if (len <= ak->base_len) {
            return SPROUT_AIRKISS_CONTINUE;
        }
        return data_word(ak, (uint16_t)(len - ak->base_len)) ? SPROUT_AIRKISS_COMPLETE : SPROUT_AIRKISS_CONTINUE;
    case SPROUT_AIRKISS_DONE:
        return SPROUT_AIRKISS_COMPLETE;
    }
    return SPROUT_AIRKISS_CONTINUE;
}
