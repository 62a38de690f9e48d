// One HTTP(S) GET read forward by its caller, on libcurl's multi interface. Pull, not push: libcurl runs only inside
// lc_http_wait_headers and lc_http_read, so a reader that stops asking stops the transfer (TCP's window is the
// backpressure) and memory holds at most what one lc_http_read call brings in. Retries, Range resumption and
// their checks are the caller's (ByteStream.swift's HTTPSource); this file only moves bytes and headers.
#define _GNU_SOURCE
#include "CLongCrawl.h"
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct lc_http {
    CURL *easy;
    CURLM *multi;
    unsigned char *data;
    size_t len, pos, cap;
    int body, done;
    CURLcode result;
    char range[128];
    long retry_after;
    char error[CURL_ERROR_SIZE];
    double last;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static size_t on_body(char *p, size_t size, size_t n, void *user) {
    lc_http *h = user;
    size_t bytes = size * n;
    if (h->pos == h->len) h->pos = h->len = 0;
    if (h->len + bytes > h->cap) {
        size_t cap = h->cap ? h->cap : 1 << 16;
        while (cap < h->len + bytes) cap *= 2;
        unsigned char *grown = realloc(h->data, cap);
        if (!grown) return 0;  // curl then fails the transfer with a write error
        h->data = grown;
        h->cap = cap;
    }
    memcpy(h->data + h->len, p, bytes);
    h->len += bytes;
    h->body = 1;
    h->last = now_ms();
    return bytes;
}

// Keeps Content-Range and Retry-After of the last response only (a redirect's headers come first).
static size_t on_header(char *p, size_t size, size_t n, void *user) {
    lc_http *h = user;
    size_t bytes = size * n;
    h->last = now_ms();
    if (bytes >= 5 && strncmp(p, "HTTP/", 5) == 0) { h->range[0] = 0; h->retry_after = -1; return bytes; }
    const char *colon = memchr(p, ':', bytes);
    if (!colon) return bytes;
    size_t key = colon - p;
    const char *v = colon + 1, *end = p + bytes;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    size_t vn = end - v;
    if (key == 13 && strncasecmp(p, "content-range", 13) == 0) {
        if (vn >= sizeof h->range) vn = sizeof h->range - 1;
        memcpy(h->range, v, vn);
        h->range[vn] = 0;
    } else if (key == 11 && strncasecmp(p, "retry-after", 11) == 0 && vn > 0 && vn < 10) {
        char digits[16];
        memcpy(digits, v, vn);
        digits[vn] = 0;
        char *stop;
        long s = strtol(digits, &stop, 10);
        if (*stop == 0 && s >= 0) h->retry_after = s;  // an HTTP-date instead counts as absent
    }
    return bytes;
}

lc_http *lc_http_open(const char *url, long long offset, long max_redirects, long connect_timeout_ms) {
    pthread_once(&curl_once, curl_init_once);
    lc_http *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->retry_after = -1;
    h->easy = curl_easy_init();
    h->multi = curl_multi_init();
    if (!h->easy || !h->multi) { lc_http_close(h); return NULL; }
    CURL *e = h->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, max_redirects);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "longcrawl");
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 65536L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->error);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, h);
    if (offset > 0) {
        // CURLOPT_RANGE, not RESUME_FROM: the caller checks the answer's Content-Range itself, and takes a 200.
        char range[32];
        snprintf(range, sizeof range, "%lld-", offset);
        curl_easy_setopt(e, CURLOPT_RANGE, range);
    }
    curl_multi_add_handle(h->multi, e);
    h->last = now_ms();
    return h;
}

// Runs the transfer until the body has begun (or has unread bytes) or it ends: 0, or 1 when nothing arrived for
// stall_ms. The stall clock starts at the call: time the reader spent elsewhere is not the server's.
static int pump(lc_http *h, int stall_ms, int want_body_bytes) {
    h->last = now_ms();
    while (!h->done && !(want_body_bytes ? h->len > h->pos : h->body)) {
        int running;
        CURLMcode mc = curl_multi_perform(h->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(h->multi, &left)))
            if (m->msg == CURLMSG_DONE) { h->done = 1; h->result = m->data.result; }
        if (mc != CURLM_OK && !h->done) { h->done = 1; h->result = CURLE_FAILED_INIT; }
        if (h->done || (want_body_bytes ? h->len > h->pos : h->body)) break;
        double waited = now_ms() - h->last;
        if (waited >= stall_ms) return 1;
        int wait = stall_ms - (int)waited;
        curl_multi_poll(h->multi, NULL, 0, wait < 200 ? wait : 200, NULL);
    }
    return 0;
}

int lc_http_wait_headers(lc_http *h, int stall_ms) {
    if (pump(h, stall_ms, 0)) return 1;
    // A failure after some body arrived is the reader's to see, once it has the bytes before it.
    return h->done && h->result != CURLE_OK && !h->body ? -1 : 0;
}

long lc_http_status(const lc_http *h) {
    long code = 0;
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

long long lc_http_content_length(const lc_http *h) {
    curl_off_t n = -1;
    curl_easy_getinfo(h->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &n);
    return n;
}

const char *lc_http_content_range(const lc_http *h) { return h->range; }
long lc_http_retry_after(const lc_http *h) { return h->retry_after; }

long lc_http_read(lc_http *h, unsigned char *buf, long cap, int stall_ms) {
    if (h->len == h->pos) {
        if (pump(h, stall_ms, 1)) return -2;
        if (h->len == h->pos) return h->result == CURLE_OK ? 0 : -1;
    }
    size_t n = h->len - h->pos < (size_t)cap ? h->len - h->pos : (size_t)cap;
    memcpy(buf, h->data + h->pos, n);
    h->pos += n;
    return (long)n;
}

int lc_http_result(const lc_http *h) { return h->done ? (int)h->result : 0; }

const char *lc_http_error(const lc_http *h) {
    return h->error[0] ? h->error : curl_easy_strerror(h->result);
}

void lc_http_close(lc_http *h) {
    if (!h) return;
    if (h->multi && h->easy) curl_multi_remove_handle(h->multi, h->easy);
    if (h->easy) curl_easy_cleanup(h->easy);
    if (h->multi) curl_multi_cleanup(h->multi);
    free(h->data);
    free(h);
}

int lc_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }
