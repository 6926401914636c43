/*
 * slowloris.c - a slow-headers attack on `events serve`, and how long a normal
 * request waits while it runs (bench/slowloris.sh).
 *
 *   slowloris --port P [--conns 300] [--interval 5] [--duration 30]
 *             [--probe-every 1] [--probe-timeout 10]
 *
 * The attacker keeps --conns connections open on 127.0.0.1:P, each of which
 * sent a request line and then sends one more header line every --interval
 * seconds, never ending its headers; a connection the server closes is opened
 * again at once, as an attacker would. Meanwhile a prober opens a new
 * connection every --probe-every seconds, sends `GET /health`, and waits up to
 * --probe-timeout seconds for the status line. Everything stops after
 * --duration seconds (the attack is bounded in connections, in time, and in
 * reconnects: at most 100 per connection).
 *
 * Prints one line of figures: probes sent, answered, their median and maximum
 * wait, the probes that got no answer in time, and what the server did to the
 * attack (connections it closed, answers it sent them).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port, nconns = 300, duration_s = 30;
static double interval_s = 5, probe_every_s = 1, probe_timeout_s = 10;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int dial(int nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- the prober ------------------------------------------------------------ */

static double waits[4096];
static int probes, answered, unanswered;
static volatile int stop;

static void *prober(void *arg)
{
    (void)arg;
    double next = now_s() + probe_every_s;
    while (!stop && probes < 4096) {
        while (!stop && now_s() < next) usleep(20000);
        if (stop) break;
        next += probe_every_s;
        double t0 = now_s();
        int fd = dial(0);
        probes++;
        if (fd < 0) {
            unanswered++;
            continue;
        }
        struct timeval tv = {(time_t)probe_timeout_s, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        static const char req[] =
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        char b[64];
        ssize_t n = -1;
        if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof req - 1))
            n = recv(fd, b, sizeof b, 0);
        double w = now_s() - t0;
        if (n >= 12 && !memcmp(b, "HTTP/1.1 200", 12) && w <= probe_timeout_s)
            waits[answered++] = w;
        else
            unanswered++;
        close(fd);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- the attack ------------------------------------------------------------- */

typedef struct slow {
    int fd;
    double next; /* when the next header line goes */
    int lines, reopened;
} slow;

static int opened, closed_by_server, answers_seen;

static void slow_open(slow *c, double now)
{
    c->fd = dial(1);
    c->lines = 0;
    c->next = now; /* the request line goes at once */
    if (c->fd >= 0) opened++;
}

static void slow_tick(slow *c, double now)
{
    if (c->fd < 0 || now < c->next) return;
    char line[64];
    int n = c->lines == 0
                ? snprintf(line, sizeof line, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                : snprintf(line, sizeof line, "X-Slow-%d: x\r\n", c->lines);
    if (send(c->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN &&
        errno != ENOTCONN)
        return; /* the poll below sees the close */
    c->lines++;
    c->next = now + (c->lines == 1 ? 0.05 : interval_s);
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--conns"))
            nconns = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--interval"))
            interval_s = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--duration"))
            duration_s = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--probe-every"))
            probe_every_s = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--probe-timeout"))
            probe_timeout_s = atof(argv[i + 1]);
        else {
            fprintf(stderr, "slowloris: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (port <= 0 || nconns < 1 || nconns > 4000 || duration_s < 1 || duration_s > 600) {
        fprintf(stderr, "slowloris: --port P [--conns 1-4000] [--duration 1-600 s] ...\n");
        return 2;
    }
    slow *c = calloc((size_t)nconns, sizeof *c);
    struct pollfd *pf = calloc((size_t)nconns, sizeof *pf);
    if (!c || !pf) return 1;
    double t0 = now_s(), end = t0 + duration_s;
    for (int i = 0; i < nconns; i++) slow_open(&c[i], t0);
    usleep(300000); /* the attack is in place before the first probe */
    pthread_t th;
    pthread_create(&th, NULL, prober, NULL);
    while (now_s() < end) {
        double now = now_s();
        for (int i = 0; i < nconns; i++) {
            slow_tick(&c[i], now);
            pf[i].fd = c[i].fd;
            pf[i].events = POLLIN;
            pf[i].revents = 0;
        }
        poll(pf, (nfds_t)nconns, 50);
        now = now_s();
        for (int i = 0; i < nconns; i++) {
            if (c[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char b[4096];
            ssize_t n = recv(c[i].fd, b, sizeof b, MSG_DONTWAIT);
            if (n > 0) {
                if (n >= 9 && !memcmp(b, "HTTP/1.1 ", 9)) answers_seen++;
                continue; /* the close follows */
            }
            if (n < 0 && errno == EAGAIN) continue;
            close(c[i].fd);
            c[i].fd = -1;
            closed_by_server++;
            if (c[i].reopened++ < 100) slow_open(&c[i], now);
        }
    }
    stop = 1;
    pthread_join(th, NULL);
    for (int i = 0; i < nconns; i++)
        if (c[i].fd >= 0) close(c[i].fd);
    qsort(waits, (size_t)answered, sizeof *waits, cmp_double);
    printf(
        "attack: %d connections, a header line every %.1f s, %d s | probes: %d sent, %d answered, "
        "median %.1f ms, max %.1f ms, %d unanswered within %.0f s | server closed %d attack "
        "connections (%d with an answer), %d opened\n",
        nconns, interval_s, duration_s, probes, answered,
        answered ? waits[answered / 2] * 1000 : 0.0, answered ? waits[answered - 1] * 1000 : 0.0,
        unanswered, probe_timeout_s, closed_by_server, answers_seen, opened);
    free(c);
    free(pf);
    return 0;
}
