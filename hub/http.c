/*
 * The hub's HTTPS front end: one shared listening socket, N worker threads
 * each with its own event loop and TLS context, TLS driven directly on each
 * non-blocking socket, and a small strict HTTP/1.1 reader that bounds every
 * header and streams large uploads to disk instead of memory.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/conf.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "hub.h"
#include "store.h"

#define HEADER_MAX       (16 * 1024)
#define HEADER_LINES_MAX 64
#define READ_TIMEOUT     30
#define WRITE_TIMEOUT    120

struct hub_worker {
    const struct hub_config *cfg;
    struct event_base *base;
    struct event *listen_ev;
    struct event *stop_ev;
    struct event *flush_ev;
    struct hub_req *defer_head;
    hub_flush_fn flush;
    OSSL_LIB_CTX *libctx;
    SSL_CTX *ssl_ctx;
    struct store *store;
    pthread_t thread;
    int started;
};

enum conn_state { CS_HEADERS, CS_BODY, CS_DEFERRED, CS_WRITING };

struct hub_conn {
    struct hub_worker *w;
    evutil_socket_t fd;
    SSL *ssl;
    struct event *ev;     /* the socket: read or write interest, timeout */
    short armed;          /* what ev waits for now, 0 when not pending */
    short want;           /* the last read stopped: EV_READ/EV_WRITE, -1 EOF */
    int running;          /* inside conn_io_cb: it writes what is queued */
    int handshaking;      /* the TLS handshake has not completed */
    struct evbuffer *in;  /* plaintext read, not yet parsed */
    struct evbuffer *out; /* plaintext answer, not yet written */
    enum conn_state state;
    int keep_alive; /* this request lets the connection live on */
    int id_checked; /* identity is read once per connection */
    int in_request; /* a request started and has not been answered */
    int expect_continue;
    enum hub_body mode;
    uint64_t remaining; /* body bytes still to read */
    struct evbuffer *body;
    struct hub_req req;
    struct iomt_identity id;
    int has_id;
};

static void conn_process(struct hub_conn *c);

static const char *status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

/* Splits "HOST:PORT" into an IPv4 address and a port. */
static int parse_listen(const char *text, struct sockaddr_in *sa, char *why,
                        size_t why_cap)
{
    const char *colon = strrchr(text, ':');
    char host[64];
    size_t host_len;
    long port = -1;
    const char *p;

    if (text[0] == '[') {
        snprintf(why, why_cap,
                 "IPv6 addresses are not supported; use "
                 "127.0.0.1:PORT");
        return -1;
    }
    if (colon == NULL || colon == text) {
        snprintf(why, why_cap, "expected ADDRESS:PORT, e.g. 127.0.0.1:8443");
        return -1;
    }
    host_len = (size_t)(colon - text);
    if (host_len >= sizeof(host)) {
        snprintf(why, why_cap, "address too long");
        return -1;
    }
    memcpy(host, text, host_len);
    host[host_len] = 0;
    for (p = colon + 1; *p >= '0' && *p <= '9' && port <= 65535; p++)
        port = (port < 0 ? 0 : port * 10) + (*p - '0');
    if (*p != 0 || port < 0 || port > 65535) {
        snprintf(why, why_cap, "port must be a number in 0..65535");
        return -1;
    }
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0)
        sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        snprintf(why, why_cap,
                 "address must be an IPv4 address or localhost, not \"%s\"",
                 host);
        return -1;
    }
    return 0;
}

