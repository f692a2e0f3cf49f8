/*
 * iomt-hub: the hospital-side service. Devices enrol over EST, check in,
 * fetch their assigned release and report; operators manage inventory and
 * releases. HTTPS with TLS 1.3 mutual authentication, state in SQLite.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/thread.h>
#include <openssl/ssl.h>

#include "hub.h"
#include "store.h"

#define WORKERS_MAX   64
#define CHECKPOINT_MS 250

static void usage(FILE *out)
{
    fprintf(out,
            "usage: iomt-hub serve --dir STATE_DIR --ca-dir CA_DIR "
            "--cert HUB.pem --key HUB.key.pem\n"
            "                      [--listen 127.0.0.1:8443] [--allow-remote] "
            "[--port-file FILE]\n"
            "                      [--workers 1..%d] [--image-max BYTES] "
            "[--token-ttl SECONDS]\n"
            "                      [--device-days N]\n"
            "Listens on loopback by default (a non-loopback --listen needs "
            "--allow-remote);\nport 0 picks a free port and --port-file "
            "receives it once the hub accepts\nconnections. SIGTERM or SIGINT "
            "stop it. Exit 2: bad usage or unreadable input;\n3: start-up or "
            "runtime failure.\n",
            WORKERS_MAX);
}

static int parse_num(const char *text, long long min, long long max,
                     long long *out)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != 0 || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

struct num_opt {
    const char *name;
    long long min, max;
};

static const struct num_opt num_opts[] = {
    {"--workers", 1, WORKERS_MAX},
    {"--image-max", 1, 1LL << 40},
    {"--token-ttl", 1, 366LL * 86400},
    {"--device-days", 1, 36500},
};

static void set_num(struct hub_config *cfg, size_t which, long long v)
{
    if (which == 0)
        cfg->workers = (int)v;
    else if (which == 1)
        cfg->image_max = (uint64_t)v;
    else if (which == 2)
        cfg->token_ttl = (long)v;
    else
        cfg->device_days = (int)v;
}

/* Returns 0, or prints what is wrong (naming the option) and returns -1. */
static int parse_num_opt(struct hub_config *cfg, const char *opt,
                         const char *val, int *matched)
{
    long long v;
    size_t k;

    *matched = 0;
    for (k = 0; k < sizeof(num_opts) / sizeof(num_opts[0]); k++) {
        if (strcmp(opt, num_opts[k].name) != 0)
            continue;
        *matched = 1;
        if (parse_num(val, num_opts[k].min, num_opts[k].max, &v) != 0) {
            fprintf(stderr,
                    "iomt-hub: %s: \"%s\" is not a number in %lld..%lld\n", opt,
                    val, num_opts[k].min, num_opts[k].max);
            return -1;
        }
        set_num(cfg, k, v);
    }
    return 0;
}

static int parse_args(int argc, char **argv, struct hub_config *cfg)
{
    static const char *const required[] = {"--dir", "--ca-dir", "--cert",
                                           "--key"};
    const char *have[4];
    int i, matched;
    size_t k;

    for (i = 2; i < argc; i++) {
        const char *opt = argv[i], *val;

        if (strcmp(opt, "--allow-remote") == 0) {
            cfg->allow_remote = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "iomt-hub: %s: needs a value (or is unknown)\n",
                    opt);
            return -1;
        }
        val = argv[++i];
        if (parse_num_opt(cfg, opt, val, &matched) != 0)
            return -1;
        if (matched)
            continue;
        if (strcmp(opt, "--dir") == 0)
            cfg->state_dir = val;
        else if (strcmp(opt, "--ca-dir") == 0)
            cfg->ca_dir = val;
        else if (strcmp(opt, "--cert") == 0)
            cfg->cert_path = val;
        else if (strcmp(opt, "--key") == 0)
            cfg->key_path = val;
        else if (strcmp(opt, "--listen") == 0)
            cfg->listen = val;
        else if (strcmp(opt, "--port-file") == 0)
            cfg->port_file = val;
        else {
            fprintf(stderr, "iomt-hub: %s: unknown option\n", opt);
            return -1;
        }
    }
    have[0] = cfg->state_dir;
    have[1] = cfg->ca_dir;
    have[2] = cfg->cert_path;
    have[3] = cfg->key_path;
    for (k = 0; k < 4; k++) {
        if (have[k] == NULL) {
            fprintf(stderr, "iomt-hub: %s is required\n", required[k]);
            return -1;
        }
    }
    return 0;
}

