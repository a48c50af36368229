/*
 * Open-loop HTTP/1.1 load at a fixed rate, for the API benchmarks (bench/api_load.py
 * compiles and runs it).
 *
 * Why C: the Python generator shared the second core with the server and its own event
 * loop jitter landed in the figures; this one costs a few microseconds per request.
 *
 * Request i has an intended send time t0 + i / rate. When it is due it takes an idle
 * keep-alive connection, or waits in a FIFO for one; its latency is measured from the
 * intended time, so a server that stalls is charged for the queue it builds (no
 * coordinated omission). A timerfd wakes the loop at each intended time (no millisecond
 * rounding of epoll timeouts).
 *
 * Usage: api_openloop HOST PORT PATH RATE SECONDS CONNECTIONS [HEADER]...
 * Prints `key value` lines: sent, answered, errors, unanswered, status_NNN counts,
 * elapsed_s, achieved_rate, p50_ms p90_ms p99_ms p999_ms max_ms, then one
 * `second S count N max_ms M p99_ms P` line per second of intended send time (where the
 * tail is: a periodic stall shows as a regular pattern).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE 65536
#define GRACE_S 10.0

struct conn {
    int fd;
    int busy;
    int64_t request;   /* index of the request in flight */
    size_t used;       /* bytes buffered of the current response */
    char buf[BUF_SIZE];
};

static struct sockaddr_in server;
static char *request_bytes;
static size_t request_len;
static double *latency_ms;  /* per request; < 0 while unanswered */
static int *status_of;
static int64_t errors;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int open_conn(struct conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&server, sizeof server) < 0) {
        close(c->fd);
        return -1;
    }
    c->busy = 0;
    c->used = 0;
    return 0;
}

