/*
 * The hub's store on SQLite in WAL mode. The workers share one
 * connection and its prepared statements under one process-wide lock, so
 * transactions never wait in SQLite's sleep-and-retry busy handler and
 * the page cache stays warm; the checkpoint thread has its own.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "store.h"

#define BUSY_TIMEOUT_MS 10000

/*
 * The workers share one connection: with a connection each, every commit
 * by one worker made SQLite drop the other's whole page cache and read it
 * back on its next transaction. This lock serialises every use of the
 * shared connection; it is recursive because reads also run inside a
 * write transaction that holds it.
 */
static pthread_mutex_t write_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct store *shared_store;

/* The audit chain's last hash, kept in memory under write_lock so an
 * append does not read it back from the table each time. Set only after
 * a commit; a failed or rolled-back transaction leaves it as it was, and
 * a failed commit forgets it (the next append reads the table again). */
static uint8_t audit_tip[IOMT_SHA256_LEN];
static int audit_tip_known;

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS devices ("
    " device_id TEXT PRIMARY KEY, model TEXT NOT NULL,"
    " criticality TEXT NOT NULL, token_hash TEXT, token_expires INTEGER,"
    " enrolled INTEGER NOT NULL DEFAULT 0,"
    " revoked INTEGER NOT NULL DEFAULT 0, version TEXT, seq INTEGER,"
    " slot TEXT, state TEXT, last_seen INTEGER, last_result TEXT,"
    " created INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS devices_model ON devices(model);"
    "CREATE TABLE IF NOT EXISTS certs ("
    " serial TEXT PRIMARY KEY, device_id TEXT NOT NULL,"
    " issued INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS releases ("
    " release_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, version TEXT,"
    " vendor_id TEXT, class_id TEXT, image_size INTEGER NOT NULL,"
    " image_digest TEXT NOT NULL, envelope BLOB NOT NULL,"
    " image_ready INTEGER NOT NULL DEFAULT 0, uploaded_by TEXT,"
    " created INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS assignments ("
    " id INTEGER PRIMARY KEY, release_id TEXT NOT NULL, device_id TEXT,"
    " model TEXT, created INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS assignments_device ON assignments(device_id);"
    "CREATE INDEX IF NOT EXISTS assignments_model ON assignments(model);"
    "CREATE TABLE IF NOT EXISTS reports ("
    " id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, release_id TEXT,"
    " result TEXT NOT NULL, reason TEXT, version TEXT, seq INTEGER,"
    " ts INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit ("
    " id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, actor TEXT NOT NULL,"
    " role TEXT NOT NULL, action TEXT NOT NULL, object TEXT NOT NULL,"
    " detail TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);";

enum stmt_id {
    ST_SYNC_FULL,
    ST_SYNC_NORMAL,
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_AUDIT_LAST,
    ST_AUDIT_ADD,
    ST_AUDIT_ALL,
    ST_DEV_ADD,
    ST_DEV_GET,
    ST_DEV_CONSUME,
    ST_CERT_ADD,
    ST_CERT_OK,
    ST_DEV_REVOKE,
    ST_CERT_REVOKE,
    ST_DEV_LIST,
    ST_DEV_CHECKIN,
    ST_OFFER,
    ST_REPORT_ADD,
    ST_DEV_RESULT,
    ST_DEV_INSTALLED,
    ST_REL_ADD,
    ST_REL_GET,
    ST_REL_ENV,
    ST_REL_READY,
    ST_REL_ASSIGNED,
    ST_ASSIGN_DEV,
    ST_ASSIGN_MODEL,
    ST_MODEL_COUNT,
    ST_COUNT
};

/* The release a device should run: its own assignment wins over its
 * model's, and the newest assignment wins within each. Two lookups that
 * each read one index entry, newest first, where one query with OR would
 * collect every matching assignment and sort them on each check-in. */
#define EFFECTIVE_RELEASE                                                      \
    "COALESCE((SELECT a.release_id FROM assignments a"                         \
    " WHERE a.device_id = d.device_id ORDER BY a.id DESC LIMIT 1),"            \
    " (SELECT a.release_id FROM assignments a WHERE a.device_id IS NULL"       \
    " AND a.model = d.model ORDER BY a.id DESC LIMIT 1))"

static const char *const stmt_sql[ST_COUNT] = {
    [ST_SYNC_FULL] = "PRAGMA synchronous=FULL",
    [ST_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_AUDIT_LAST] = "SELECT hash FROM audit ORDER BY id DESC LIMIT 1",
    [ST_AUDIT_ADD] = "INSERT INTO audit(ts, actor, role, action, object,"
                     " detail, prev_hash, hash) VALUES(?,?,?,?,?,?,?,?)",
    [ST_AUDIT_ALL] = "SELECT id, ts, actor, role, action, object, detail,"
                     " prev_hash, hash FROM audit ORDER BY id",
    [ST_DEV_ADD] = "INSERT INTO devices(device_id, model, criticality,"
                   " token_hash, token_expires, created) VALUES(?,?,?,?,?,?)",
    [ST_DEV_GET] = "SELECT model, enrolled, revoked, token_hash,"
                   " token_expires FROM devices WHERE device_id = ?",
    [ST_DEV_CONSUME] = "UPDATE devices SET token_hash = NULL, enrolled = 1"
                       " WHERE device_id = ?1 AND token_hash = ?2"
                       " AND token_expires > ?3 AND revoked = 0",
    [ST_CERT_ADD] = "INSERT INTO certs(serial, device_id, issued)"
                    " VALUES(?,?,?)",
    [ST_CERT_OK] = "SELECT 1 FROM certs c JOIN devices d"
                   " ON d.device_id = c.device_id WHERE c.serial = ?1"
                   " AND c.device_id = ?2 AND c.revoked = 0"
                   " AND d.revoked = 0",
    [ST_DEV_REVOKE] = "UPDATE devices SET revoked = 1 WHERE device_id = ?",
    [ST_CERT_REVOKE] = "UPDATE certs SET revoked = 1 WHERE device_id = ?",
    [ST_DEV_LIST] = "SELECT d.device_id, d.model, d.criticality, d.enrolled,"
                    " d.revoked, d.version, d.seq, d.slot, d.last_seen,"
                    " d.last_result, " EFFECTIVE_RELEASE
                    " FROM devices d ORDER BY d.device_id",
    /* The issued-and-not-revoked check of ST_CERT_OK, in the same step
     * as the write it guards. */
    [ST_DEV_CHECKIN] = "UPDATE devices SET version = ?2, seq = ?3, slot = ?4,"
                       " state = ?5, last_seen = ?6 WHERE device_id = ?1"
                       " AND revoked = 0 AND EXISTS (SELECT 1 FROM certs c"
                       " WHERE c.serial = ?7 AND c.device_id = ?1"
                       " AND c.revoked = 0)",
    [ST_OFFER] = "SELECT r.release_id, r.seq, r.version, r.image_size,"
                 " r.image_digest, r.image_ready FROM releases r"
                 " WHERE r.release_id = (SELECT " EFFECTIVE_RELEASE
                 " FROM devices d WHERE d.device_id = ?)",
    [ST_REPORT_ADD] = "INSERT INTO reports(device_id, release_id, result,"
                      " reason, version, seq, ts) VALUES(?,?,?,?,?,?,?)",
    [ST_DEV_RESULT] = "UPDATE devices SET last_result = ?2, last_seen = ?3"
                      " WHERE device_id = ?1",
    [ST_DEV_INSTALLED] = "UPDATE devices SET version = ?2, seq = ?3,"
                         " slot = ?4 WHERE device_id = ?1",
    [ST_REL_ADD] = "INSERT INTO releases(release_id, seq, version,"
                   " vendor_id, class_id, image_size, image_digest,"
                   " envelope, uploaded_by, created)"
                   " VALUES(?,?,?,?,?,?,?,?,?,?)",
    [ST_REL_GET] = "SELECT release_id, seq, version, image_size,"
                   " image_digest, image_ready FROM releases"
                   " WHERE release_id = ?",
    [ST_REL_ENV] = "SELECT envelope FROM releases WHERE release_id = ?",
    [ST_REL_READY] = "UPDATE releases SET image_ready = 1"
                     " WHERE release_id = ?",
    [ST_REL_ASSIGNED] = "SELECT 1 FROM assignments a, devices d"
                        " WHERE a.release_id = ?1 AND d.device_id = ?2"
                        " AND (a.device_id = d.device_id"
                        " OR (a.device_id IS NULL AND a.model = d.model))"
                        " LIMIT 1",
    [ST_ASSIGN_DEV] = "INSERT INTO assignments(release_id, device_id,"
                      " created) VALUES(?,?,?)",
    [ST_ASSIGN_MODEL] = "INSERT INTO assignments(release_id, model,"
                        " created) VALUES(?,?,?)",
    [ST_MODEL_COUNT] = "SELECT count(*) FROM devices WHERE model = ?",
};

struct store {
    int refs; /* shared connection: one per worker holding it */
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT];
    int in_tx;
    int sync_mode; /* 0 unknown, 1 NORMAL, 2 FULL: set once per change */
    int tip_pending;
    uint8_t tip[IOMT_SHA256_LEN];
};

