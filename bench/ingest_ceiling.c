/*
 * ingest_ceiling.c - how fast single-event ingest could be answered by an HTTP loop of our own,
 * for each way of handing the events to a group commit (bench/ingest_ceiling.sh, issue 18).
 *
 *   ingest_ceiling --port P --mode answer|handoff|inline [--no-sync] [--file PATH]
 *
 * One thread runs an epoll loop over keep-alive HTTP/1.1 connections on 127.0.0.1:P. Each
 * request's bytes are first looked at with MSG_PEEK and then read (what a loop sharing its port
 * with libmicrohttpd would do to hand a request it does not take to it untouched), its body is
 * taken by Content-Length, and it is answered with an acknowledgement of one event:
 *
 *   answer   at once, nothing written: the loop alone.
 *   handoff  after a writer thread has written the bodies of every request waiting for it in one
 *            writev and made them durable with one fdatasync (a group commit); the writer hands
 *            each group back with one eventfd write, as events serve's writer thread does.
 *   inline   after the loop itself has written and made durable, in one writev and one
 *            fdatasync, the bodies of the requests it read in one round of epoll_wait; no other
 *            thread.
 *
 * --no-sync leaves the fdatasync out. The bodies go to --file (default ./ingest-ceiling.log,
 * truncated at start). Nothing is parsed beyond the framing: this is the ceiling of the HTTP
 * side of each design, not a server. Requests are bounded (16 KiB with their headers, whole in
 * the socket when first seen; anything else closes the connection), connections by the
 * descriptors the process may open, and the run by the signal that ends it.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define REQ_MAX   (16 << 10)
#define GROUP_MAX 1024 /* iovecs in one writev */

enum { ANSWER, HANDOFF, INLINE };
enum { IDLE, WAITING };

typedef struct conn {
    int fd, state;
    int readable; /* data came while WAITING: read once answered */
    size_t body_len;
    struct conn *next; /* in a group */
    char buf[REQ_MAX];
} conn;

static int mode = ANSWER, do_sync = 1, listen_fd, out_fd, ep, ev_fd;
/* the writer's queue (handoff), and the groups it hands back */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static conn *queued, *done;
static conn *round_group; /* inline: the requests read in this round */

#define ACK "{\"accepted\":1,\"duplicates\":0,\"rejected\":[]}\n"
static char answer_text[256]; /* the whole answer to a request, made at start */
static size_t answer_len;

static void drop_conn(conn *c)
{
    close(c->fd);
    free(c);
}

/* Writes the bodies of the group g in one writev (GROUP_MAX at a time) and syncs them. */
static void commit(conn *g)
{
    struct iovec iov[GROUP_MAX];
    while (g) {
        int n = 0;
        for (; g && n < GROUP_MAX; g = g->next, n++)
            iov[n] = (struct iovec){.iov_base = g->buf, .iov_len = g->body_len};
        if (writev(out_fd, iov, n) < 0) perror("ingest_ceiling: writev");
    }
    if (do_sync && fdatasync(out_fd)) perror("ingest_ceiling: fdatasync");
}

static void *writer_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (!queued) pthread_cond_wait(&cv, &mu);
        conn *g = queued;
        queued = NULL;
        pthread_mutex_unlock(&mu);
        commit(g);
        conn *last = g;
        while (last->next) last = last->next;
        pthread_mutex_lock(&mu);
        last->next = done;
        done = g;
        pthread_mutex_unlock(&mu);
        uint64_t one = 1;
        if (write(ev_fd, &one, sizeof one) < 0) perror("ingest_ceiling: eventfd");
    }
    return NULL;
}

/* Sends c its answer: 0, or -1 and c is gone. */
static int answer(conn *c)
{
    if (send(c->fd, answer_text, answer_len, MSG_NOSIGNAL) != (ssize_t)answer_len) {
        drop_conn(c);
        return -1;
    }
    c->state = IDLE;
    return 0;
}

static void read_requests(conn *c);

/* The answers of a group; a connection that got data meanwhile is read again. */
static void answer_group(conn *g)
{
    while (g) {
        conn *next = g->next;
        int again = g->readable;
        g->readable = 0;
        if (!answer(g) && again) read_requests(g);
        g = next;
    }
}