int hub_listen(const char *listen_addr, int allow_remote, int *fd_out,
               int *port_out, char *why, size_t why_cap)
{
    struct sockaddr_in sa;
    socklen_t sa_len = sizeof(sa);
    int fd, one = 1;

    if (parse_listen(listen_addr, &sa, why, why_cap) != 0)
        return HUB_LISTEN_USAGE;
    /* Devices and operators reach a hub through the hospital's own
     * front end; listening on every interface by accident would expose
     * enrolment to the whole network. */
    if ((ntohl(sa.sin_addr.s_addr) >> 24) != 127 && !allow_remote) {
        snprintf(why, why_cap,
                 "not a loopback address; add --allow-remote to mean it");
        return HUB_LISTEN_USAGE;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, why_cap, "socket: %s", strerror(errno));
        return HUB_LISTEN_FAILED;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(fd, 1024) != 0 || evutil_make_socket_nonblocking(fd) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sa_len) != 0) {
        snprintf(why, why_cap, "%s", strerror(errno));
        close(fd);
        return HUB_LISTEN_FAILED;
    }
    *fd_out = fd;
    *port_out = ntohs(sa.sin_port);
    return 0;
}

/* Takes a request off its worker's group-commit queue. */
static void undefer(struct hub_conn *c)
{
    struct hub_req **pp = &c->w->defer_head;

    while (*pp != NULL && *pp != &c->req)
        pp = &(*pp)->defer_next;
    if (*pp != NULL)
        *pp = c->req.defer_next;
    c->req.defer_next = NULL;
    c->req.deferred = 0;
}

static void conn_free(struct hub_conn *c)
{
    if (c->req.deferred)
        undefer(c);
    if (c->in_request)
        api_abort(&c->req);
    if (c->ev != NULL)
        event_free(c->ev);
    SSL_free(c->ssl);
    if (c->fd >= 0)
        evutil_closesocket(c->fd);
    if (c->in != NULL)
        evbuffer_free(c->in);
    if (c->out != NULL)
        evbuffer_free(c->out);
    if (c->body != NULL)
        evbuffer_free(c->body);
    free(c);
}

static void reply_headers(struct hub_req *req, int status,
                          const char *content_type, uint64_t len)
{
    struct hub_conn *c = req->conn;
    struct evbuffer *out = c->out;
    const char *allow = status == 405 ? req->allow : NULL;
    char head[512];
    int n;

    /* Answering before the body was read: the rest of it is unread, so
     * the connection cannot carry another request. */
    if ((c->state == CS_HEADERS && req->content_length > 0) ||
        (c->state == CS_BODY && c->remaining > 0))
        c->keep_alive = 0;
    /* One formatted block, one buffer append. */
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\nContent-Length: %llu\r\n"
                 "Connection: %s\r\n%s%s%s%s%s%s"
                 "Cache-Control: no-store\r\n\r\n",
                 status, status_text(status), (unsigned long long)len,
                 c->keep_alive ? "keep-alive" : "close",
                 content_type != NULL ? "Content-Type: " : "",
                 content_type != NULL ? content_type : "",
                 content_type != NULL ? "\r\n" : "",
                 allow != NULL ? "Allow: " : "", allow != NULL ? allow : "",
                 allow != NULL ? "\r\n" : "");
    if (n > 0 && (size_t)n < sizeof(head)) {
        evbuffer_add(out, head, (size_t)n);
    } else {
        /* Our media types are short constants; should one ever not fit,
         * the answer goes out without it rather than not at all. */
        c->keep_alive = 0;
        evbuffer_add_printf(out,
                            "HTTP/1.1 %d %s\r\nContent-Length: %llu\r\n"
                            "Connection: close\r\n\r\n",
                            status, status_text(status),
                            (unsigned long long)len);
    }
    req->replied = status;
    c->state = CS_WRITING;
    c->in_request = 0;
}

void hub_defer(struct hub_req *req, hub_flush_fn flush)
{
    struct hub_worker *w = req->conn->w;

    req->deferred = 1;
    req->defer_next = w->defer_head;
    w->defer_head = req;
    w->flush = flush;
    /* Joins the end of this loop turn's active events; a second call
     * while it is pending changes nothing. */
    event_active(w->flush_ev, EV_READ, 0);
}

