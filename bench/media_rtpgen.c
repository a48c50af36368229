/*
 * RTP load generator and receiver for bench/media_relay.py (which compiles and runs it).
 *
 * Why C, and why kernel timestamps: the Python sender and receiver shared one core, and
 * the receiver read its clock after its own wake-up, so its scheduling delay was in every
 * latency sample. Here the send time is read (CLOCK_REALTIME) just before sendto, and the
 * arrival time is the kernel's (SO_TIMESTAMPNS: stamped when the datagram reaches the
 * receiving socket, CLOCK_REALTIME too), so neither end's scheduling is in a sample: what
 * is left is the path between the two sockets, i.e. the relay and the kernel's delivery.
 * The receiver drains its sockets with recvmmsg once per millisecond, as late as it
 * likes; the stamps do not change.
 *
 * Pacing: each stream sends one packet per 20 ms at its own random phase (a seeded
 * generator: the same phases in every run), as a real set of calls does, so the load
 * is spread evenly instead of arriving in bursts per millisecond slot. A clock_nanosleep
 * (absolute, 1 ns timer slack) waits for the next due packet. A packet sent late is still
 * stamped when it is sent; the lag is reported separately (pacing quality).
 *
 * `QUANTUM_US` > 0 instead releases packets on a grid of that many microseconds (each one
 * at the first grid point at or after its due time): 1000 reproduces the bursts of the
 * old Python sender (40 packets at once per millisecond at 40,000 pps), to show what
 * the arrival pattern alone does to the relay's cost.
 *
 * Usage: media_rtpgen SECONDS QUANTUM_US FD... < plan
 *   the FDs are bound UDP sockets inherited from the caller, which owns them;
 *   plan: one line per stream: "SOCKET_INDEX DEST_IPV4 DEST_PORT" (index into FD...).
 * Packets: 172 bytes, RTP v2, PT 0, SSRC = stream index, then the send time (64-bit ns
 * big-endian) at offset 12.
 * Prints `key value` lines: sent, received, rx_overflow (drops at our own sockets),
 * foreign, min/p50/p90/p99/p999/p9999/max_us latency, over_1ms, late_p99_us and
 * late_max_us (send lag behind schedule), cpu_s (this process), and per second of send
 * time `second_S COUNT/OVER_1MS/MAX_US` (a stall shows as the seconds it falls in).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/net_tstamp.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PACKET 172
#define PTIME_NS 20000000LL
#define DRAIN_EVERY_NS 1000000LL
#define DRAIN_AFTER_NS 1000000000LL
#define BATCH 64

struct stream {
    int sock;
    struct sockaddr_in dest;
    int64_t phase;
    uint16_t seq;
};

static struct stream *streams;
static int nstreams, nsockets, *fds;
static int64_t quantum_ns;
static int64_t *latency_ns, nlatency, cap_latency;
static int64_t *late_ns, nlate, cap_late;
static int64_t sent, received, foreign, rx_overflow;
static uint32_t *overflow_seen;
/* Per second of send time: packets, over 1 ms, worst latency (where the tail is). */
#define MAX_SECONDS 3600
static int64_t first_send_ns;
static int64_t sec_count[MAX_SECONDS], sec_over[MAX_SECONDS], sec_max[MAX_SECONDS];

static int64_t clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void push(int64_t **arr, int64_t *n, int64_t *cap, int64_t v) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 1 << 20;
        *arr = realloc(*arr, (size_t)*cap * sizeof **arr);
        if (!*arr) {
            perror("realloc");
            exit(1);
        }
    }
    (*arr)[(*n)++] = v;
}

static void put_be64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static void send_one(int index, int64_t due) {
    struct stream *s = &streams[index];
    uint8_t pkt[PACKET] = {0};
    uint32_t ts = (uint32_t)s->seq * 160u, ssrc = (uint32_t)index;
    pkt[0] = 0x80;
    pkt[1] = 0;
    pkt[2] = (uint8_t)(s->seq >> 8);
    pkt[3] = (uint8_t)s->seq;
    for (int i = 0; i < 4; i++) {
        pkt[4 + i] = (uint8_t)(ts >> (24 - 8 * i));
        pkt[8 + i] = (uint8_t)(ssrc >> (24 - 8 * i));
    }
    s->seq++;
    int64_t lag = clock_ns(CLOCK_MONOTONIC) - due;
    push(&late_ns, &nlate, &cap_late, lag > 0 ? lag : 0);
    put_be64(pkt + 12, (uint64_t)clock_ns(CLOCK_REALTIME));
    if (sendto(fds[s->sock], pkt, sizeof pkt, 0, (struct sockaddr *)&s->dest,
               sizeof s->dest) == PACKET)
        sent++;
}