/* Fetches a prepared statement, reset and with its bindings cleared. */
static sqlite3_stmt *st(struct store *s, enum stmt_id id)
{
    sqlite3_stmt *stmt = s->stmt[id];

    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return stmt;
}

static int run(struct store *s, enum stmt_id id)
{
    sqlite3_stmt *stmt = st(s, id);
    int rc = sqlite3_step(stmt);

    sqlite3_reset(stmt);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? IOMT_OK : IOMT_E_IO;
}

static void bind_text(sqlite3_stmt *stmt, int i, const char *text)
{
    if (text == NULL)
        sqlite3_bind_null(stmt, i);
    else
        sqlite3_bind_text(stmt, i, text, -1, SQLITE_STATIC);
}

static void copy_col(sqlite3_stmt *stmt, int col, char *out, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(stmt, col);
    size_t n = t == NULL ? 0 : strlen((const char *)t);

    if (n >= cap)
        n = cap - 1;
    if (n > 0)
        memcpy(out, t, n);
    out[n] = 0;
}

static int hex_col(sqlite3_stmt *stmt, int col, uint8_t *out, size_t n)
{
    const unsigned char *t = sqlite3_column_text(stmt, col);

    if (t == NULL || strlen((const char *)t) != 2 * n)
        return -1;
    return iomt_unhex((const char *)t, 2 * n, out, n) == (long)n ? 0 : -1;
}