/* Start-up failures: exit 2 for bad usage or unreadable input (the
 * message names the option), 3 for runtime failures. */
#define EXIT_USAGE   2
#define EXIT_RUNTIME 3

static int prepare_paths(struct hub_config *cfg)
{
    if (snprintf(cfg->ca_key_path, sizeof(cfg->ca_key_path), "%s/ca.key.pem",
                 cfg->ca_dir) >= (int)sizeof(cfg->ca_key_path) ||
        snprintf(cfg->ca_cert_path, sizeof(cfg->ca_cert_path), "%s/ca.pem",
                 cfg->ca_dir) >= (int)sizeof(cfg->ca_cert_path) ||
        snprintf(cfg->db_path, sizeof(cfg->db_path), "%s/hub.db",
                 cfg->state_dir) >= (int)sizeof(cfg->db_path) ||
        snprintf(cfg->images_dir, sizeof(cfg->images_dir), "%s/images",
                 cfg->state_dir) >= (int)sizeof(cfg->images_dir)) {
        hub_log("error", "start", "option=--dir msg=\"path too long\"");
        return EXIT_USAGE;
    }
    return 0;
}

/* Called only once every option has been checked: a refused start leaves
 * no state directory behind. */
static int make_dirs(const struct hub_config *cfg)
{
    if (mkdir(cfg->state_dir, 0700) != 0 && errno != EEXIST) {
        hub_log("error", "start", "option=--dir path=%s msg=\"%s\"",
                cfg->state_dir, strerror(errno));
        return EXIT_USAGE;
    }
    if (mkdir(cfg->images_dir, 0700) != 0 && errno != EEXIST) {
        hub_log("error", "start", "option=--dir path=%s msg=\"%s\"",
                cfg->images_dir, strerror(errno));
        return EXIT_USAGE;
    }
    return 0;
}

static int load_cacerts(struct hub_config *cfg, struct iomt_err *err)
{
    uint8_t buf[16 * 1024];
    size_t n;
    FILE *f = fopen(cfg->ca_cert_path, "rb");
    int rc;

    if (f == NULL)
        return iomt_err_set(err, IOMT_E_IO, "%s: %s", cfg->ca_cert_path,
                            strerror(errno));
    n = fread(buf, 1, sizeof(buf), f);
    rc = ferror(f) || !feof(f);
    fclose(f);
    if (rc)
        return iomt_err_set(err, IOMT_E_INPUT, "%s: unreadable or too big",
                            cfg->ca_cert_path);
    if (access(cfg->ca_key_path, R_OK) != 0)
        return iomt_err_set(err, IOMT_E_IO, "%s: %s", cfg->ca_key_path,
                            strerror(errno));
    return iomt_pki_est_wrap(buf, n, &cfg->cacerts_b64, &cfg->cacerts_len, err);
}

/*
 * Loads everything the workers need and proves the files fit together:
 * the fleet CA, and a server certificate that chains to it, names the hub
 * role and carries serverAuth (an operator's certificate or one from
 * another CA must not front the fleet). Returns 0 or an exit status.
 */
