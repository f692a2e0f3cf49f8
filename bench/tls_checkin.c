/*
 * tls_checkin: load client for the device check-in path. Every check-in is
 * a new TCP connection with a full TLS 1.3 handshake and a P-256 client
 * certificate (no resumption, no keep-alive), one POST, one whole response.
 * The same client runs against iomt-hub and against nginx so they compare.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define CONNS_MAX    256
#define SECONDS_MAX  600
#define RESPONSE_MAX (64 * 1024)
#define IO_TIMEOUT_S 5

static const char default_body[] =
    "{\"version\":\"1.0\",\"seq\":1,\"slot\":\"A\",\"state\":\"confirmed\"}";

struct options {
    const char *host;
    int port;
    const char *ca;
    const char *cert;
    const char *key;
    const char *path;
    const char *body;
    const char *server_name;
    int conns;
    double seconds;
    long count;
    int expect_status;
};

struct shared {
    const struct options *opt;
    SSL_CTX *ctx;
    struct sockaddr_in addr;
    char request[2048];
    size_t request_len;
    struct timespec deadline;
    atomic_long issued;
    atomic_long ok;
    atomic_long failed;
    atomic_int reason_set;
    char first_reason[256];
};

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tls_checkin --connect 127.0.0.1:PORT --ca CA.pem\n"
            "                   --cert DEVICE.pem --key DEVICE.key.pem\n"
            "                   [--conns K] [--seconds S] [--count N]\n"
            "                   [--path /api/v1/checkin] [--body JSON]\n"
            "                   [--server-name NAME] [--expect STATUS]\n"
            "Each check-in: new connection, full TLS 1.3 handshake, one "
            "POST.\nPrints one line: checkins= failures= seconds= rate=.\n"
            "Exit 0 when every check-in got the expected status, 1 when any\n"
            "failed, 2 on bad usage.\n");
}

static void record_failure(struct shared *sh, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char ossl[160] = "";

    atomic_fetch_add(&sh->failed, 1);
    if (atomic_exchange(&sh->reason_set, 1))
        return;
    if (e != 0)
        ERR_error_string_n(e, ossl, sizeof(ossl));
    snprintf(sh->first_reason, sizeof(sh->first_reason), "%s%s%s", what,
             ossl[0] ? ": " : "", ossl);
}

/*
 * A load tool must not be aimable at other machines: only loopback
 * addresses are accepted.
 */
static int parse_target(const char *arg, struct options *opt)
{
    const char *colon = strrchr(arg, ':');
    char *end = NULL;
    long port;

    if (colon == NULL || colon == arg)
        return -1;
    if ((size_t)(colon - arg) != strlen("127.0.0.1") ||
        strncmp(arg, "127.0.0.1", (size_t)(colon - arg)) != 0)
        return -1;
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || port < 1 || port > 65535)
        return -1;
    opt->host = "127.0.0.1";
    opt->port = (int)port;
    return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, struct options *opt)
{
    int i;
    long v;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (val == NULL)
            return -1;
        i++;
        if (strcmp(a, "--connect") == 0) {
            if (parse_target(val, opt) != 0)
                return -1;
        } else if (strcmp(a, "--ca") == 0) {
            opt->ca = val;
        } else if (strcmp(a, "--cert") == 0) {
            opt->cert = val;
        } else if (strcmp(a, "--key") == 0) {
            opt->key = val;
        } else if (strcmp(a, "--path") == 0) {
            opt->path = val;
        } else if (strcmp(a, "--body") == 0) {
            opt->body = val;
        } else if (strcmp(a, "--server-name") == 0) {
            opt->server_name = val;
        } else if (strcmp(a, "--conns") == 0) {
            if (parse_long(val, 1, CONNS_MAX, &v) != 0)
                return -1;
            opt->conns = (int)v;
        } else if (strcmp(a, "--seconds") == 0) {
            if (parse_long(val, 1, SECONDS_MAX, &v) != 0)
                return -1;
            opt->seconds = (double)v;
        } else if (strcmp(a, "--count") == 0) {
            if (parse_long(val, 1, 100000000L, &v) != 0)
                return -1;
            opt->count = v;
        } else if (strcmp(a, "--expect") == 0) {
            if (parse_long(val, 100, 599, &v) != 0)
                return -1;
            opt->expect_status = (int)v;
        } else {
            return -1;
        }
    }
    if (opt->host == NULL || opt->ca == NULL || opt->cert == NULL ||
        opt->key == NULL || opt->path[0] != '/')
        return -1;
    return 0;
}