/* Hands the queued requests to the flush, at most HUB_DEFER_MAX at a time,
 * oldest first. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hub_worker *w = arg;
    struct hub_req *batch[HUB_DEFER_MAX], *r;
    size_t n = 0, i;

    (void)fd;
    (void)what;
    while (w->defer_head != NULL) {
        for (n = 0, r = w->defer_head; r != NULL && n < HUB_DEFER_MAX;
             r = r->defer_next)
            batch[n++] = r;
        /* The list is newest first: answer in arrival order. */
        for (i = 0; i < n / 2; i++) {
            r = batch[i];
            batch[i] = batch[n - 1 - i];
            batch[n - 1 - i] = r;
        }
        for (i = 0; i < n; i++)
            undefer(batch[i]->conn);
        w->flush(batch, n);
        for (i = 0; i < n; i++) {
            if (!batch[i]->replied)
                hub_reply_error(batch[i], 500, "internal", "", "no answer");
        }
    }
}

/* An answer is written in the loop turn that made it, not after epoll
 * reports the socket writable: one epoll_ctl and epoll_wait round less
 * for every answer. When the socket is full, the write side arms the
 * event as usual. Run from the loop, not here: the caller may still use
 * the request. */
static void write_now(struct hub_conn *c)
{
    if (!c->running)
        event_active(c->ev, EV_WRITE, 1);
}

void hub_reply(struct hub_req *req, int status, const char *content_type,
               const void *body, size_t len)
{
    if (req->replied)
        return;
    reply_headers(req, status, body != NULL ? content_type : NULL,
                  body != NULL ? len : 0);
    if (body != NULL && len > 0)
        evbuffer_add(req->conn->out, body, len);
    write_now(req->conn);
}

void hub_reply_file(struct hub_req *req, int status, const char *content_type,
                    int fd, uint64_t size)
{
    struct evbuffer *out;

    if (req->replied) {
        close(fd);
        return;
    }
    reply_headers(req, status, content_type, size);
    out = req->conn->out;
    if (size > 0 && evbuffer_add_file(out, fd, 0, (ev_off_t)size) != 0) {
        /* Headers are out already; the short body tells the client. */
        req->conn->keep_alive = 0;
        close(fd);
    } else if (size == 0) {
        close(fd);
    }
    write_now(req->conn);
}

void hub_reply_json(struct hub_req *req, int status, json_t *obj)
{
    char *text;

    if (obj == NULL) {
        hub_reply_error(req, 500, "internal", "", "out of memory");
        return;
    }
    text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (text == NULL) {
        hub_reply_error(req, 500, "internal", "", "out of memory");
        return;
    }
    hub_reply(req, status, "application/json", text, strlen(text));
    free(text);
}

void hub_reply_error(struct hub_req *req, int status, const char *code,
                     const char *field, const char *message)
{
    json_t *obj;
    char *text;

    if (req->replied)
        return;
    obj = json_pack("{s:s, s:s, s:s}", "error", code, "field",
                    field != NULL ? field : "", "message",
                    message != NULL ? message : "");
    text = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (text == NULL) {
        hub_reply(req, status, NULL, NULL, 0);
        return;
    }
    hub_reply(req, status, "application/json", text, strlen(text));
    free(text);
    if (status >= 400)
        hub_log("info", "refused", "status=%d error=%s field=%s path=%s",
                status, code, field != NULL ? field : "", req->path);
}

static int parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (*s == 0)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

static void trim(char **start, char *end)
{
    while (**start == ' ' || **start == '\t')
        (*start)++;
    while (end > *start && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = 0;
}

static int copy_field(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);

    if (n >= cap)
        return -1;
    memcpy(dst, src, n + 1);
    return 0;
}