/* Read every queued datagram of every socket; latency from the kernel's arrival stamp. */
static void drain(void) {
    static uint8_t bufs[BATCH][256];
    static char ctrl[BATCH][128];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int k = 0; k < nsockets; k++) {
        for (;;) {
            for (int i = 0; i < BATCH; i++) {
                iov[i].iov_base = bufs[i];
                iov[i].iov_len = sizeof bufs[i];
                memset(&msgs[i], 0, sizeof msgs[i]);
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_hdr.msg_control = ctrl[i];
                msgs[i].msg_hdr.msg_controllen = sizeof ctrl[i];
            }
            int n = recvmmsg(fds[k], msgs, BATCH, MSG_DONTWAIT, NULL);
            if (n <= 0) break;
            for (int i = 0; i < n; i++) {
                struct msghdr *h = &msgs[i].msg_hdr;
                int64_t arrival = -1;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
                    if (c->cmsg_level != SOL_SOCKET) continue;
                    if (c->cmsg_type == SCM_TIMESTAMPNS) {
                        struct timespec t;
                        memcpy(&t, CMSG_DATA(c), sizeof t);
                        arrival = (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
                    } else if (c->cmsg_type == SO_RXQ_OVFL) {
                        uint32_t total;
                        memcpy(&total, CMSG_DATA(c), sizeof total);
                        if (total > overflow_seen[k]) overflow_seen[k] = total;
                    }
                }
                if (msgs[i].msg_len != PACKET || bufs[i][0] != 0x80 || arrival < 0) {
                    foreign++;
                    continue;
                }
                received++;
                int64_t sent_at = (int64_t)get_be64(bufs[i] + 12);
                int64_t latency = arrival - sent_at;
                push(&latency_ns, &nlatency, &cap_latency, latency);
                int64_t sec = (sent_at - first_send_ns) / 1000000000LL;
                if (sec >= 0 && sec < MAX_SECONDS) {
                    sec_count[sec]++;
                    if (latency > 1000000LL) sec_over[sec]++;
                    if (latency > sec_max[sec]) sec_max[sec] = latency;
                }
            }
        }
    }
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_us(int64_t *v, int64_t n, double p) {
    if (n == 0) return 0.0;
    int64_t i = (int64_t)(p * (double)n);
    if (i >= n) i = n - 1;
    return (double)v[i] / 1000.0;
}

static int cmp_phase(const void *a, const void *b) {
    int64_t x = streams[*(const int *)a].phase, y = streams[*(const int *)b].phase;
    return (x > y) - (x < y);
}

