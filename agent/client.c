/*
 * The agent's transport: libcurl over OpenSSL, TLS 1.3 only, the fleet CA
 * as the only trust root, HTTPS only, no redirects, bounded bodies.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "agent.h"

#define HTTP_CONNECT_SECONDS 10L
/* Fewer than HTTP_LOW_SPEED_BYTES a second for HTTP_LOW_SPEED_SECONDS
 * aborts a call. Calls with small bodies (JSON, envelopes, EST) also get
 * a total cap. */
#define HTTP_LOW_SPEED_BYTES    1024L
#define HTTP_LOW_SPEED_SECONDS  60L
#define HTTP_SMALL_CALL_SECONDS 60L

struct agent_http {
    CURL *curl;
    char base[AGENT_URL_MAX];
    char errbuf[CURL_ERROR_SIZE];
};

struct agent_http *http_open(const char *base_url, const char *ca_path,
                             const char *cert_path, const char *key_path)
{
    struct agent_http *h;
    size_t len = strlen(base_url);

    /* Refuse plain HTTP outright: every byte must cross mutual TLS. */
    if (strncmp(base_url, "https://", 8) != 0 || len >= AGENT_URL_MAX)
        return NULL;
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    memcpy(h->base, base_url, len + 1);
    while (len > 0 && h->base[len - 1] == '/')
        h->base[--len] = '\0';
    h->curl = curl_easy_init();
    if (h->curl == NULL) {
        free(h);
        return NULL;
    }
    curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, h->errbuf);
    curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->curl, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h->curl, CURLOPT_SSLVERSION,
                     (long)CURL_SSLVERSION_TLSv1_3);
    curl_easy_setopt(h->curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h->curl, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h->curl, CURLOPT_CAINFO, ca_path);
    curl_easy_setopt(h->curl, CURLOPT_CAPATH, NULL);
    /* A stalled or trickling hub is cut off by speed, not by total time:
     * an image near the hub's size limit over a slow link may need far
     * longer than any fixed cap, while a link that stops still ends. */
    curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT, HTTP_CONNECT_SECONDS);
    curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_LIMIT, HTTP_LOW_SPEED_BYTES);
    curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_TIME, HTTP_LOW_SPEED_SECONDS);
    if (cert_path != NULL && key_path != NULL) {
        curl_easy_setopt(h->curl, CURLOPT_SSLCERT, cert_path);
        curl_easy_setopt(h->curl, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(h->curl, CURLOPT_SSLKEY, key_path);
        curl_easy_setopt(h->curl, CURLOPT_SSLKEYTYPE, "PEM");
    }
    return h;
}

void http_close(struct agent_http *h)
{
    if (h == NULL)
        return;
    curl_easy_cleanup(h->curl);
    free(h);
}

const char *http_error(const struct agent_http *h)
{
    return h->errbuf[0] ? h->errbuf : "transport failed";
}

static size_t sink_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct http_sink *s = arg;
    size_t n = size * nmemb;

    if (s == NULL)
        return n;
    /* A hub that sends more than announced is cut off, not buffered. */
    if (n > s->max || s->got > s->max - n) {
        s->overflow = 1;
        return 0;
    }
    if (s->buf != NULL) {
        if (n > s->cap - s->len) {
            s->overflow = 1;
            return 0;
        }
        memcpy(s->buf + s->len, data, n);
        s->len += n;
    }
    if (s->fd >= 0) {
        size_t done = 0;

        while (done < n) {
            ssize_t w = write(s->fd, data + done, n - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return 0;
            done += (size_t)w;
        }
    }
    if (s->hash != NULL)
        iomt_sha256_update(s->hash, data, n);
    s->got += n;
    return n;
}

int http_call(struct agent_http *h, const char *method, const char *path,
              const char *content_type, const void *body, size_t body_len,
              const char *basic_user, const char *basic_pass,
              struct http_sink *sink, long *status)
{
    char url[AGENT_URL_MAX * 2];
    char ctype[128];
    struct curl_slist *headers = NULL;
    CURLcode cc;
    int n;

    *status = 0;
    h->errbuf[0] = '\0';
    n = snprintf(url, sizeof(url), "%s%s", h->base, path);
    if (n < 0 || (size_t)n >= sizeof(url))
        return -1;
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h->curl, CURLOPT_POST, 1L);
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)body_len);
    } else {
        curl_easy_setopt(h->curl, CURLOPT_HTTPGET, 1L);
    }
    if (content_type != NULL) {
        snprintf(ctype, sizeof(ctype), "Content-Type: %s", content_type);
        headers = curl_slist_append(headers, ctype);
    }
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h->curl, CURLOPT_URL, url);
    if (basic_user != NULL) {
        curl_easy_setopt(h->curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h->curl, CURLOPT_USERNAME, basic_user);
        curl_easy_setopt(h->curl, CURLOPT_PASSWORD, basic_pass);
    } else {
        curl_easy_setopt(h->curl, CURLOPT_USERNAME, NULL);
        curl_easy_setopt(h->curl, CURLOPT_PASSWORD, NULL);
    }
    /* Only a body streamed to a file may be large; it runs as long as it
     * keeps moving. */
    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT,
                     sink != NULL && sink->fd >= 0 ? 0L
                                                   : HTTP_SMALL_CALL_SECONDS);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, sink);

    cc = curl_easy_perform(h->curl);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);
    if (basic_user != NULL)
        curl_easy_setopt(h->curl, CURLOPT_PASSWORD, NULL);
    if (cc != CURLE_OK) {
        if (h->errbuf[0] == '\0')
            snprintf(h->errbuf, sizeof(h->errbuf), "%s",
                     curl_easy_strerror(cc));
        return -1;
    }
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, status);
    return 0;
}