static int check_inputs(struct hub_config *cfg)
{
    struct iomt_err err = {0};
    SSL_CTX *ssl_ctx = NULL;

    if (load_cacerts(cfg, &err) != IOMT_OK) {
        hub_log("error", "start", "option=--ca-dir msg=\"%s\"", err.msg);
        return EXIT_USAGE;
    }
    if (access(cfg->cert_path, R_OK) != 0 || access(cfg->key_path, R_OK) != 0) {
        int cert_bad = access(cfg->cert_path, R_OK) != 0;

        hub_log("error", "start", "option=%s path=%s msg=\"%s\"",
                cert_bad ? "--cert" : "--key",
                cert_bad ? cfg->cert_path : cfg->key_path, strerror(errno));
        return EXIT_USAGE;
    }
    if (iomt_pki_check_server_cert(cfg->ca_cert_path, cfg->cert_path, &err) !=
        IOMT_OK) {
        hub_log("error", "start", "option=--cert msg=\"%s\"", err.msg);
        return EXIT_USAGE;
    }
    if (iomt_pki_tls_server_ctx(cfg->ca_cert_path, cfg->cert_path,
                                cfg->key_path, &ssl_ctx, &err) != IOMT_OK) {
        hub_log("error", "start", "option=--key msg=\"%s\"", err.msg);
        return EXIT_USAGE;
    }
    /* That context only proved the files load; each worker makes its own. */
    SSL_CTX_free(ssl_ctx);
    return 0;
}

struct checkpointer {
    struct store *store;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop;
};

/* Runs WAL checkpoints every CHECKPOINT_MS until told to stop. */
static void *checkpoint_main(void *arg)
{
    struct checkpointer *cp = arg;
    struct timespec until;

    pthread_mutex_lock(&cp->lock);
    while (!cp->stop) {
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += CHECKPOINT_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&cp->wake, &cp->lock, &until);
        if (cp->stop)
            break;
        pthread_mutex_unlock(&cp->lock);
        store_checkpoint(cp->store);
        pthread_mutex_lock(&cp->lock);
    }
    pthread_mutex_unlock(&cp->lock);
    store_checkpoint(cp->store);
    return NULL;
}

static int checkpointer_start(struct checkpointer *cp, const char *db_path)
{
    struct iomt_err err = {0};

    memset(cp, 0, sizeof(*cp));
    pthread_mutex_init(&cp->lock, NULL);
    pthread_cond_init(&cp->wake, NULL);
    if (store_open(db_path, 0, &cp->store, &err) != IOMT_OK ||
        pthread_create(&cp->thread, NULL, checkpoint_main, cp) != 0) {
        store_close(cp->store);
        cp->store = NULL;
        return -1;
    }
    return 0;
}

static void checkpointer_stop(struct checkpointer *cp)
{
    if (cp->store == NULL)
        return;
    pthread_mutex_lock(&cp->lock);
    cp->stop = 1;
    pthread_cond_signal(&cp->wake);
    pthread_mutex_unlock(&cp->lock);
    pthread_join(cp->thread, NULL);
    store_close(cp->store);
    cp->store = NULL;
}

static int write_port_file(const char *path, int port)
{
    char tmp[PATH_MAX];
    FILE *f;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0) {
        unlink(tmp);
        return -1;
    }
    /* Readers see the whole number or no file at all. */
    if (rename(tmp, path) != 0) {
        int saved = errno;

        unlink(tmp);
        errno = saved;
        return -1;
    }
    return 0;
}

/*
 * Every handshake allocates and frees OpenSSL's 16 KiB record buffers and
 * thousands of small objects. With glibc's defaults the worker arenas give
 * freed memory back at the top of the heap (madvise) and fault it in again
 * a moment later; a fixed, larger trim threshold and top pad keep that
 * memory in the arena. Memory stays bounded: what is kept is reused by
 * the next handshake.
 */
static void tune_malloc(void)
{
    mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TOP_PAD, 16 * 1024 * 1024);
}