/* Parses one header line; returns 0, or an HTTP status for a bad line. */
static int parse_header(struct hub_conn *c, char *line, int *seen_length)
{
    struct hub_req *r = &c->req;
    char *colon = strchr(line, ':'), *value;

    if (colon == NULL || colon == line)
        return 400;
    *colon = 0;
    value = colon + 1;
    trim(&value, value + strlen(value));
    if (strcasecmp(line, "Content-Length") == 0) {
        uint64_t n;

        /* Two lengths are the request-smuggling shape: refuse them. */
        if (*seen_length || parse_uint(value, &n) != 0)
            return 400;
        *seen_length = 1;
        r->content_length = n;
    } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
        return 411;
    } else if (strcasecmp(line, "Content-Type") == 0) {
        if (copy_field(r->content_type, sizeof(r->content_type), value))
            return 400;
    } else if (strcasecmp(line, "Authorization") == 0) {
        if (copy_field(r->authorization, sizeof(r->authorization), value))
            return 400;
    } else if (strcasecmp(line, "Connection") == 0) {
        if (strcasecmp(value, "close") == 0)
            c->keep_alive = 0;
        else if (strcasecmp(value, "keep-alive") == 0)
            c->keep_alive = 1;
    } else if (strcasecmp(line, "Expect") == 0) {
        if (strcasecmp(value, "100-continue") != 0)
            return 400;
        c->expect_continue = 1;
    }
    return 0;
}

/* RFC 9110 method token: upper-case letters only here, at most 16. */
static int method_token_ok(const char *m)
{
    size_t n = 0;

    for (; *m != 0; m++, n++) {
        if (*m < 'A' || *m > 'Z' || n >= 16)
            return 0;
    }
    return n > 0;
}

static int parse_request_line(struct hub_conn *c, char *line)
{
    struct hub_req *r = &c->req;
    char *sp1 = strchr(line, ' '), *sp2, *query;

    if (sp1 == NULL)
        return 400;
    *sp1 = 0;
    sp2 = strchr(sp1 + 1, ' ');
    if (sp2 == NULL)
        return 400;
    *sp2 = 0;
    if (strcmp(line, "GET") == 0)
        r->method = HUB_GET;
    else if (strcmp(line, "POST") == 0)
        r->method = HUB_POST;
    else if (strcmp(line, "PUT") == 0)
        r->method = HUB_PUT;
    else if (method_token_ok(line))
        r->method = HUB_OTHER; /* routing answers 405 or 404 */
    else
        return 400;
    if (strcmp(sp2 + 1, "HTTP/1.1") == 0)
        c->keep_alive = 1;
    else if (strcmp(sp2 + 1, "HTTP/1.0") == 0)
        c->keep_alive = 0;
    else
        return 400;
    query = strchr(sp1 + 1, '?');
    if (query != NULL)
        *query = 0;
    if (sp1[1] != '/' || copy_field(r->path, sizeof(r->path), sp1 + 1))
        return 400;
    return 0;
}

/* Returns 0 when the header block parsed, or an HTTP status. */
static int parse_head(struct hub_conn *c, char *head)
{
    char *line = head, *eol;
    int lines = 0, seen_length = 0, status;

    eol = strstr(line, "\r\n");
    if (eol == NULL)
        return 400;
    *eol = 0;
    status = parse_request_line(c, line);
    if (status != 0)
        return status;
    for (line = eol + 2; *line != 0; line = eol + 2) {
        eol = strstr(line, "\r\n");
        if (eol == NULL || ++lines > HEADER_LINES_MAX)
            return eol == NULL ? 400 : 431;
        *eol = 0;
        if (memchr(line, 0, (size_t)(eol - line)) != NULL)
            return 400;
        status = parse_header(c, line, &seen_length);
        if (status != 0)
            return status;
    }
    return 0;
}

static void req_reset(struct hub_conn *c)
{
    struct hub_req *r = &c->req;

    memset(r, 0, sizeof(*r));
    r->conn = c;
    r->cfg = c->w->cfg;
    r->store = c->w->store;
    r->up_fd = -1;
    c->mode = HUB_BODY_NONE;
    c->remaining = 0;
    c->expect_continue = 0;
    if (c->body != NULL)
        evbuffer_drain(c->body, evbuffer_get_length(c->body));
}

static void read_identity(struct hub_conn *c)
{
    struct iomt_err err = {0};
    SSL *ssl;

    if (c->id_checked)
        return;
    c->id_checked = 1;
    ssl = c->ssl;
    c->has_id =
        ssl != NULL && iomt_pki_peer_identity(ssl, &c->id, &err) == IOMT_OK;
}