/*
 * Every state change chains onto the audit log's last hash. A tip that is
 * not a SHA-256 in hex (an altered store) would make every later change
 * fail to record: refuse to start and say why, instead of answering 500.
 */
static int check_audit_tip(sqlite3 *db, struct iomt_err *err)
{
    sqlite3_stmt *stmt = NULL;
    uint8_t tip[IOMT_SHA256_LEN];
    int rc;

    if (sqlite3_prepare_v2(db,
                           "SELECT hash FROM audit ORDER BY id DESC LIMIT 1",
                           -1, &stmt, NULL) != SQLITE_OK)
        return iomt_err_set(err, IOMT_E_IO, "store audit: %s",
                            sqlite3_errmsg(db));
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW && hex_col(stmt, 0, tip, sizeof(tip)) != 0)
        rc = iomt_err_set(err, IOMT_E_VERIFY,
                          "store audit: the last entry's hash is not a "
                          "SHA-256; the audit log was altered");
    else if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        rc = IOMT_OK;
    else
        rc =
            iomt_err_set(err, IOMT_E_IO, "store audit: %s", sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
    return rc;
}

int store_init(const char *path, struct iomt_err *err)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    int rc;

    /* Before the first connection: no allocation statistics (they take
     * a global mutex on every SQLite malloc), and no per-connection
     * mutexes (the hub serialises each connection itself). Refused
     * harmlessly once SQLite is initialised. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    sqlite3_config(SQLITE_CONFIG_MULTITHREAD);

    if (sqlite3_open_v2(path, &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rc = iomt_err_set(err, IOMT_E_IO, "store %s: %s", path,
                          db ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        return rc;
    }
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, &msg) !=
            SQLITE_OK ||
        sqlite3_exec(db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        rc = iomt_err_set(err, IOMT_E_IO, "store schema: %s",
                          msg ? msg : "failed");
        sqlite3_free(msg);
        sqlite3_close(db);
        return rc;
    }
    rc = check_audit_tip(db, err);
    sqlite3_close(db);
    return rc;
}

static int open_conn(const char *path, struct store **out, struct iomt_err *err)
{
    struct store *s;
    int i, rc;

    *out = NULL;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return iomt_err_set(err, IOMT_E_NOMEM, "store: out of memory");
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        rc = iomt_err_set(err, IOMT_E_IO, "store %s: cannot open", path);
        goto out_fail;
    }
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    /* Request threads never checkpoint (its fsync would stall a
     * check-in); store_checkpoint runs off the request path instead. */
    sqlite3_wal_autocheckpoint(s->db, 0);
    for (i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                               NULL) != SQLITE_OK) {
            rc = iomt_err_set(err, IOMT_E_IO, "store statement %d: %s", i,
                              sqlite3_errmsg(s->db));
            goto out_fail;
        }
    }
    s->refs = 1;
    *out = s;
    return IOMT_OK;