static void read_plan(void) {
    int cap = 1024;
    streams = calloc((size_t)cap, sizeof *streams);
    char ip[64];
    int sock, port;
    srand48(6);
    while (scanf("%d %63s %d", &sock, ip, &port) == 3) {
        if (nstreams == cap) {
            cap *= 2;
            streams = realloc(streams, (size_t)cap * sizeof *streams);
        }
        struct stream *s = &streams[nstreams++];
        memset(s, 0, sizeof *s);
        s->sock = sock;
        s->dest.sin_family = AF_INET;
        s->dest.sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, ip, &s->dest.sin_addr);
        s->phase = (int64_t)(drand48() * (double)PTIME_NS);
        s->seq = (uint16_t)lrand48();
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: media_rtpgen SECONDS QUANTUM_US FD... < plan\n");
        return 2;
    }
    double seconds = atof(argv[1]);
    quantum_ns = (int64_t)(atof(argv[2]) * 1000.0);
    nsockets = argc - 3;
    fds = malloc((size_t)nsockets * sizeof *fds);
    for (int k = 0; k < nsockets; k++) fds[k] = atoi(argv[3 + k]);
    read_plan();
    if (nstreams == 0) {
        fprintf(stderr, "empty plan\n");
        return 2;
    }
    overflow_seen = calloc((size_t)nsockets, sizeof *overflow_seen);
    int one = 1;
    for (int k = 0; k < nsockets; k++) {
        if (setsockopt(fds[k], SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0 ||
            setsockopt(fds[k], SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one) < 0) {
            perror("setsockopt");
            return 1;
        }
    }
    /* A 25 us gap between packets must not be rounded up to the default 50 us slack. */
    prctl(PR_SET_TIMERSLACK, 1UL);
    int *order = malloc((size_t)nstreams * sizeof *order);
    for (int i = 0; i < nstreams; i++) order[i] = i;
    qsort(order, (size_t)nstreams, sizeof *order, cmp_phase);

    int64_t start = clock_ns(CLOCK_MONOTONIC) + 10000000LL;
    first_send_ns = clock_ns(CLOCK_REALTIME) + 10000000LL;
    int64_t end = start + (int64_t)(seconds * 1e9);
    int64_t next_drain = start;
    int64_t period = 0;
    int slot = 0;
    for (;;) {
        int64_t due = start + period * PTIME_NS + streams[order[slot]].phase;
        if (quantum_ns > 0) due = start + (due - start + quantum_ns - 1) / quantum_ns * quantum_ns;
        if (due >= end) break;
        int64_t now = clock_ns(CLOCK_MONOTONIC);
        if (now >= next_drain) {
            drain();
            next_drain = now + DRAIN_EVERY_NS;
            continue;
        }
        if (now < due) {
            int64_t wake = due < next_drain ? due : next_drain;
            struct timespec t = {wake / 1000000000LL, wake % 1000000000LL};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
            continue;
        }
        send_one(order[slot], due);
        if (++slot == nstreams) {
            slot = 0;
            period++;
        }
    }
    /* What the relay still holds arrives now; then count what never came. */
    int64_t stop = clock_ns(CLOCK_MONOTONIC) + DRAIN_AFTER_NS;
    while (clock_ns(CLOCK_MONOTONIC) < stop) {
        drain();
        struct timespec t = {0, DRAIN_EVERY_NS};
        nanosleep(&t, NULL);
    }
    drain();
    for (int k = 0; k < nsockets; k++) rx_overflow += overflow_seen[k];

    qsort(latency_ns, (size_t)nlatency, sizeof *latency_ns, cmp64);
    qsort(late_ns, (size_t)nlate, sizeof *late_ns, cmp64);
    int64_t over = 0;
    for (int64_t i = nlatency - 1; i >= 0 && latency_ns[i] > 1000000LL; i--) over++;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("sent %lld\nreceived %lld\nrx_overflow %lld\nforeign %lld\n", (long long)sent,
           (long long)received, (long long)rx_overflow, (long long)foreign);
    printf("min_us %.3f\np50_us %.3f\np90_us %.3f\np99_us %.3f\np999_us %.3f\n",
           pct_us(latency_ns, nlatency, 0.0), pct_us(latency_ns, nlatency, 0.5),
           pct_us(latency_ns, nlatency, 0.9), pct_us(latency_ns, nlatency, 0.99),
           pct_us(latency_ns, nlatency, 0.999));
    printf("p9999_us %.3f\nmax_us %.3f\nover_1ms %lld\n", pct_us(latency_ns, nlatency, 0.9999),
           nlatency ? (double)latency_ns[nlatency - 1] / 1000.0 : 0.0, (long long)over);
    printf("late_p99_us %.3f\nlate_max_us %.3f\n", pct_us(late_ns, nlate, 0.99),
           nlate ? (double)late_ns[nlate - 1] / 1000.0 : 0.0);
    for (int sec = 0; sec < MAX_SECONDS && sec < (int)seconds + 1; sec++)
        printf("second_%d %lld/%lld/%.0f\n", sec, (long long)sec_count[sec],
               (long long)sec_over[sec], (double)sec_max[sec] / 1000.0);
    printf("cpu_s %.3f\n", (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                               (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    return 0;
}