static void refuse_head(struct hub_conn *c, int status)
{
    static const char *const msg[] = {"bad request", "header too large",
                                      "method not implemented",
                                      "chunked bodies need Content-Length"};
    const char *m = status == 431   ? msg[1]
                    : status == 501 ? msg[2]
                    : status == 411 ? msg[3]
                                    : msg[0];

    c->keep_alive = 0;
    c->req.content_length = 1; /* whatever follows is not read */
    hub_reply_error(&c->req, status, "http", "request", m);
}

/* Headers are complete: authenticate, route, and set up the body. */
static void start_request(struct hub_conn *c)
{
    struct hub_req *r = &c->req;
    size_t mem_limit = 0;
    enum hub_body mode;

    read_identity(c);
    r->has_id = c->has_id;
    if (c->has_id)
        r->id = c->id;
    c->in_request = 1;
    mode = api_begin(r, &mem_limit);
    if (r->replied)
        return;
    if (mode == HUB_BODY_NONE && r->content_length > 0) {
        hub_reply_error(r, 400, "http", "body", "this call takes no body");
        return;
    }
    if (mode == HUB_BODY_MEM && r->content_length > mem_limit) {
        hub_reply_error(r, 413, "too_large", "body", "body over the limit");
        return;
    }
    if (mode == HUB_BODY_STREAM && r->content_length > r->cfg->image_max) {
        api_abort(r);
        hub_reply_error(r, 413, "too_large", "body", "image over the limit");
        return;
    }
    c->mode = mode;
    c->remaining = r->content_length;
    c->state = CS_BODY;
    if (c->expect_continue && c->remaining > 0)
        evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

/* Returns 1 when a request started, 0 when more bytes are needed. */
static int read_head(struct hub_conn *c, struct evbuffer *in)
{
    char head[HEADER_MAX + 1];
    struct evbuffer_ptr end;
    size_t head_len;
    int status;

    end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0) {
        /* A head ended by bare line feeds would otherwise wait for a CRLF
         * that never comes, holding the connection until the idle timeout;
         * peers that disagree on line ends are how requests get smuggled. */
        if (evbuffer_search(in, "\n\n", 2, NULL).pos >= 0) {
            req_reset(c);
            refuse_head(c, 400);
            return 1;
        }
        if (evbuffer_get_length(in) > HEADER_MAX) {
            req_reset(c);
            refuse_head(c, 431);
            return 1;
        }
        return 0;
    }
    head_len = (size_t)end.pos + 4;
    req_reset(c);
    if (head_len > HEADER_MAX) {
        refuse_head(c, 431);
        return 1;
    }
    if (evbuffer_remove(in, head, head_len) != (int)head_len) {
        refuse_head(c, 400);
        return 1;
    }
    head[head_len - 2] = 0; /* keeps the last header's CRLF */
    status = parse_head(c, head);
    if (status != 0) {
        refuse_head(c, status);
        return 1;
    }
    start_request(c);
    return 1;
}

static void read_body(struct hub_conn *c, struct evbuffer *in)
{
    size_t avail = evbuffer_get_length(in);
    size_t take = avail < c->remaining ? avail : (size_t)c->remaining;

    if (c->mode == HUB_BODY_MEM) {
        if (c->body == NULL)
            c->body = evbuffer_new();
        if (c->body == NULL ||
            evbuffer_remove_buffer(in, c->body, take) != (int)take) {
            c->keep_alive = 0;
            hub_reply_error(&c->req, 500, "internal", "", "out of memory");
            return;
        }
    } else {
        while (take > 0) {
            struct evbuffer_iovec vec;
            size_t n;

            if (evbuffer_peek(in, (ev_ssize_t)take, NULL, &vec, 1) < 1)
                break;
            n = vec.iov_len < take ? vec.iov_len : take;
            if (api_stream(&c->req, vec.iov_base, n) != 0) {
                c->keep_alive = 0;
                api_abort(&c->req);
                hub_reply_error(&c->req, 500, "storage", "image",
                                "could not store the image");
                return;
            }
            evbuffer_drain(in, n);
            c->remaining -= n;
            take -= n;
        }
        take = 0;
    }
    c->remaining -= take;
    if (c->remaining > 0)
        return;
    if (c->mode == HUB_BODY_MEM) {
        c->req.body_len = evbuffer_get_length(c->body);
        c->req.body = c->req.body_len ? evbuffer_pullup(c->body, -1) : NULL;
    }
    api_finish(&c->req);
    if (c->req.deferred)
        c->state = CS_DEFERRED;
    else if (!c->req.replied)
        hub_reply_error(&c->req, 500, "internal", "", "no answer");
}