out_fail:
    store_close(s);
    return rc;
}

int store_open(const char *path, int shared, struct store **out,
               struct iomt_err *err)
{
    int rc = IOMT_OK;

    if (!shared)
        return open_conn(path, out, err);
    pthread_mutex_lock(&open_lock);
    if (shared_store == NULL)
        rc = open_conn(path, &shared_store, err);
    else
        shared_store->refs++;
    *out = rc == IOMT_OK ? shared_store : NULL;
    pthread_mutex_unlock(&open_lock);
    return rc;
}

int store_checkpoint(struct store *s)
{
    int log_frames = 0, done = 0;

    if (sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                  &log_frames, &done) != SQLITE_OK)
        return IOMT_E_IO;
    /* Once every frame is in the database, the next writer may restart
     * the log from the beginning, which keeps the WAL file small. */
    return IOMT_OK;
}

void store_close(struct store *s)
{
    int i, last;

    if (s == NULL)
        return;
    pthread_mutex_lock(&open_lock);
    last = --s->refs <= 0;
    if (last && s == shared_store)
        shared_store = NULL;
    pthread_mutex_unlock(&open_lock);
    if (!last)
        return;
    for (i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->stmt[i]);
    sqlite3_close(s->db);
    free(s);
}

int store_begin(struct store *s, int durable)
{
    int want = durable ? 2 : 1;

    pthread_mutex_lock(&write_lock);
    /* The pragma is per connection and sticks: issue it only on change. */
    if (s->sync_mode != want) {
        s->sync_mode = 0;
        if (run(s, durable ? ST_SYNC_FULL : ST_SYNC_NORMAL) != IOMT_OK) {
            pthread_mutex_unlock(&write_lock);
            return IOMT_E_IO;
        }
        s->sync_mode = want;
    }
    if (run(s, ST_BEGIN) != IOMT_OK) {
        pthread_mutex_unlock(&write_lock);
        return IOMT_E_IO;
    }
    s->in_tx = 1;
    s->tip_pending = 0;
    return IOMT_OK;
}

int store_commit(struct store *s)
{
    int rc = run(s, ST_COMMIT);

    if (rc != IOMT_OK) {
        run(s, ST_ROLLBACK);
        audit_tip_known = 0;
    } else if (s->tip_pending) {
        memcpy(audit_tip, s->tip, sizeof(audit_tip));
        audit_tip_known = 1;
    }
    s->tip_pending = 0;
    s->in_tx = 0;
    pthread_mutex_unlock(&write_lock);
    return rc;
}

void store_rollback(struct store *s)
{
    if (!s->in_tx)
        return;
    run(s, ST_ROLLBACK);
    s->tip_pending = 0;
    s->in_tx = 0;
    pthread_mutex_unlock(&write_lock);
}

static int put_field(char *out, size_t cap, size_t *at, const char *v)
{
    size_t n = strlen(v);
    int w = snprintf(out + *at, cap - *at, "%zu:", n);

    if (w < 0 || (size_t)w >= cap - *at || n + 1 > cap - *at - (size_t)w)
        return -1;
    *at += (size_t)w;
    memcpy(out + *at, v, n);
    *at += n;
    out[(*at)++] = ',';
    return 0;
}

/*
 * Each field as "<byte length>:<bytes>," in a fixed order, so no value
 * can be shifted into its neighbour to forge a matching hash.
 */
long store_audit_canonical(char *out, size_t cap, int64_t ts, const char *actor,
                           const char *role, const char *action,
                           const char *object, const char *detail)
{
    const char *fields[5] = {actor, role, action, object, detail};
    char ts_text[24];
    size_t at = 0;
    int i;

    snprintf(ts_text, sizeof(ts_text), "%lld", (long long)ts);
    if (cap == 0 || put_field(out, cap, &at, ts_text) != 0)
        return -1;
    for (i = 0; i < 5; i++) {
        if (put_field(out, cap, &at, fields[i]) != 0)
            return -1;
    }
    return (long)at;
}