static SSL_CTX *make_ctx(const struct options *opt)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL)
        return NULL;
    /* The comparison is about full handshakes: TLS 1.3 only, P-256 key
     * exchange, and no session cache so nothing is ever resumed. */
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set1_groups_list(ctx, "P-256"))
        goto out_free_ctx;
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (SSL_CTX_load_verify_locations(ctx, opt->ca, NULL) != 1)
        goto out_free_ctx;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, opt->cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, opt->key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        goto out_free_ctx;
    return ctx;

out_free_ctx:
    SSL_CTX_free(ctx);
    return NULL;
}

static int open_socket(const struct sockaddr_in *addr)
{
    struct timeval tv = {IO_TIMEOUT_S, 0};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Finds the header block end; returns its length or 0 when incomplete. */
static size_t header_end(const char *buf, size_t n)
{
    size_t i;

    for (i = 0; i + 3 < n; i++) {
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    }
    return 0;
}

/* Content-Length of a header block, or -1 when absent or malformed. */
static long content_length(const char *hdr, size_t n)
{
    static const char name[] = "\r\ncontent-length:";
    size_t len = sizeof(name) - 1;
    size_t i;

    for (i = 0; i + len < n; i++) {
        if (strncasecmp(hdr + i, name, len) == 0) {
            long v = 0;
            size_t j = i + len;

            while (j < n && hdr[j] == ' ')
                j++;
            if (j >= n || hdr[j] < '0' || hdr[j] > '9')
                return -1;
            while (j < n && hdr[j] >= '0' && hdr[j] <= '9' && v < RESPONSE_MAX)
                v = v * 10 + (hdr[j++] - '0');
            return v;
        }
    }
    return -1;
}

static int parse_status(const char *buf, size_t n)
{
    /* "HTTP/1.x NNN" */
    if (n < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
        return -1;
    if (buf[9] < '1' || buf[9] > '5' || buf[10] < '0' || buf[10] > '9' ||
        buf[11] < '0' || buf[11] > '9')
        return -1;
    return (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
}

/* Reads the whole response; returns the HTTP status or -1. */
static int read_response(SSL *ssl, char *buf, size_t cap)
{
    size_t have = 0, hdr_len = 0;
    long body_len = -1;

    for (;;) {
        int r;

        if (hdr_len != 0 && body_len >= 0 && have >= hdr_len + (size_t)body_len)
            break;
        if (have == cap)
            return -1;
        r = SSL_read(ssl, buf + have, (int)(cap - have));
        if (r <= 0) {
            int e = SSL_get_error(ssl, r);

            /* Without a Content-Length the body ends at close. */
            if (hdr_len != 0 && body_len < 0 &&
                (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL))
                break;
            return -1;
        }
        have += (size_t)r;
        if (hdr_len == 0) {
            hdr_len = header_end(buf, have);
            if (hdr_len != 0)
                body_len = content_length(buf, hdr_len);
        }
    }
    return parse_status(buf, have);
}

static int one_checkin(struct shared *sh)
{
    char buf[RESPONSE_MAX];
    SSL *ssl = NULL;
    int fd, status, rc = -1;

    fd = open_socket(&sh->addr);
    if (fd < 0) {
        record_failure(sh, "connect");
        return -1;
    }
    ssl = SSL_new(sh->ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        record_failure(sh, "SSL_new");
        goto out_close;
    }
    if (sh->opt->server_name != NULL &&
        (SSL_set_tlsext_host_name(ssl, sh->opt->server_name) != 1 ||
         SSL_set1_host(ssl, sh->opt->server_name) != 1)) {
        record_failure(sh, "server name");
        goto out_close;
    }
    if (SSL_connect(ssl) != 1) {
        record_failure(sh, "handshake");
        goto out_close;
    }
    if (SSL_write(ssl, sh->request, (int)sh->request_len) !=
        (int)sh->request_len) {
        record_failure(sh, "write request");
        goto out_close;
    }
    status = read_response(ssl, buf, sizeof(buf));
    if (status != sh->opt->expect_status) {
        char what[64];

        snprintf(what, sizeof(what), "HTTP status %d", status);
        record_failure(sh, what);
        goto out_close;
    }
    SSL_shutdown(ssl);
    rc = 0;

out_close:
    SSL_free(ssl);
    close(fd);
    ERR_clear_error();
    return rc;
}

static int past_deadline(const struct timespec *deadline)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec > deadline->tv_sec ||
           (ts.tv_sec == deadline->tv_sec && ts.tv_nsec >= deadline->tv_nsec);
}

static void *worker(void *arg)
{
    struct shared *sh = arg;

    while (!past_deadline(&sh->deadline)) {
        if (sh->opt->count > 0 &&
            atomic_fetch_add(&sh->issued, 1) >= sh->opt->count)
            break;
        if (one_checkin(sh) == 0)
            atomic_fetch_add(&sh->ok, 1);
    }
    return NULL;
}

static int build_request(struct shared *sh)
{
    const struct options *opt = sh->opt;
    int n =
        snprintf(sh->request, sizeof(sh->request),
                 "POST %s HTTP/1.1\r\n"
                 "Host: %s:%d\r\n"
                 "Content-Type: application/json\r\n"
                 "Content-Length: %zu\r\n"
                 "Connection: close\r\n"
                 "\r\n"
                 "%s",
                 opt->path, opt->host, opt->port, strlen(opt->body), opt->body);

    if (n < 0 || (size_t)n >= sizeof(sh->request))
        return -1;
    sh->request_len = (size_t)n;
    return 0;
}

int main(int argc, char **argv)
{
    struct options opt = {.path = "/api/v1/checkin",
                          .body = default_body,
                          .conns = 8,
                          .seconds = 5,
                          .expect_status = 200};
    static struct shared sh;
    pthread_t threads[CONNS_MAX];
    double start, elapsed;
    long ok, failed;
    int i, started = 0;

    if (parse_args(argc, argv, &opt) != 0) {
        usage(stderr);
        return 2;
    }
    sh.opt = &opt;
    sh.addr.sin_family = AF_INET;
    sh.addr.sin_port = htons((uint16_t)opt.port);
    sh.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (build_request(&sh) != 0) {
        fprintf(stderr, "tls_checkin: request too large\n");
        return 2;
    }
    sh.ctx = make_ctx(&opt);
    if (sh.ctx == NULL) {
        fprintf(stderr, "tls_checkin: TLS set-up failed (CA, cert or key): ");
        ERR_print_errors_fp(stderr);
        return 2;
    }

    start = now_seconds();
    clock_gettime(CLOCK_MONOTONIC, &sh.deadline);
    sh.deadline.tv_sec += (time_t)opt.seconds;
    for (i = 0; i < opt.conns; i++) {
        if (pthread_create(&threads[i], NULL, worker, &sh) != 0)
            break;
        started++;
    }
    for (i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    elapsed = now_seconds() - start;
    SSL_CTX_free(sh.ctx);

    ok = atomic_load(&sh.ok);
    failed = atomic_load(&sh.failed);
    printf("checkins=%ld failures=%ld conns=%d seconds=%.3f rate=%.1f\n", ok,
           failed, started, elapsed, elapsed > 0 ? (double)ok / elapsed : 0.0);
    if (failed > 0)
        fprintf(stderr, "tls_checkin: first failure: %s\n", sh.first_reason);
    return (started == opt.conns && ok > 0 && failed == 0) ? 0 : 1;
}