static void conn_process(struct hub_conn *c)
{
    struct evbuffer *in = c->in;

    for (;;) {
        if (c->state == CS_HEADERS) {
            if (!read_head(c, in))
                return;
        } else if (c->state == CS_BODY) {
            if (evbuffer_get_length(in) == 0 && c->remaining > 0)
                return;
            read_body(c, in);
            if (c->state == CS_BODY)
                return;
        } else {
            return; /* deferred or writing: wait for the answer */
        }
    }
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg);

/* Waits for what (EV_READ or EV_WRITE) with its timeout, or for nothing
 * (0) while a deferred answer is pending. */
static int conn_arm(struct hub_conn *c, short what)
{
    struct timeval tv = {what == EV_WRITE ? WRITE_TIMEOUT : READ_TIMEOUT, 0};

    if (c->armed == what)
        return 0;
    if (c->armed != 0)
        event_del(c->ev);
    c->armed = 0;
    if (what == 0)
        return 0;
    if (event_assign(c->ev, c->w->base, c->fd, what, conn_io_cb, c) != 0 ||
        event_add(c->ev, &tv) != 0)
        return -1;
    c->armed = what;
    return 0;
}

static void log_tls_error(void)
{
    unsigned long e = ERR_peek_last_error();
    char reason[160];

    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof(reason));
        hub_log("info", "tls_error", "reason=\"%s\"", reason);
    }
    ERR_clear_error();
}

/* After an SSL call returned r: the event to wait for, or -1 when the
 * connection is over (error, or the peer closed it). */
static int ssl_wait(struct hub_conn *c, int r)
{
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        return EV_READ;
    case SSL_ERROR_WANT_WRITE:
        return EV_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return -1;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        return -1;
    case SSL_ERROR_SSL:
        /* A peer that just closes the socket: a request cut short is
         * never processed (its body is incomplete), so this is not an
         * attack on the hub, only an end. */
        if (ERR_GET_REASON(ERR_peek_last_error()) ==
            SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            return -1;
        }
        log_tls_error();
        return -1;
    default:
        log_tls_error();
        return -1;
    }
}

/* Encrypts and sends the answer: 0 when all is out, EV_READ or EV_WRITE
 * to wait for, -1 when the connection is over. */
static int send_out(struct hub_conn *c)
{
    while (evbuffer_get_length(c->out) > 0) {
        struct evbuffer_iovec vec;
        int n, r;

        if (evbuffer_peek(c->out, 16384, NULL, &vec, 1) < 1)
            return -1;
        n = vec.iov_len > 16384 ? 16384 : (int)vec.iov_len;
        r = SSL_write(c->ssl, vec.iov_base, n);
        if (r <= 0)
            return ssl_wait(c, r);
        evbuffer_drain(c->out, (size_t)r);
    }
    return 0;
}

/* Reads and decrypts up to about 64 KiB: 1 when something came in,
 * EV_READ or EV_WRITE to wait for, -1 when the connection is over. The
 * cap keeps one fast sender from holding the worker. */