int store_audit(struct store *s, const char *actor, const char *role,
                const char *action, const char *object, const char *detail)
{
    /* prev || canonical, hashed in one call: the chained input. */
    uint8_t buf[IOMT_SHA256_LEN + 2048], hash[IOMT_SHA256_LEN];
    char prev_hex[2 * IOMT_SHA256_LEN + 1], hash_hex[2 * IOMT_SHA256_LEN + 1];
    uint8_t *prev = buf;
    sqlite3_stmt *stmt;
    int64_t ts = (int64_t)time(NULL);
    long n;
    int rc;

    memset(prev, 0, IOMT_SHA256_LEN);
    /* Within a transaction the tip is this transaction's last entry, else
     * the committed one, else the table's. */
    if (s->tip_pending) {
        memcpy(prev, s->tip, IOMT_SHA256_LEN);
    } else if (audit_tip_known) {
        memcpy(prev, audit_tip, IOMT_SHA256_LEN);
    } else {
        stmt = st(s, ST_AUDIT_LAST);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW && hex_col(stmt, 0, prev, IOMT_SHA256_LEN) != 0)
            rc = SQLITE_ERROR;
        sqlite3_reset(stmt);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return IOMT_E_IO;
    }
    n = store_audit_canonical((char *)buf + IOMT_SHA256_LEN,
                              sizeof(buf) - IOMT_SHA256_LEN, ts, actor, role,
                              action, object, detail);
    if (n < 0 || iomt_sha256(buf, IOMT_SHA256_LEN + (size_t)n, hash) != IOMT_OK)
        return IOMT_E_INPUT;
    iomt_hex(prev, IOMT_SHA256_LEN, prev_hex);
    iomt_hex(hash, sizeof(hash), hash_hex);
    stmt = st(s, ST_AUDIT_ADD);
    sqlite3_bind_int64(stmt, 1, ts);
    bind_text(stmt, 2, actor);
    bind_text(stmt, 3, role);
    bind_text(stmt, 4, action);
    bind_text(stmt, 5, object);
    bind_text(stmt, 6, detail);
    bind_text(stmt, 7, prev_hex);
    bind_text(stmt, 8, hash_hex);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return IOMT_E_IO;
    memcpy(s->tip, hash, sizeof(hash));
    s->tip_pending = 1;
    return IOMT_OK;
}

static json_t *col_json(sqlite3_stmt *stmt, int col)
{
    switch (sqlite3_column_type(stmt, col)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(stmt, col));
    case SQLITE_TEXT:
        return json_string((const char *)sqlite3_column_text(stmt, col));
    default:
        return json_null();
    }
}

static json_t *audit_json_nolock(struct store *s)
{
    static const char *const names[] = {"id",     "ts",        "actor",
                                        "role",   "action",    "object",
                                        "detail", "prev_hash", "hash"};
    sqlite3_stmt *stmt = st(s, ST_AUDIT_ALL);
    json_t *entries = json_array();
    int rc, i;

    while (entries != NULL && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        json_t *e = json_object();

        for (i = 0; e != NULL && i < 9; i++)
            json_object_set_new(e, names[i], col_json(stmt, i));
        if (e == NULL || json_array_append_new(entries, e) != 0) {
            json_decref(entries);
            entries = NULL;
        }
    }
    sqlite3_reset(stmt);
    return entries;
}

int store_device_add(struct store *s, const char *device_id, const char *model,
                     const char *criticality,
                     const uint8_t token_hash[IOMT_SHA256_LEN], int64_t expires)
{
    char hex[2 * IOMT_SHA256_LEN + 1];
    sqlite3_stmt *stmt;
    int rc;

    iomt_hex(token_hash, IOMT_SHA256_LEN, hex);
    stmt = st(s, ST_DEV_ADD);
    bind_text(stmt, 1, device_id);
    bind_text(stmt, 2, model);
    bind_text(stmt, 3, criticality);
    bind_text(stmt, 4, hex);
    sqlite3_bind_int64(stmt, 5, expires);
    sqlite3_bind_int64(stmt, 6, (int64_t)time(NULL));
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc == SQLITE_CONSTRAINT)
        return IOMT_E_STATE;
    return rc == SQLITE_DONE ? IOMT_OK : IOMT_E_IO;
}