static int serve(struct hub_config *cfg)
{
    struct hub_worker *workers[WORKERS_MAX] = {0};
    struct checkpointer cp = {0};
    struct iomt_err err = {0};
    sigset_t stop_set;
    char why[160] = "";
    int listen_fd = -1, port = 0, i, sig = 0, rc;

    /* The store holds token hashes and the audit log: owner only. */
    umask(077);
    rc = prepare_paths(cfg);
    if (rc == 0)
        rc = check_inputs(cfg);
    if (rc != 0)
        goto out_free;
    rc = hub_listen(cfg->listen, cfg->allow_remote, &listen_fd, &port, why,
                    sizeof(why));
    if (rc != 0) {
        hub_log("error", "start", "option=--listen listen=%s msg=\"%s\"",
                cfg->listen, why);
        rc = rc == HUB_LISTEN_USAGE ? EXIT_USAGE : EXIT_RUNTIME;
        goto out_free;
    }
    rc = make_dirs(cfg);
    if (rc != 0)
        goto out_free;
    if (store_init(cfg->db_path, &err) != IOMT_OK) {
        hub_log("error", "start", "option=--dir msg=\"%s\"", err.msg);
        rc = EXIT_RUNTIME;
        goto out_free;
    }
    rc = EXIT_RUNTIME;
    if (evthread_use_pthreads() != 0) {
        hub_log("error", "start", "msg=\"libevent threads unavailable\"");
        goto out_free;
    }
    tune_malloc();
    /* Workers inherit this mask: only the main thread takes signals. */
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (checkpointer_start(&cp, cfg->db_path) != 0) {
        hub_log("error", "start", "msg=\"checkpoint thread failed\"");
        goto out_stop;
    }
    for (i = 0; i < cfg->workers; i++) {
        workers[i] = hub_worker_new(cfg, listen_fd);
        if (workers[i] == NULL || hub_worker_start(workers[i]) != 0) {
            hub_log("error", "start", "msg=\"worker %d failed\"", i);
            goto out_stop;
        }
    }
    if (cfg->port_file != NULL && write_port_file(cfg->port_file, port) != 0) {
        hub_log("error", "start", "option=--port-file path=%s msg=\"%s\"",
                cfg->port_file, strerror(errno));
        rc = EXIT_USAGE;
        goto out_stop;
    }
    hub_log("info", "listening", "listen=%s port=%d workers=%d", cfg->listen,
            port, cfg->workers);
    if (sigwait(&stop_set, &sig) == 0)
        hub_log("info", "stopping", "signal=%d", sig);
    rc = 0;
out_stop:
    for (i = 0; i < cfg->workers; i++)
        hub_worker_free(workers[i]);
    checkpointer_stop(&cp);
out_free:
    if (listen_fd >= 0)
        close(listen_fd);
    free(cfg->cacerts_b64);
    return rc;
}

#define TUNABLES_ENV "GLIBC_TUNABLES"
#define TUNABLES     "glibc.malloc.tcache_count=512"

/*
 * A TLS 1.3 handshake under OpenSSL 3 allocates and frees bursts of
 * hundreds of small objects of one size (the decoder and key-manager
 * lists built for each client certificate). glibc's per-thread cache
 * holds 7 chunks per size, so most of a burst goes through the locked
 * arena bins and their consolidation: measured at ~5% of the hub's CPU
 * per check-in. The cache size is a glibc tunable, read only from the
 * environment at program start, so the hub starts itself once more with
 * it set. An operator's own GLIBC_TUNABLES is left alone, and should the
 * exec fail the hub runs on with glibc's defaults.
 */
static void tune_thread_cache(char **argv)
{
    if (getenv(TUNABLES_ENV) != NULL)
        return;
    if (setenv(TUNABLES_ENV, TUNABLES, 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    unsetenv(TUNABLES_ENV);
}

int main(int argc, char **argv)
{
    struct hub_config cfg;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    memset(&cfg, 0, sizeof(cfg));
    cfg.listen = "127.0.0.1:8443";
    cfg.workers = cpus < 1 ? 1 : cpus > WORKERS_MAX ? WORKERS_MAX : (int)cpus;
    cfg.image_max = HUB_IMAGE_MAX_DEF;
    cfg.token_ttl = 24 * 3600;
    cfg.device_days = 365;
    if (argc >= 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "serve") != 0) {
        if (argc >= 2)
            fprintf(stderr, "iomt-hub: %s: unknown command\n", argv[1]);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (parse_args(argc, argv, &cfg) != 0)
        return EXIT_USAGE;
    tune_thread_cache(argv);
    return serve(&cfg);
}