static int write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Length of the complete response at the start of buf, 0 if incomplete, -1 if unusable. */
static long complete_response(const char *buf, size_t used, int *status) {
    const char *end = memmem(buf, used, "\r\n\r\n", 4);
    if (end == NULL) return used >= BUF_SIZE ? -1 : 0;
    size_t head = (size_t)(end - buf) + 4;
    if (used < 12) return -1;
    *status = atoi(buf + 9);
    long body = 0;
    for (const char *p = buf; p < end; p++) {
        if ((p == buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
            body = strtol(p + 15, NULL, 10);
            break;
        }
    }
    if (head + (size_t)body > BUF_SIZE) return -1;
    return used >= head + (size_t)body ? (long)(head + (size_t)body) : 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double nearest_rank(const double *sorted, int64_t n, double p) {
    if (n == 0) return -1;
    int64_t i = (int64_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: %s HOST PORT PATH RATE SECONDS CONNECTIONS [HEADER]...\n",
                argv[0]);
        return 2;
    }
    const char *host = argv[1], *path = argv[3];
    int port = atoi(argv[2]);
    double rate = atof(argv[4]), seconds = atof(argv[5]);
    int nconn = atoi(argv[6]);
    memset(&server, 0, sizeof server);
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &server.sin_addr) != 1) {
        fprintf(stderr, "HOST must be an IPv4 address\n");
        return 2;
    }

    size_t cap = 4096;
    for (int i = 7; i < argc; i++) cap += strlen(argv[i]) + 2;
    request_bytes = malloc(cap + strlen(path));
    int len = sprintf(request_bytes, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n", path, host, port);
    for (int i = 7; i < argc; i++) len += sprintf(request_bytes + len, "%s\r\n", argv[i]);
    len += sprintf(request_bytes + len, "Accept: application/json\r\n\r\n");
    request_len = (size_t)len;

    int64_t total = (int64_t)(rate * seconds);
    latency_ms = malloc(sizeof(double) * (size_t)(total + 1));
    status_of = calloc((size_t)(total + 1), sizeof(int));
    for (int64_t i = 0; i < total; i++) latency_ms[i] = -1;

    int ep = epoll_create1(0);
    struct conn *conns = calloc((size_t)nconn, sizeof(struct conn));
    int *idle = malloc(sizeof(int) * (size_t)nconn);
    int nidle = 0;
    for (int i = 0; i < nconn; i++) {
        if (open_conn(&conns[i]) < 0) {
            perror("connect");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
        idle[nidle++] = i;
    }
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

    double interval_ns = 1e9 / rate;
    int64_t t0 = now_ns() + 50000000LL;
    int64_t deadline = t0 + (int64_t)((seconds + GRACE_S) * 1e9);
    int64_t dispatched = 0, answered = 0, failed = 0;
    struct epoll_event events[256];

    while (answered + failed < total && now_ns() < deadline) {
        int64_t now = now_ns();
        int64_t due = (int64_t)((double)(now - t0) / interval_ns) + 1;
        if (now < t0) due = 0;
        if (due > total) due = total;
        while (dispatched < due && nidle > 0) {
            struct conn *c = &conns[idle[--nidle]];
            c->busy = 1;
            c->request = dispatched++;
            c->used = 0;
            if (write_all(c->fd, request_bytes, request_len) < 0) {
                errors++;
                failed++;
                c->busy = 0;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                if (open_conn(c) == 0) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(c - conns)};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
                    idle[nidle++] = (int)(c - conns);
                }
            }
        }
        if (dispatched < total) {
            int64_t next = t0 + (int64_t)((double)due * interval_ns);
            struct itimerspec its = {0};
            its.it_value.tv_sec = next / 1000000000LL;
            its.it_value.tv_nsec = next % 1000000000LL;
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        int n = epoll_wait(ep, events, 256, 1000);
        for (int k = 0; k < n; k++) {
            uint32_t id = events[k].data.u32;
            if (id == UINT32_MAX) {
                uint64_t expirations;
                if (read(tfd, &expirations, sizeof expirations) < 0) { /* spurious */ }
                continue;
            }
            struct conn *c = &conns[id];
            ssize_t got = read(c->fd, c->buf + c->used, BUF_SIZE - c->used);
            if (got <= 0) {
                if (got < 0 && errno == EINTR) continue;
                /* The server closed it (an idle keep-alive timeout, or an error). An idle
                 * connection is already in the idle list: reopen it in place. */
                int was_busy = c->busy;
                if (was_busy) {
                    errors++;
                    failed++;
                }
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                if (open_conn(c) == 0) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = id};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
                    if (was_busy) idle[nidle++] = (int)id;
                } else if (!was_busy) {
                    fprintf(stderr, "reconnect failed\n");
                    return 1;
                }
                continue;
            }
            c->used += (size_t)got;
            int status = 0;
            long size = complete_response(c->buf, c->used, &status);
            if (size == 0 || !c->busy) continue;
            int64_t intended = t0 + (int64_t)((double)c->request * interval_ns);
            if (size > 0) {
                latency_ms[c->request] = (double)(now_ns() - intended) / 1e6;
                status_of[c->request] = status;
                answered++;
            } else {
                errors++;
                failed++;
            }
            c->busy = 0;
            c->used = 0;
            idle[nidle++] = (int)id;
        }
    }
    double elapsed = (double)(now_ns() - t0) / 1e9;

    double *sorted = malloc(sizeof(double) * (size_t)(answered + 1));
    int64_t m = 0;
    int counts[600] = {0};
    for (int64_t i = 0; i < total; i++) {
        if (latency_ms[i] >= 0) sorted[m++] = latency_ms[i];
        if (status_of[i] > 0 && status_of[i] < 600) counts[status_of[i]]++;
    }
    qsort(sorted, (size_t)m, sizeof(double), cmp_double);
    printf("sent %lld\nanswered %lld\nerrors %lld\nunanswered %lld\n", (long long)dispatched,
           (long long)answered, (long long)errors, (long long)(total - answered - failed));
    for (int s = 100; s < 600; s++)
        if (counts[s]) printf("status_%d %d\n", s, counts[s]);
    printf("offered_rate %.1f\nelapsed_s %.3f\nachieved_rate %.1f\n", rate, elapsed,
           elapsed > 0 ? (double)answered / (elapsed < seconds ? seconds : elapsed) : 0.0);
    printf("p50_ms %.3f\np90_ms %.3f\np99_ms %.3f\np999_ms %.3f\nmax_ms %.3f\n",
           nearest_rank(sorted, m, 50), nearest_rank(sorted, m, 90),
           nearest_rank(sorted, m, 99), nearest_rank(sorted, m, 99.9),
           nearest_rank(sorted, m, 100));

    /* Per second of intended send time: where in the run the tail sits. */
    int64_t per_second = (int64_t)rate;
    double *window = malloc(sizeof(double) * (size_t)(per_second + 1));
    for (int64_t start = 0; start < total; start += per_second) {
        int64_t w = 0;
        for (int64_t i = start; i < start + per_second && i < total; i++)
            if (latency_ms[i] >= 0) window[w++] = latency_ms[i];
        qsort(window, (size_t)w, sizeof(double), cmp_double);
        printf("second %lld count %lld max_ms %.2f p99_ms %.2f\n",
               (long long)(start / per_second), (long long)w, nearest_rank(window, w, 100),
               nearest_rank(window, w, 99));
    }
    return 0;
}