static int device_get_nolock(struct store *s, const char *device_id,
                             struct store_device *d)
{
    sqlite3_stmt *stmt = st(s, ST_DEV_GET);
    int rc = IOMT_E_INPUT;

    memset(d, 0, sizeof(*d));
    bind_text(stmt, 1, device_id);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        copy_col(stmt, 0, d->model, sizeof(d->model));
        d->enrolled = sqlite3_column_int(stmt, 1);
        d->revoked = sqlite3_column_int(stmt, 2);
        d->has_token = hex_col(stmt, 3, d->token_hash, IOMT_SHA256_LEN) == 0;
        d->token_expires = sqlite3_column_int64(stmt, 4);
        rc = IOMT_OK;
    }
    sqlite3_reset(stmt);
    return rc;
}

int store_device_consume_token(struct store *s, const char *device_id,
                               const uint8_t token_hash[IOMT_SHA256_LEN],
                               int64_t now)
{
    char hex[2 * IOMT_SHA256_LEN + 1];
    sqlite3_stmt *stmt = st(s, ST_DEV_CONSUME);
    int rc;

    iomt_hex(token_hash, IOMT_SHA256_LEN, hex);
    bind_text(stmt, 1, device_id);
    bind_text(stmt, 2, hex);
    sqlite3_bind_int64(stmt, 3, now);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return IOMT_E_IO;
    return sqlite3_changes(s->db) == 1 ? IOMT_OK : IOMT_E_AUTH;
}

int store_cert_add(struct store *s, const char *serial_hex,
                   const char *device_id, int64_t now)
{
    sqlite3_stmt *stmt = st(s, ST_CERT_ADD);
    int rc;

    bind_text(stmt, 1, serial_hex);
    bind_text(stmt, 2, device_id);
    sqlite3_bind_int64(stmt, 3, now);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? IOMT_OK : IOMT_E_IO;
}

static int cert_ok_nolock(struct store *s, const char *device_id,
                          const char *serial_hex)
{
    sqlite3_stmt *stmt = st(s, ST_CERT_OK);
    int ok;

    bind_text(stmt, 1, serial_hex);
    bind_text(stmt, 2, device_id);
    ok = sqlite3_step(stmt) == SQLITE_ROW;
    sqlite3_reset(stmt);
    return ok;
}

int store_device_revoke(struct store *s, const char *device_id)
{
    sqlite3_stmt *stmt = st(s, ST_DEV_REVOKE);
    int rc, changed;

    bind_text(stmt, 1, device_id);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    changed = sqlite3_changes(s->db);
    if (rc != SQLITE_DONE)
        return IOMT_E_IO;
    if (changed != 1)
        return IOMT_E_INPUT;
    stmt = st(s, ST_CERT_REVOKE);
    bind_text(stmt, 1, device_id);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? IOMT_OK : IOMT_E_IO;
}