static int recv_in(struct hub_conn *c)
{
    size_t got = 0;

    while (got < 64 * 1024) {
        struct evbuffer_iovec vec;
        int r;

        if (evbuffer_reserve_space(c->in, 16384, &vec, 1) < 1)
            return -1;
        r = SSL_read(c->ssl, vec.iov_base,
                     vec.iov_len > 16384 ? 16384 : (int)vec.iov_len);
        if (r <= 0) {
            int wait = ssl_wait(c, r);

            if (got == 0)
                return wait;
            /* Parse what came first; the next read waits for this. */
            c->want = (short)wait;
            return 1;
        }
        vec.iov_len = (size_t)r;
        if (evbuffer_commit_space(c->in, &vec, 1) != 0)
            return -1;
        got += (size_t)r;
        /* Nothing left inside OpenSSL: parse before asking the socket,
         * which for a whole request would only say EAGAIN. */
        if (!SSL_has_pending(c->ssl))
            break;
    }
    return 1;
}

/*
 * Moves the connection on as far as it can: writes what is queued, starts
 * the next request on a kept-alive connection, parses what was read and
 * reads more. Nothing is read while an answer is pending or going out,
 * so a client cannot pile up requests in memory behind a slow one.
 */
static void conn_run(struct hub_conn *c)
{
    int turns, r = 0;

    for (turns = 0; turns < 64; turns++) {
        r = send_out(c);
        if (r != 0)
            break;
        if (c->state == CS_WRITING) {
            if (!c->keep_alive) {
                conn_free(c);
                return;
            }
            c->state = CS_HEADERS;
            req_reset(c);
        }
        if (c->state == CS_DEFERRED)
            break; /* r == 0: the flush answers and wakes it */
        conn_process(c);
        if (c->state == CS_WRITING || c->state == CS_DEFERRED ||
            evbuffer_get_length(c->out) > 0)
            continue;
        if (c->want != 0) {
            r = c->want;
            c->want = 0;
            break;
        }
        r = recv_in(c);
        if (r != 1)
            break;
    }
    c->running = 0;
    if (turns == 64) {
        /* Still going after many turns: let the other connections run. */
        event_active(c->ev, EV_WRITE, 1);
        return;
    }
    if (r < 0 || conn_arm(c, (short)r) != 0)
        conn_free(c);
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hub_conn *c = arg;
    int r;

    (void)fd;
    /* The event is not persistent: once run, it waits for nothing. */
    c->armed = 0;
    if (what & EV_TIMEOUT) {
        conn_free(c);
        return;
    }
    if (c->handshaking) {
        r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            r = ssl_wait(c, r);
            if (r < 0 || conn_arm(c, (short)r) != 0)
                conn_free(c);
            return;
        }
        c->handshaking = 0;
    }
    c->running = 1;
    conn_run(c);
}

/* One connection per wake-up: the socket is shared and level-triggered,
 * so what is left wakes a worker again, and no worker asks the kernel
 * once more only to hear EAGAIN. */
static void accept_cb(evutil_socket_t listen_fd, short what, void *arg)
{
    struct hub_worker *w = arg;
    struct hub_conn *c;
    int fd, one = 1;

    (void)what;
    fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return; /* another worker took it, or the client gave up */
    /* Small answers must not wait for Nagle and delayed ACKs. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        evutil_closesocket(fd);
        return;
    }
    c->w = w;
    c->fd = fd;
    c->handshaking = 1;
    c->ssl = SSL_new(w->ssl_ctx);
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    c->ev = event_new(w->base, fd, EV_READ, conn_io_cb, c);
    req_reset(c);
    /* The answer is queued in an evbuffer whose chains may move between
     * a refused write and its retry. */
    if (c->ssl == NULL || c->in == NULL || c->out == NULL || c->ev == NULL ||
        SSL_set_fd(c->ssl, fd) != 1) {
        ERR_clear_error();
        conn_free(c);
        return;
    }
    SSL_set_mode(c->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_accept_state(c->ssl);
    if (conn_arm(c, EV_READ) != 0)
        conn_free(c);
}

/* A library context that reads the system OpenSSL configuration, so a
 * provider policy set there (FIPS, say) holds for the hub's TLS as well. */
static OSSL_LIB_CTX *worker_libctx(void)
{
    OSSL_LIB_CTX *libctx = OSSL_LIB_CTX_new();
    char *conf = CONF_get1_default_config_file();

    if (libctx != NULL && conf != NULL && access(conf, R_OK) == 0 &&
        OSSL_LIB_CTX_load_config(libctx, conf) != 1) {
        OSSL_LIB_CTX_free(libctx);
        libctx = NULL;
    }
    OPENSSL_free(conf);
    ERR_clear_error();
    return libctx;
}

/* Batches event changes: a TLS handshake flips read and write interest
 * several times, and each flip would otherwise be an epoll_ctl call. */
static struct event_base *new_base(void)
{
    struct event_config *ec = event_config_new();
    struct event_base *base;

    if (ec == NULL)
        return NULL;
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    base = event_base_new_with_config(ec);
    event_config_free(ec);
    return base;
}

/* Runs inside the worker's loop. A loopbreak sent from another thread
 * before the loop starts is forgotten (the loop clears it on entry); an
 * activated event is not, so stopping works at any moment. */
static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct hub_worker *w = arg;

    (void)fd;
    (void)what;
    event_base_loopbreak(w->base);
}

struct hub_worker *hub_worker_new(const struct hub_config *cfg, int listen_fd)
{
    struct hub_worker *w = calloc(1, sizeof(*w));
    struct iomt_err err = {0};

    if (w == NULL)
        return NULL;
    w->cfg = cfg;
    /* One OpenSSL library context and TLS context per worker: OpenSSL 3
     * takes shared locks on every algorithm fetch and chain check, and
     * threads sharing them spent ~7% of each check-in queueing. */
    w->libctx = worker_libctx();
    if (w->libctx == NULL || iomt_pki_tls_server_ctx_ex(
                                 w->libctx, cfg->ca_cert_path, cfg->cert_path,
                                 cfg->key_path, &w->ssl_ctx, &err) != IOMT_OK) {
        hub_log("error", "tls", "msg=\"%s\"", err.msg);
        goto out_fail;
    }
    /* A check-in is half a dozen TLS records from the client; read ahead
     * takes them in one read each time instead of a header and a body
     * read per record (nginx sets it too). */
    SSL_CTX_set_read_ahead(w->ssl_ctx, 1);
    w->base = new_base();
    w->stop_ev = w->base != NULL ? event_new(w->base, -1, 0, stop_cb, w) : NULL;
    w->flush_ev =
        w->base != NULL ? event_new(w->base, -1, 0, flush_cb, w) : NULL;
    if (w->stop_ev == NULL || w->flush_ev == NULL)
        goto out_fail;
    if (store_open(cfg->db_path, 1, &w->store, &err) != IOMT_OK) {
        hub_log("error", "store_open", "msg=\"%s\"", err.msg);
        goto out_fail;
    }
    /* The socket already listens. Every worker waits on it, and the
     * kernel hands each connection to the one that accepts first. */
    w->listen_ev =
        event_new(w->base, listen_fd, EV_READ | EV_PERSIST, accept_cb, w);
    if (w->listen_ev == NULL || event_add(w->listen_ev, NULL) != 0)
        goto out_fail;
    return w;
out_fail:
    hub_worker_free(w);
    return NULL;
}

static void *worker_main(void *arg)
{
    struct hub_worker *w = arg;

    event_base_dispatch(w->base);
    return NULL;
}

int hub_worker_start(struct hub_worker *w)
{
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return -1;
    w->started = 1;
    return 0;
}

void hub_worker_stop(struct hub_worker *w)
{
    if (w == NULL || !w->started)
        return;
    event_active(w->stop_ev, EV_READ, 0);
    pthread_join(w->thread, NULL);
    w->started = 0;
}

void hub_worker_free(struct hub_worker *w)
{
    if (w == NULL)
        return;
    hub_worker_stop(w);
    if (w->listen_ev != NULL)
        event_free(w->listen_ev);
    if (w->stop_ev != NULL)
        event_free(w->stop_ev);
    if (w->flush_ev != NULL)
        event_free(w->flush_ev);
    if (w->base != NULL)
        event_base_free(w->base);
    store_close(w->store);
    SSL_CTX_free(w->ssl_ctx);
    OSSL_LIB_CTX_free(w->libctx);
    free(w);
}