/*
 * Reads the whole requests waiting on c: looked at, then taken. A request not whole in the
 * socket, over REQ_MAX, or not framed by Content-Length closes the connection.
 */
static void read_requests(conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->buf, sizeof c->buf, MSG_PEEK);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            drop_conn(c);
            return;
        }
        char *end = memmem(c->buf, (size_t)n, "\r\n\r\n", 4);
        const char *cl = end ? strcasestr(c->buf, "\r\ncontent-length:") : NULL;
        size_t head = end ? (size_t)(end + 4 - c->buf) : 0;
        size_t body = cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
        if (!end || !cl || cl > end || head + body > (size_t)n) {
            drop_conn(c);
            return;
        }
        if (recv(c->fd, c->buf, head + body, 0) != (ssize_t)(head + body)) {
            drop_conn(c);
            return;
        }
        memmove(c->buf, c->buf + head, body);
        c->body_len = body;
        if (mode == ANSWER) {
            if (answer(c)) return;
            continue;
        }
        c->state = WAITING;
        if (mode == INLINE) {
            c->next = round_group;
            round_group = c;
        } else {
            pthread_mutex_lock(&mu);
            c->next = queued;
            queued = c;
            pthread_cond_signal(&cv);
            pthread_mutex_unlock(&mu);
        }
        return; /* its next request once it is answered */
    }
}

static void accept_all(void)
{
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof *c);
        struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
        if (!c || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e)) {
            close(fd);
            free(c);
            continue;
        }
        c->fd = fd;
        read_requests(c);
    }
}

static void loop(void)
{
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &listen_fd) {
                accept_all();
            } else if (p == &ev_fd) {
                uint64_t v;
                if (read(ev_fd, &v, sizeof v) < 0) perror("ingest_ceiling: eventfd");
                pthread_mutex_lock(&mu);
                conn *g = done;
                done = NULL;
                pthread_mutex_unlock(&mu);
                answer_group(g);
            } else {
                conn *c = p;
                if (c->state == WAITING)
                    c->readable = 1;
                else
                    read_requests(c);
            }
        }
        if (round_group) {
            conn *g = round_group;
            round_group = NULL;
            commit(g);
            answer_group(g);
        }
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: ingest_ceiling --port P --mode answer|handoff|inline [--no-sync] "
                    "[--file PATH]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int port = 0;
    const char *file = "ingest-ceiling.log";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
            const char *m = argv[++i];
            mode = !strcmp(m, "answer")    ? ANSWER
                   : !strcmp(m, "handoff") ? HANDOFF
                   : !strcmp(m, "inline")  ? INLINE
                                           : -1;
            if (mode < 0) return usage();
        } else if (!strcmp(argv[i], "--no-sync")) {
            do_sync = 0;
        } else if (!strcmp(argv[i], "--file") && i + 1 < argc) {
            file = argv[++i];
        } else {
            return usage();
        }
    }
    if (port <= 0 || port > 65535) return usage();
    answer_len = (size_t)snprintf(answer_text, sizeof answer_text,
                                  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                  "Content-Length: %zu\r\n\r\n%s",
                                  strlen(ACK), ACK);
    if ((out_fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        fprintf(stderr, "ingest_ceiling: %s: %s\n", file, strerror(errno));
        return 1;
    }
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) || listen(listen_fd, 1024)) {
        fprintf(stderr, "ingest_ceiling: 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    ev_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event el = {.events = EPOLLIN, .data.ptr = &listen_fd};
    struct epoll_event ee = {.events = EPOLLIN, .data.ptr = &ev_fd};
    if (ep < 0 || ev_fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &el) ||
        epoll_ctl(ep, EPOLL_CTL_ADD, ev_fd, &ee)) {
        perror("ingest_ceiling: epoll");
        return 1;
    }
    pthread_t t;
    if (mode == HANDOFF && pthread_create(&t, NULL, writer_main, NULL)) {
        fprintf(stderr, "ingest_ceiling: cannot start the writer thread\n");
        return 1;
    }
    printf("ingest_ceiling: listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    loop();
    return 0;
}