static json_t *devices_json_nolock(struct store *s)
{
    static const char *const names[] = {
        "device_id", "model",       "criticality", "enrolled",
        "revoked",   "version",     "seq",         "slot",
        "last_seen", "last_result", "release_id"};
    sqlite3_stmt *stmt = st(s, ST_DEV_LIST);
    json_t *list = json_array();
    int i;

    while (list != NULL && sqlite3_step(stmt) == SQLITE_ROW) {
        json_t *d = json_object();

        for (i = 0; d != NULL && i < 11; i++) {
            json_t *v = i == 3 || i == 4
                            ? json_boolean(sqlite3_column_int(stmt, i))
                            : col_json(stmt, i);

            json_object_set_new(d, names[i], v);
        }
        if (d == NULL || json_array_append_new(list, d) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    sqlite3_reset(stmt);
    return list;
}

int store_checkin(struct store *s, const char *device_id,
                  const char *serial_hex, const char *version, uint64_t seq,
                  const char *slot, const char *state, int64_t now)
{
    sqlite3_stmt *stmt = st(s, ST_DEV_CHECKIN);
    int rc;

    bind_text(stmt, 1, device_id);
    bind_text(stmt, 2, version);
    sqlite3_bind_int64(stmt, 3, (int64_t)seq);
    bind_text(stmt, 4, slot);
    bind_text(stmt, 5, state);
    sqlite3_bind_int64(stmt, 6, now);
    bind_text(stmt, 7, serial_hex);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return IOMT_E_IO;
    /* No row: the certificate is not this device's, or one of them is
     * revoked (or the device is gone). Nothing was written. */
    return sqlite3_changes(s->db) == 1 ? IOMT_OK : IOMT_E_AUTH;
}

static int release_row(sqlite3_stmt *stmt, struct store_release *r)
{
    memset(r, 0, sizeof(*r));
    copy_col(stmt, 0, r->release_id, sizeof(r->release_id));
    r->seq = (uint64_t)sqlite3_column_int64(stmt, 1);
    copy_col(stmt, 2, r->version, sizeof(r->version));
    r->image_size = (uint64_t)sqlite3_column_int64(stmt, 3);
    if (hex_col(stmt, 4, r->image_digest, IOMT_SHA256_LEN) != 0)
        return IOMT_E_IO;
    r->image_ready = sqlite3_column_int(stmt, 5);
    return IOMT_OK;
}

static int offer_nolock(struct store *s, const char *device_id,
                        struct store_release *r)
{
    sqlite3_stmt *stmt = st(s, ST_OFFER);
    int found = 0;

    bind_text(stmt, 1, device_id);
    if (sqlite3_step(stmt) == SQLITE_ROW && release_row(stmt, r) == IOMT_OK)
        found = r->image_ready;
    sqlite3_reset(stmt);
    return found;
}

int store_report(struct store *s, const char *device_id, const char *release_id,
                 const char *result, const char *reason, const char *version,
                 uint64_t seq, const char *slot, int64_t now)
{
    sqlite3_stmt *stmt = st(s, ST_REPORT_ADD);
    int rc;

    bind_text(stmt, 1, device_id);
    bind_text(stmt, 2, release_id);
    bind_text(stmt, 3, result);
    bind_text(stmt, 4, reason);
    bind_text(stmt, 5, version);
    sqlite3_bind_int64(stmt, 6, (int64_t)seq);
    sqlite3_bind_int64(stmt, 7, now);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return IOMT_E_IO;
    stmt = st(s, ST_DEV_RESULT);
    bind_text(stmt, 1, device_id);
    bind_text(stmt, 2, result);
    sqlite3_bind_int64(stmt, 3, now);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return IOMT_E_IO;
    if (strcmp(result, "installed") != 0 || version == NULL)
        return IOMT_OK;
    stmt = st(s, ST_DEV_INSTALLED);
    bind_text(stmt, 1, device_id);
    bind_text(stmt, 2, version);
    sqlite3_bind_int64(stmt, 3, (int64_t)seq);
    bind_text(stmt, 4, slot);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? IOMT_OK : IOMT_E_IO;
}

int store_release_add(struct store *s, const struct store_release *r,
                      const char *vendor_id, const char *class_id,
                      const uint8_t *envelope, size_t envelope_len,
                      const char *uploader, int64_t now)
{
    char digest_hex[2 * IOMT_SHA256_LEN + 1];
    sqlite3_stmt *stmt = st(s, ST_REL_ADD);
    int rc;

    iomt_hex(r->image_digest, IOMT_SHA256_LEN, digest_hex);
    bind_text(stmt, 1, r->release_id);
    sqlite3_bind_int64(stmt, 2, (int64_t)r->seq);
    bind_text(stmt, 3, r->version);
    bind_text(stmt, 4, vendor_id);
    bind_text(stmt, 5, class_id);
    sqlite3_bind_int64(stmt, 6, (int64_t)r->image_size);
    bind_text(stmt, 7, digest_hex);
    sqlite3_bind_blob(stmt, 8, envelope, (int)envelope_len, SQLITE_STATIC);
    bind_text(stmt, 9, uploader);
    sqlite3_bind_int64(stmt, 10, now);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc == SQLITE_CONSTRAINT)
        return IOMT_E_STATE;
    return rc == SQLITE_DONE ? IOMT_OK : IOMT_E_IO;
}

static int release_get_nolock(struct store *s, const char *release_id,
                              struct store_release *r)
{
    sqlite3_stmt *stmt = st(s, ST_REL_GET);
    int rc = IOMT_E_INPUT;

    bind_text(stmt, 1, release_id);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        rc = release_row(stmt, r);
    sqlite3_reset(stmt);
    return rc;
}

static int release_envelope_nolock(struct store *s, const char *release_id,
                                   uint8_t **env, size_t *env_len)
{
    sqlite3_stmt *stmt = st(s, ST_REL_ENV);
    int rc = IOMT_E_INPUT;

    *env = NULL;
    bind_text(stmt, 1, release_id);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        const void *blob = sqlite3_column_blob(stmt, 0);
        int n = sqlite3_column_bytes(stmt, 0);

        rc = IOMT_E_NOMEM;
        if (blob != NULL && n > 0 && (*env = malloc((size_t)n)) != NULL) {
            memcpy(*env, blob, (size_t)n);
            *env_len = (size_t)n;
            rc = IOMT_OK;
        }
    }
    sqlite3_reset(stmt);
    return rc;
}

int store_release_image_ready(struct store *s, const char *release_id)
{
    sqlite3_stmt *stmt = st(s, ST_REL_READY);
    int rc;

    bind_text(stmt, 1, release_id);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? IOMT_OK : IOMT_E_IO;
}

static int release_assigned_nolock(struct store *s, const char *release_id,
                                   const char *device_id)
{
    sqlite3_stmt *stmt = st(s, ST_REL_ASSIGNED);
    int ok;

    bind_text(stmt, 1, release_id);
    bind_text(stmt, 2, device_id);
    ok = sqlite3_step(stmt) == SQLITE_ROW;
    sqlite3_reset(stmt);
    return ok;
}

int store_assign(struct store *s, const char *release_id, const char *device_id,
                 const char *model, int64_t now, int *count)
{
    sqlite3_stmt *stmt;
    int rc;

    *count = 0;
    if (device_id != NULL) {
        stmt = st(s, ST_ASSIGN_DEV);
        bind_text(stmt, 2, device_id);
        *count = 1;
    } else {
        sqlite3_stmt *cnt = st(s, ST_MODEL_COUNT);

        bind_text(cnt, 1, model);
        if (sqlite3_step(cnt) == SQLITE_ROW)
            *count = sqlite3_column_int(cnt, 0);
        sqlite3_reset(cnt);
        stmt = st(s, ST_ASSIGN_MODEL);
        bind_text(stmt, 2, model);
    }
    bind_text(stmt, 1, release_id);
    sqlite3_bind_int64(stmt, 3, now);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? IOMT_OK : IOMT_E_IO;
}

/* Reads, each under the shared connection's lock. */

json_t *store_audit_json(struct store *s)
{
    json_t *v;

    pthread_mutex_lock(&write_lock);
    v = audit_json_nolock(s);
    pthread_mutex_unlock(&write_lock);
    return v;
}

int store_device_get(struct store *s, const char *device_id,
                     struct store_device *d)
{
    int v;

    pthread_mutex_lock(&write_lock);
    v = device_get_nolock(s, device_id, d);
    pthread_mutex_unlock(&write_lock);
    return v;
}

int store_device_cert_ok(struct store *s, const char *device_id,
                         const char *serial_hex)
{
    int v;

    pthread_mutex_lock(&write_lock);
    v = cert_ok_nolock(s, device_id, serial_hex);
    pthread_mutex_unlock(&write_lock);
    return v;
}

json_t *store_devices_json(struct store *s)
{
    json_t *v;

    pthread_mutex_lock(&write_lock);
    v = devices_json_nolock(s);
    pthread_mutex_unlock(&write_lock);
    return v;
}

int store_offer(struct store *s, const char *device_id, struct store_release *r)
{
    int v;

    pthread_mutex_lock(&write_lock);
    v = offer_nolock(s, device_id, r);
    pthread_mutex_unlock(&write_lock);
    return v;
}

int store_release_get(struct store *s, const char *release_id,
                      struct store_release *r)
{
    int v;

    pthread_mutex_lock(&write_lock);
    v = release_get_nolock(s, release_id, r);
    pthread_mutex_unlock(&write_lock);
    return v;
}

int store_release_envelope(struct store *s, const char *release_id,
                           uint8_t **env, size_t *env_len)
{
    int v;

    pthread_mutex_lock(&write_lock);
    v = release_envelope_nolock(s, release_id, env, env_len);
    pthread_mutex_unlock(&write_lock);
    return v;
}

int store_release_assigned(struct store *s, const char *release_id,
                           const char *device_id)
{
    int v;

    pthread_mutex_lock(&write_lock);
    v = release_assigned_nolock(s, release_id, device_id);
    pthread_mutex_unlock(&write_lock);
    return v;
}
