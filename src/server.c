/* petl serve's HTTP side: the routes (predict, task list / load / unload, health, metrics) on
 * libmicrohttpd, connection admission and request deadlines (the sweeper thread), and the
 * server's lifecycle (new, load, start, graceful stop, free). It puts the units of server.h
 * together: request parsing (src/srv_request.c), the task registry (src/srv_registry.c),
 * metrics (src/srv_metrics.c), the request queue (src/srv_queue.c) and the default executor
 * (src/executor.c). See include/petl.h (section "server") and server.h for the design. */
#include "server.h"

#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ===================================================================== the server */

void petl_server_opts_default(petl_server_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->max_body = 1 << 20;
    o->max_inputs = 256;
    o->max_tasks = 10000;
    o->max_connections = 256;
    o->timeout_s = 30;
    o->batch.window_ms = 2.0;
    o->batch.max_batch = 32;
    o->batch.queue = 256;
    o->batch.max_tokens = 1024;
    o->max_per_address = 0;
    o->request_timeout_s = 10;
}

struct petl_server {
    petl_server_opts o;
    char *host, *admin_token, *adapters_dir; /* owned copies of the options' strings */
    size_t admin_token_len;
    const petl_model *base;
    const petl_tokenizer *tok;
    petl_base_identity id;
    petl_srv_registry *reg;
    petl_srv_metrics *metrics;
    petl_srv_exec *exec;
    petl_srv_queue *queue;
    struct MHD_Daemon *daemon;
    int port;
    pthread_mutex_t mu; /* active, stopping, started */
    pthread_cond_t idle;
    int active; /* requests between their first byte and their completion */
    bool started, stopping, stopped;
    pthread_mutex_t log_mu;
    /* Connection admission and deadlines (see conn_rec): every open connection, under cmu. */
    pthread_mutex_t cmu;
    pthread_cond_t sweep_cv; /* wakes the sweeper at stop */
    struct conn_rec *conns;
    int per_address;
    bool sweep_stop, sweeper_started;
    pthread_t sweeper;
    char *adapters_real; /* realpath of adapters_dir: POST /v1/tasks loads only under it */
};

static void slog(petl_server *s, const char *fmt, ...) PETL_PRINTF(2, 3);
static void slog(petl_server *s, const char *fmt, ...) {
    if (!s->o.log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&s->log_mu);
    s->o.log(s->o.log_user, line);
    pthread_mutex_unlock(&s->log_mu);
}

static char *dup_or_null(const char *x, bool *oom) {
    if (!x) return NULL;
    char *d = strdup(x);
    if (!d) *oom = true;
    return d;
}

petl_status petl_server_new(const petl_server_opts *o, const petl_model *base,
                            const petl_tokenizer *tok, petl_server **out, petl_error *err) {
    *out = NULL;
    if (o->port < 0 || o->port > 65535 || o->max_body < 16 || o->max_inputs < 1 ||
        o->max_connections < 1 || o->max_tasks < 1 || o->max_per_address < 0 ||
        !(o->request_timeout_s > 0) || o->request_timeout_s > 3600)
        return petl_fail(err, PETL_ERR_ARG, "server: options out of range");
    petl_server *s = calloc(1, sizeof *s);
    if (!s) return petl_fail(err, PETL_ERR_NOMEM, "server: out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->log_mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    pthread_mutex_init(&s->cmu, NULL);
    pthread_cond_init(&s->sweep_cv, NULL);
    s->o = *o;
    s->per_address = o->max_per_address > 0 ? o->max_per_address : o->max_connections / 2;
    if (s->per_address < 1) s->per_address = 1;
    bool oom = false;
    s->host = dup_or_null(o->host ? o->host : "127.0.0.1", &oom);
    s->admin_token = dup_or_null(o->admin_token, &oom);
    s->adapters_dir = dup_or_null(o->adapters_dir, &oom);
    s->admin_token_len = s->admin_token ? strlen(s->admin_token) : 0;
    s->base = base;
    s->tok = tok;
    petl_status st = PETL_OK;
    if (oom)
        st = petl_fail(err, PETL_ERR_NOMEM, "server: out of memory");
    else if (s->admin_token && s->admin_token_len < 16)
        st = petl_fail(err, PETL_ERR_ARG, "server: the admin token is shorter than 16 bytes");
    if (st == PETL_OK && s->adapters_dir && !(s->adapters_real = realpath(s->adapters_dir, NULL)))
        st = petl_fail(err, errno == ENOMEM ? PETL_ERR_NOMEM : PETL_ERR_IO,
                       "server: adapters folder %s: %s", s->adapters_dir, strerror(errno));
    if (st == PETL_OK) st = petl_srv_registry_new(o->max_tasks, &s->reg, err);
    if (st == PETL_OK) st = petl_srv_metrics_new(&s->metrics, err);
    if (st != PETL_OK) {
        petl_server_free(s);
        return st;
    }
    if (base) {
        petl_base_identity_of(base, &s->id);
        if (tok) petl_base_identity_set_tokenizer(&s->id, tok);
    }
    *out = s;
    return PETL_OK;
}

petl_status petl_server_load(petl_server *s, const char *name, const char *dir, petl_error *err) {
    petl_srv_task *t = NULL;
    double t0 = petl_now();
    petl_status st = petl_srv_task_load(name, dir, s->base, &s->id, &t, err);
    if (st != PETL_OK) return st;
    petl_srv_reject rej;
    if (!petl_srv_registry_add(s->reg, t, &rej)) {
        petl_srv_task_release(t);
        return petl_fail(err, PETL_ERR_ARG, "%s", rej.reason);
    }
    slog(s, "loaded task %s from %s: %s, %d labels, max_len %d, %lld params, %.0f ms", name, dir,
         t->info.task_spec[0] ? t->info.task_spec : t->info.task_name, t->num_labels, t->max_len,
         (long long)t->params, 1e3 * (petl_now() - t0));
    petl_srv_task_release(t);
    return PETL_OK;
}

int petl_server_port(const petl_server *s) {
    return s->port;
}

/* ----------------------------------------------------------------------------- responses */

/* Per-request state (MHD's con_cls): the body as it arrives. */
typedef struct {
    char *body;
    size_t len, cap;
    bool too_large;
    double t0; /* when the handler first saw the request */
} req_state;

static enum MHD_Result send_text(struct MHD_Connection *c, int status, const char *type, char *text,
                                 size_t len, const char *allow, bool retry, bool close) {
    /* text is malloc'ed; MHD frees it with the response. */
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (retry) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (close) MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    if (status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"petl admin\"");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Sends the JSON value j (stolen) with status. */
static enum MHD_Result send_json(petl_server *s, struct MHD_Connection *c, const char *route,
                                 int status, json_t *j, const char *allow) {
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(j);
    petl_srv_metrics_http(s->metrics, route, text ? status : 500);
    if (!text) {
        static const char oom[] = "{\"error\":{\"code\":500,\"message\":\"out of memory\"}}\n";
        char *t = strdup(oom);
        if (!t) return MHD_NO;
        return send_text(c, 500, "application/json", t, strlen(t), NULL, false, false);
    }
    size_t n = strlen(text);
    char *t2 = realloc(text, n + 2); /* a final newline, for curl users */
    if (t2) {
        text = t2;
        text[n++] = '\n';
        text[n] = '\0';
    }
    return send_text(c, status, "application/json", text, n, allow, status == 503, false);
}

static enum MHD_Result send_error(petl_server *s, struct MHD_Connection *c, const char *route,
                                  int status, const char *allow, const char *fmt, ...)
    PETL_PRINTF(6, 7);
static enum MHD_Result send_error(petl_server *s, struct MHD_Connection *c, const char *route,
                                  int status, const char *allow, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *j = json_pack("{s:{s:i,s:s}}", "error", "code", status, "message", msg);
    return send_json(s, c, route, status, j, allow);
}

/* Answers status with a JSON error and closes the connection after it: for refusals where the
 * connection itself is the problem (over a limit, ambiguous framing), so keep-alive must end. */
static enum MHD_Result send_refusal(petl_server *s, struct MHD_Connection *c, const char *route,
                                    int status, const char *msg) {
    petl_srv_metrics_http(s->metrics, route, status);
    json_t *j = json_pack("{s:{s:i,s:s}}", "error", "code", status, "message", msg);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) return MHD_NO;
    return send_text(c, status, "application/json", text, strlen(text), NULL, status == 503, true);
}

/* The fixed metrics label of a URL (never user input). */
static const char *route_of(const char *url) {
    static const char *const fixed[] = {"/v1/predict", "/v1/tasks", "/healthz", "/metrics"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (!strcmp(url, fixed[i])) return fixed[i];
    return strncmp(url, "/v1/tasks/", 10) ? "other" : "/v1/tasks/NAME";
}

/* ------------------------------------------------------------------ connections and deadlines */

/* libmicrohttpd's own limits (MHD_OPTION_CONNECTION_LIMIT, _PER_IP_CONNECTION_LIMIT) close a
 * connection over them without a word, and its timeout is an idle timeout, which a client
 * sending one header line every few seconds never reaches: 300 such clients held every slot.
 * So the server keeps its own record of every connection (MHD_OPTION_NOTIFY_CONNECTION):
 *   - admission: at accept, a connection over max_per_address (same client address) or over
 *     max_connections is marked `over`; libmicrohttpd's limit is set well above, so that such
 *     a connection is still read, and it is answered 503 (+ Retry-After, Connection: close) as
 *     soon as its request line and headers are in, or after CONN_OVER_DEADLINE_S otherwise;
 *   - a total deadline: a request's headers and body must arrive within request_timeout_s of
 *     the connection's start (or of the end of the previous request on a keep-alive
 *     connection, with the idle timeout added). A sweeper thread checks every 100 ms and
 *     shuts down the socket of a connection past it (a 408 first, when nothing of the request
 *     has been handled yet); the connection's thread then sees the end of the stream and
 *     libmicrohttpd closes it. Requests being computed (CONN_BUSY) are never cut.
 * The record lives from MHD_CONNECTION_NOTIFY_STARTED to _CLOSED, which libmicrohttpd sends
 * before it closes the socket; both the sweeper and the close take cmu, so the sweeper never
 * touches a descriptor that was closed (and perhaps reused). */
typedef enum { CONN_NEW, CONN_READING, CONN_BUSY, CONN_IDLE } conn_phase;

typedef struct conn_rec {
    struct conn_rec *prev, *next;
    MHD_socket fd;
    uint32_t addr;  /* IPv4 client address, network order */
    double t_start; /* the deadline runs from here */
    conn_phase phase;
    int over;    /* 0, or 1 + the petl_srv_conn_event of the limit it is over */
    bool reused; /* a keep-alive connection: t_start is the end of its previous request */
    bool killed;
} conn_rec;

#define CONN_OVER_DEADLINE_S 1.0 /* a connection over a limit gets this long for its headers */
#define CONN_SWEEP_S 0.1

static conn_rec *conn_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return i ? i->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    petl_server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_rec *r = *socket_context;
        if (!r) return;
        pthread_mutex_lock(&s->cmu);
        if (r->prev)
            r->prev->next = r->next;
        else
            s->conns = r->next;
        if (r->next) r->next->prev = r->prev;
        pthread_mutex_unlock(&s->cmu);
        free(r);
        *socket_context = NULL;
        return;
    }
    if (toe != MHD_CONNECTION_NOTIFY_STARTED) return;
    conn_rec *r = calloc(1, sizeof *r);
    *socket_context = r; /* NULL: on_request closes the connection */
    if (!r) return;
    const union MHD_ConnectionInfo *fi =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *ai =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    r->fd = fi ? fi->connect_fd : MHD_INVALID_SOCKET;
    if (ai && ai->client_addr && ai->client_addr->sa_family == AF_INET)
        r->addr = ((const struct sockaddr_in *)(const void *)ai->client_addr)->sin_addr.s_addr;
    r->t_start = petl_now();
    r->phase = CONN_NEW;
    pthread_mutex_lock(&s->cmu);
    int total = 0, same = 0;
    for (conn_rec *o = s->conns; o; o = o->next)
        if (!o->over) {
            total++;
            same += o->addr == r->addr;
        }
    if (same >= s->per_address)
        r->over = 1 + PETL_SRV_CONN_OVER_ADDRESS;
    else if (total >= s->o.max_connections)
        r->over = 1 + PETL_SRV_CONN_OVER_TOTAL;
    r->next = s->conns;
    if (s->conns) s->conns->prev = r;
    s->conns = r;
    pthread_mutex_unlock(&s->cmu);
}

/* A full HTTP response written straight to the socket, for a connection whose request was never
 * handed to on_request (its headers did not arrive in time): libmicrohttpd has written nothing
 * on it and will write nothing before the headers are complete. */
static void raw_refuse(MHD_socket fd, int status) {
    char msg[160], out[384];
    const char *why = status == 503 ? "Service Unavailable" : "Request Timeout";
    int n = snprintf(msg, sizeof msg, "{\"error\":{\"code\":%d,\"message\":\"%s\"}}\n", status,
                     status == 503 ? "too many connections; retry later"
                                   : "the request did not arrive in time");
    int m = snprintf(out, sizeof out,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     "%sConnection: close\r\n\r\n%s",
                     status, why, n, status == 503 ? "Retry-After: 1\r\n" : "", msg);
    if (m > 0 && m < (int)sizeof out) (void)send(fd, out, (size_t)m, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* One pass over the connections: cuts those past their deadline. Caller holds cmu. */
static void sweep_once(petl_server *s) {
    double now = petl_now();
    double idle = s->o.timeout_s > s->o.request_timeout_s ? s->o.timeout_s : s->o.request_timeout_s;
    for (conn_rec *r = s->conns; r; r = r->next) {
        if (r->killed || r->phase == CONN_BUSY || r->fd == MHD_INVALID_SOCKET) continue;
        /* On a keep-alive connection the client may first idle (as long as the idle timeout
         * allows), then send its next request. */
        double limit = r->over     ? CONN_OVER_DEADLINE_S
                       : r->reused ? idle + s->o.request_timeout_s
                                   : s->o.request_timeout_s;
        if (r->over && limit > s->o.request_timeout_s) limit = s->o.request_timeout_s;
        if (now - r->t_start <= limit) continue;
        r->killed = true;
        if (r->phase == CONN_NEW) raw_refuse(r->fd, r->over ? 503 : 408);
        shutdown(r->fd, SHUT_RDWR);
        if (r->over)
            petl_srv_metrics_conn(s->metrics, (petl_srv_conn_event)(r->over - 1));
        else if (r->phase != CONN_IDLE)
            petl_srv_metrics_conn(s->metrics, PETL_SRV_CONN_DEADLINE);
        if (r->phase == CONN_NEW) petl_srv_metrics_http(s->metrics, "other", r->over ? 503 : 408);
    }
}

static void *sweeper_main(void *arg) {
    petl_server *s = arg;
    pthread_mutex_lock(&s->cmu);
    while (!s->sweep_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(CONN_SWEEP_S * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->sweep_cv, &s->cmu, &ts);
        if (!s->sweep_stop) sweep_once(s);
    }
    pthread_mutex_unlock(&s->cmu);
    return NULL;
}

/* Moves the connection to phase p unless the sweeper has cut it (false: close it). */
static bool conn_enter(petl_server *s, struct MHD_Connection *c, conn_phase p) {
    conn_rec *r = conn_of(c);
    if (!r) return false;
    pthread_mutex_lock(&s->cmu);
    bool ok = !r->killed;
    if (ok) {
        if (p == CONN_IDLE) {
            r->t_start = petl_now();
            r->reused = true;
        }
        r->phase = p;
    }
    pthread_mutex_unlock(&s->cmu);
    return ok;
}

/* Content-Length headers of a request: more than one with different values, or one that is not
 * a plain number, make the body's length ambiguous (request smuggling through a proxy that
 * reads the other one), so such a request is refused. libmicrohttpd itself uses the first. */
typedef struct {
    int n;
    const char *first;
    bool conflict, bad;
} cl_scan;

static enum MHD_Result scan_cl(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value) {
    (void)kind;
    cl_scan *st = cls;
    if (!key || strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) return MHD_YES;
    if (!value || !*value || strspn(value, "0123456789") != strlen(value) || strlen(value) > 18)
        st->bad = true;
    else if (st->first && strtoull(st->first, NULL, 10) != strtoull(value, NULL, 10))
        st->conflict = true;
    if (!st->first) st->first = value;
    st->n++;
    return MHD_YES;
}

/* ---------------------------------------------------------------------------------- routes */

static json_t *task_json(const petl_srv_task *t) {
    json_t *labels = json_array();
    for (size_t i = 0; labels && i < t->info.n_labels; i++)
        json_array_append_new(labels, json_string(t->info.labels[i] ? t->info.labels[i] : ""));
    return json_pack("{s:s,s:s,s:s,s:o,s:b,s:i,s:I,s:I,s:i}", "name", t->name, "task",
                     t->info.task_name, "spec", t->info.task_spec, "labels",
                     labels ? labels : json_null(), "regression", t->info.regression, "max_len",
                     t->max_len, "params", (json_int_t)t->params, "bytes",
                     (json_int_t)(t->params * (int64_t)sizeof(float)), "adapter_size",
                     t->info.tune.adapter_size);
}

static json_t *base_json(const petl_base_identity *id) {
    char hash[24];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)id->content_hash);
    return json_pack("{s:s,s:i,s:i,s:i,s:i,s:I,s:s}", "model_type", id->model_type, "hidden_size",
                     id->hidden_size, "num_layers", id->num_layers, "num_heads", id->num_heads,
                     "vocab_size", id->vocab_size, "params", (json_int_t)id->num_params,
                     "content_hash", hash);
}

static enum MHD_Result route_list(petl_server *s, struct MHD_Connection *c) {
    petl_srv_task **ts;
    size_t n;
    if (!petl_srv_registry_list(s->reg, &ts, &n))
        return send_error(s, c, "/v1/tasks", 500, NULL, "out of memory");
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        if (arr) json_array_append_new(arr, task_json(ts[i]));
        petl_srv_task_release(ts[i]);
    }
    free(ts);
    json_t *j = arr ? json_pack("{s:o,s:o}", "base", base_json(&s->id), "tasks", arr) : NULL;
    return send_json(s, c, "/v1/tasks", 200, j, NULL);
}

/* 0 when the request carries the admin token; else the status already sent (via *ret). */
static bool admin_ok(petl_server *s, struct MHD_Connection *c, const char *route,
                     enum MHD_Result *ret) {
    if (!s->admin_token) {
        *ret = send_error(s, c, route, 403, NULL,
                          "admin routes are disabled: start the server with --admin-token-file");
        return false;
    }
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7) != 0) {
        *ret = send_error(s, c, route, 401, NULL, "missing 'Authorization: Bearer TOKEN' header");
        return false;
    }
    const char *tok = h + 7;
    if (!petl_srv_token_equal(tok, strlen(tok), s->admin_token, s->admin_token_len)) {
        *ret = send_error(s, c, route, 403, NULL, "wrong admin token");
        return false;
    }
    return true;
}

/* True when the resolved path p is root or inside it. */
static bool path_inside(const char *p, const char *root) {
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/') return true;
    return !strncmp(p, root, n) && (p[n] == '\0' || p[n] == '/');
}

/* The folder a POST /v1/tasks path names, resolved (symlinks, "..") and confined to the
 * adapters folder: NULL after filling *status / msg when it is not there or leads out of it.
 * The adapter's own files are checked too: a config or weights file that is a symlink out of
 * the folder would let the loader read (and its errors describe) any file the server can. */
static char *confined_path(const petl_server *s, const char *path, int *status, char *msg,
                           size_t cap) {
    if (!s->adapters_real) {
        *status = 403;
        snprintf(msg, cap, "loading is confined to the adapters folder, and this server has none");
        return NULL;
    }
    char *joined = path[0] == '/' ? strdup(path) : petl_path_join(s->adapters_real, path);
    if (!joined) {
        *status = 500;
        snprintf(msg, cap, "out of memory");
        return NULL;
    }
    char *real = realpath(joined, NULL);
    int e = errno;
    free(joined);
    if (!real) {
        *status = e == ENOMEM ? 500 : 422;
        snprintf(msg, cap, "cannot load the adapter: no folder at that path (%s)", strerror(e));
        return NULL;
    }
    bool ok = path_inside(real, s->adapters_real);
    static const char *const files[] = {PETL_ADAPTER_CONFIG, PETL_ADAPTER_WEIGHTS};
    for (size_t i = 0; ok && i < 2; i++) {
        char *f = petl_path_join(real, files[i]);
        char *rf = f ? realpath(f, NULL) : NULL;
        /* A missing file is the loader's to report; one that resolves elsewhere is refused. */
        if (rf) ok = path_inside(rf, s->adapters_real);
        free(rf);
        free(f);
    }
    if (!ok) {
        free(real);
        *status = 403;
        snprintf(msg, cap, "the path leads outside the adapters folder (after symlinks and ..)");
        return NULL;
    }
    return real;
}

/* What a client is told about a failed load: the kind of failure and, for an adapter of
 * another base, the names of the identity fields that differ, never a word of the files'
 * content (a JSON parser's "near '...'" or a value read from the file would echo what the
 * server read). The full message goes to the server's log. */
static void load_error_for_client(const petl_error *e, char *out, size_t cap) {
    /* clang-format off */
    static const char *const fields[] = {
        "model_type", "vocab_size", "hidden_size", "num_layers", "num_heads",
        "intermediate_size", "max_position_embeddings", "type_vocab_size", "num_params",
        "content_hash", "tokenizer lowercase", "tokenizer strip_accents", "tokenizer clean_text",
        "tokenizer handle_chinese_chars", "vocab_hash"};
    /* clang-format on */
    const char *diff = strstr(e->msg, "different base model or tokenizer: ");
    if (diff) {
        diff += strlen("different base model or tokenizer: ");
        size_t n = (size_t)snprintf(out, cap,
                                    "trained on a different base model or tokenizer; "
                                    "differing:");
        for (size_t i = 0; i < sizeof fields / sizeof fields[0] && n < cap; i++) {
            /* each field opens the diff or follows "; " (so that "tokenizer lowercase" is not
             * also counted as "lowercase", and vocab_size not inside another word) */
            size_t fl = strlen(fields[i]);
            bool found = false;
            for (const char *p = strstr(diff, fields[i]); p && !found; p = strstr(p + 1, fields[i]))
                found =
                    (p == diff || (p >= diff + 2 && p[-2] == ';' && p[-1] == ' ')) && p[fl] == ' ';
            if (found) n += (size_t)snprintf(out + n, cap - n, " %s", fields[i]);
        }
        return;
    }
    const char *kind;
    switch (e->code) {
    case PETL_ERR_IO: kind = "a file of the adapter is missing or cannot be read"; break;
    case PETL_ERR_UNSUPPORTED: kind = "this kind of adapter cannot be served"; break;
    case PETL_ERR_NOMEM: kind = "out of memory"; break;
    default: kind = "the adapter's files are damaged or not an adapter"; break;
    }
    snprintf(out, cap, "%s (the server's log says more)", kind);
}

static enum MHD_Result route_load(petl_server *s, struct MHD_Connection *c, const req_state *r) {
    const char *route = "/v1/tasks";
    char name[PETL_SRV_NAME_MAX + 1];
    char *path = NULL;
    petl_srv_reject rej;
    if (!petl_srv_parse_load(r->body, r->len, name, &path, &rej))
        return send_error(s, c, route, rej.status, NULL, "%s", rej.reason);
    int status = 0;
    char msg[256];
    char *full = confined_path(s, path, &status, msg, sizeof msg);
    if (!full) slog(s, "refused to load task %s from %.200s: %s", name, path, msg);
    free(path);
    if (!full) return send_error(s, c, route, status, NULL, "%s", msg);
    if (petl_srv_registry_count(s->reg) >= s->o.max_tasks) {
        free(full);
        return send_error(s, c, route, 507, NULL, "%zu tasks are loaded, the limit",
                          s->o.max_tasks);
    }
    /* Loading reads and checks files for a while; requests for other tasks keep flowing. */
    petl_srv_task *t = NULL;
    petl_error err = {0};
    double t0 = petl_now();
    petl_status st = petl_srv_task_load(name, full, s->base, &s->id, &t, &err);
    if (st != PETL_OK) {
        slog(s, "refused to load task %s: %s", name, err.msg);
        free(full);
        load_error_for_client(&err, msg, sizeof msg);
        return send_error(s, c, route, st == PETL_ERR_NOMEM ? 500 : 422, NULL,
                          "cannot load the adapter: %s", msg);
    }
    if (!petl_srv_registry_add(s->reg, t, &rej)) {
        petl_srv_task_release(t);
        free(full);
        return send_error(s, c, route, rej.status, NULL, "%s", rej.reason);
    }
    slog(s, "loaded task %s from %s: %d labels, max_len %d, %lld params, %.0f ms", name, full,
         t->num_labels, t->max_len, (long long)t->params, 1e3 * (petl_now() - t0));
    free(full);
    json_t *j = task_json(t);
    petl_srv_task_release(t);
    return send_json(s, c, route, 201, j, NULL);
}

static enum MHD_Result route_task(petl_server *s, struct MHD_Connection *c, const char *method,
                                  const char *name) {
    const char *route = "/v1/tasks/NAME";
    bool del = !strcmp(method, "DELETE");
    if (!del && strcmp(method, "GET"))
        return send_error(s, c, route, 405, "GET, DELETE", "%s is not allowed here", method);
    enum MHD_Result ret;
    if (del && !admin_ok(s, c, route, &ret)) return ret;
    if (!petl_srv_name_valid(name, strlen(name)))
        return send_error(s, c, route, 404, NULL, "no task of that name");
    if (del) {
        if (!petl_srv_registry_remove(s->reg, name))
            return send_error(s, c, route, 404, NULL, "no task '%s' is loaded", name);
        slog(s, "unloaded task %s", name);
        return send_json(s, c, route, 200, json_pack("{s:s}", "unloaded", name), NULL);
    }
    petl_srv_task *t = petl_srv_registry_get(s->reg, name);
    if (!t) return send_error(s, c, route, 404, NULL, "no task '%s' is loaded", name);
    json_t *j = task_json(t);
    petl_srv_task_release(t);
    return send_json(s, c, route, 200, j, NULL);
}

/* A JSON number, or null for NaN / infinity (JSON has neither). */
static json_t *num(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}

/* One result, as `petl predict` writes it: classification {"label": NAME, "scores": [softmax
 * in label order]} (softmax in double, shifted by the max), regression {"score": x}. */
static json_t *result_json(const petl_srv_task *t, const float *l) {
    if (t->info.regression) return json_pack("{s:o}", "score", num((double)l[0]));
    int nl = t->num_labels, best = 0;
    for (int k = 1; k < nl; k++)
        if (l[k] > l[best]) best = k;
    double sum = 0;
    for (int k = 0; k < nl; k++)
        sum += exp((double)l[k] - (double)l[best]);
    json_t *scores = json_array();
    for (int k = 0; scores && k < nl; k++)
        json_array_append_new(scores, num(exp((double)l[k] - (double)l[best]) / sum));
    return json_pack("{s:s,s:o}", "label", t->info.labels[best], "scores",
                     scores ? scores : json_null());
}

static enum MHD_Result route_predict(petl_server *s, struct MHD_Connection *c, const req_state *r) {
    const char *route = "/v1/predict";
    petl_srv_request req;
    petl_srv_reject rej;
    if (!petl_srv_parse_predict(r->body, r->len, s->o.max_inputs, &req, &rej))
        return send_error(s, c, route, rej.status, NULL, "%s", rej.reason);
    petl_srv_task *t = petl_srv_registry_get(s->reg, req.task);
    if (!t) {
        enum MHD_Result ret =
            send_error(s, c, route, 404, NULL, "no task '%s' is loaded", req.task);
        petl_srv_request_free(&req);
        return ret;
    }
    enum MHD_Result ret;
    int status = 200;
    double queue_s = -1;
    size_t n = req.n_inputs;
    petl_encoding *enc = calloc(n, sizeof *enc);
    float *out = calloc(n * (size_t)t->num_labels, sizeof *out);
    if (!enc || !out) {
        ret = send_error(s, c, route, status = 500, NULL, "out of memory");
        goto done;
    }
    /* An input of the other shape than the adapter's training data (a pair sent to a
     * single-text adapter, or the reverse) would be scored as noise: refused. */
    for (size_t i = 0; i < n; i++)
        if ((req.inputs[i].b != NULL) != t->info.pair_input) {
            ret = send_error(s, c, route, status = 400, NULL,
                             "inputs[%zu]: task '%s' was trained on %s, and this input is %s", i,
                             t->name, t->info.pair_input ? "text pairs" : "single texts",
                             req.inputs[i].b ? "a pair" : "a single text");
            goto done;
        }
    /* Tokenize here, on the connection's thread: the worker only runs the model. */
    for (size_t i = 0; i < n; i++) {
        petl_error err = {0};
        const petl_srv_input *in = &req.inputs[i];
        if (petl_tokenize(s->tok, in->a, in->len_a, in->b, in->len_b, t->max_len, &enc[i], &err) !=
            PETL_OK) {
            ret = send_error(s, c, route, status = 400, NULL, "inputs[%zu]: %s", i, err.msg);
            goto done;
        }
    }
    petl_srv_job job;
    memset(&job, 0, sizeof job);
    job.task = t;
    job.n = n;
    job.enc = enc;
    job.out = out;
    if (!petl_srv_queue_run(s->queue, &job)) {
        ret = send_error(s, c, route, status = 503, NULL,
                         "the request queue is full (or the server is stopping); retry later");
        goto done;
    }
    queue_s = job.t_start - job.t_submit;
    if (job.status != PETL_OK) {
        ret = send_error(s, c, route, status = 500, NULL, "prediction failed: %s", job.err.msg);
        goto done;
    }
    json_t *results = json_array();
    for (size_t i = 0; results && i < n; i++)
        json_array_append_new(results, result_json(t, out + i * (size_t)t->num_labels));
    json_t *j = results ? json_pack("{s:s,s:o}", "task", t->name, "results", results) : NULL;
    ret = send_json(s, c, route, 200, j, NULL);
done:
    petl_srv_metrics_predict(s->metrics, t->name, n, status, queue_s, petl_now() - r->t0);
    if (enc)
        for (size_t i = 0; i < n; i++)
            petl_encoding_free(&enc[i]);
    free(enc);
    free(out);
    petl_srv_task_release(t);
    petl_srv_request_free(&req);
    return ret;
}

static enum MHD_Result dispatch(petl_server *s, struct MHD_Connection *c, const char *url,
                                const char *method, req_state *r) {
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    bool post = !strcmp(method, "POST");
    if (!strcmp(url, "/v1/predict")) {
        if (!post) return send_error(s, c, url, 405, "POST", "%s is not allowed here", method);
        if (r->too_large)
            return send_error(s, c, url, 413, NULL, "the body is over %zu bytes", s->o.max_body);
        return route_predict(s, c, r);
    }
    if (!strcmp(url, "/v1/tasks")) {
        if (get) return route_list(s, c);
        if (!post) return send_error(s, c, url, 405, "GET, POST", "%s is not allowed here", method);
        enum MHD_Result ret;
        if (!admin_ok(s, c, url, &ret)) return ret;
        if (r->too_large)
            return send_error(s, c, url, 413, NULL, "the body is over %zu bytes", s->o.max_body);
        return route_load(s, c, r);
    }
    if (!strncmp(url, "/v1/tasks/", 10)) return route_task(s, c, method, url + 10);
    if (!strcmp(url, "/healthz")) {
        if (!get) return send_error(s, c, url, 405, "GET, HEAD", "%s is not allowed here", method);
        pthread_mutex_lock(&s->mu);
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping) return send_error(s, c, url, 503, NULL, "shutting down");
        return send_json(s, c, url, 200,
                         json_pack("{s:s,s:I}", "status", "ok", "tasks",
                                   (json_int_t)petl_srv_registry_count(s->reg)),
                         NULL);
    }
    if (!strcmp(url, "/metrics")) {
        if (!get) return send_error(s, c, url, 405, "GET, HEAD", "%s is not allowed here", method);
        petl_srv_metrics_http(s->metrics, url, 200); /* counted before rendering: it shows */
        char *text = petl_srv_metrics_render(s->metrics, petl_srv_queue_depth(s->queue),
                                             petl_srv_registry_count(s->reg));
        if (!text) return MHD_NO;
        return send_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text),
                         NULL, false, false);
    }
    return send_error(s, c, "other", 404, NULL, "no route %s %.100s", method, url);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    (void)version;
    petl_server *s = cls;
    req_state *r = *con_cls;
    if (!r) {
        /* A new request, its headers complete. */
        conn_rec *cr = conn_of(c);
        if (!cr) return MHD_NO; /* no record (out of memory): cannot be bounded, close it */
        pthread_mutex_lock(&s->cmu);
        bool killed = cr->killed;
        int over = cr->over;
        if (!killed && !over) cr->phase = CONN_READING;
        if (!killed && over) cr->killed = true; /* answered below; the sweeper leaves it */
        pthread_mutex_unlock(&s->cmu);
        if (killed) return MHD_NO;
        if (over) {
            petl_srv_metrics_conn(s->metrics, (petl_srv_conn_event)(over - 1));
            return send_refusal(s, c, route_of(url), 503,
                                over - 1 == PETL_SRV_CONN_OVER_ADDRESS
                                    ? "too many connections from your address; retry later"
                                    : "too many connections; retry later");
        }
        cl_scan cls_ = {0};
        MHD_get_connection_values(c, MHD_HEADER_KIND, scan_cl, &cls_);
        if (cls_.conflict || cls_.bad)
            return send_refusal(s, c, route_of(url), 400,
                                cls_.conflict ? "conflicting Content-Length headers"
                                              : "Content-Length is not a number");
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->t0 = petl_now();
        *con_cls = r;
        pthread_mutex_lock(&s->mu);
        s->active++;
        pthread_mutex_unlock(&s->mu);
        /* A declared body over the cap is refused before it is read. */
        if (cls_.first && strtoull(cls_.first, NULL, 10) > s->o.max_body) {
            r->too_large = true;
            return send_error(s, c, strcmp(url, "/v1/predict") ? "other" : url, 413, NULL,
                              "the body is over %zu bytes", s->o.max_body);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->too_large || r->len + n > s->o.max_body) {
            r->too_large = true; /* keep reading and dropping; answered at the end */
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            while (cap < r->len + n + 1)
                cap *= 2;
            if (cap > s->o.max_body + 1) cap = s->o.max_body + 1;
            char *b = realloc(r->body, cap);
            if (!b) return MHD_NO;
            r->body = b;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload, n);
        r->len += n;
        r->body[r->len] = '\0';
        return MHD_YES;
    }
    /* The body is complete: from here the time is the server's, not the client's. */
    if (!conn_enter(s, c, CONN_BUSY)) return MHD_NO;
    return dispatch(s, c, url, method, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)toe;
    petl_server *s = cls;
    conn_enter(s, c, CONN_IDLE); /* keep-alive: the next request's deadline runs from now */
    req_state *r = *con_cls;
    if (!r) return;
    free(r->body);
    free(r);
    *con_cls = NULL;
    pthread_mutex_lock(&s->mu);
    if (--s->active == 0) pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
}

/* libmicrohttpd's own connection limit: above max_connections, so that connections over it
 * are still accepted and answered 503 (see conn_rec), and within the descriptors the process
 * may open (a few kept for the model and the adapter files being loaded). */
static unsigned mhd_connection_limit(const petl_server *s) {
    size_t want = 4 * (size_t)s->o.max_connections + 64;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        size_t fds = rl.rlim_cur > 96 ? (size_t)rl.rlim_cur - 64 : 32;
        if (want > fds) want = fds;
    }
    if (want < (size_t)s->o.max_connections + 1) want = (size_t)s->o.max_connections + 1;
    return want > 1000000 ? 1000000 : (unsigned)want;
}

static void stop_sweeper(petl_server *s) {
    if (!s->sweeper_started) return;
    pthread_mutex_lock(&s->cmu);
    s->sweep_stop = true;
    pthread_cond_broadcast(&s->sweep_cv);
    pthread_mutex_unlock(&s->cmu);
    pthread_join(s->sweeper, NULL);
    s->sweeper_started = false;
}

petl_status petl_server_start(petl_server *s, petl_error *err) {
    if (s->started) return petl_fail(err, PETL_ERR_ARG, "server: already started");
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)s->o.port);
    const char *host = strcmp(s->host, "localhost") ? s->host : "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return petl_fail(err, PETL_ERR_ARG, "server: '%s' is not an IPv4 address", s->host);
    petl_status st = petl_srv_exec_new(s->o.batch.max_batch,
                                       s->tok ? petl_tokenizer_pad_id(s->tok) : 0, &s->exec, err);
    if (st == PETL_OK) petl_srv_exec_set_max_tokens(s->exec, s->o.batch.max_tokens);
    if (st == PETL_OK)
        st =
            petl_srv_queue_new(&s->o.batch, petl_srv_exec_run, s->exec, s->metrics, &s->queue, err);
    if (st != PETL_OK) return st;
    s->sweep_stop = false;
    int e = pthread_create(&s->sweeper, NULL, sweeper_main, s);
    if (e) {
        petl_srv_queue_free(s->queue);
        s->queue = NULL;
        return petl_fail(err, PETL_ERR_NOMEM, "server: cannot start a thread: %s", strerror(e));
    }
    s->sweeper_started = true;
    unsigned hard = mhd_connection_limit(s);
    /* One option (and its values) a line. */
    /* clang-format off */
    s->daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ITC,
        (uint16_t)s->o.port, NULL, NULL, on_request, s,
        MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_CONNECTION_LIMIT, hard,
        MHD_OPTION_CONNECTION_TIMEOUT, s->o.timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_END);
    /* clang-format on */
    if (!s->daemon) {
        stop_sweeper(s);
        petl_srv_queue_free(s->queue);
        s->queue = NULL;
        return petl_fail(err, PETL_ERR_IO, "server: cannot listen on %s:%d (in use?)", s->host,
                         s->o.port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : s->o.port;
    s->started = true;
    slog(s,
         "listening on http://%s:%d with %zu tasks (batch window %g ms, max batch %d, "
         "max tokens %d, queue %d; connections %d, %d per address, request deadline %g s)",
         s->host, s->port, petl_srv_registry_count(s->reg), s->o.batch.window_ms,
         s->o.batch.max_batch, s->o.batch.max_tokens, s->o.batch.queue, s->o.max_connections,
         s->per_address, s->o.request_timeout_s);
    return PETL_OK;
}

void petl_server_stop(petl_server *s, double grace_s) {
    pthread_mutex_lock(&s->mu);
    if (!s->started || s->stopped) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->stopping = true;
    pthread_mutex_unlock(&s->mu);
    slog(s, "stopping: no new connections, finishing requests in flight");
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)grace_s;
    pthread_mutex_lock(&s->mu);
    int e = 0;
    while (s->active > 0 && e != ETIMEDOUT)
        e = pthread_cond_timedwait(&s->idle, &s->mu, &ts);
    int left = s->active;
    pthread_mutex_unlock(&s->mu);
    /* Closes idle keep-alive connections and joins their threads; the queue is still up, so
     * a request that outlived the grace period still completes before its thread is joined. */
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    stop_sweeper(s);
    petl_srv_queue_free(s->queue);
    s->queue = NULL;
    pthread_mutex_lock(&s->mu);
    s->stopped = true;
    pthread_mutex_unlock(&s->mu);
    slog(s, "stopped%s", left ? " (some requests outlived the grace period)" : "");
}

void petl_server_free(petl_server *s) {
    if (!s) return;
    petl_server_stop(s, 30);
    petl_srv_exec_free(s->exec);
    petl_srv_registry_free(s->reg);
    petl_srv_metrics_free(s->metrics);
    free(s->host);
    free(s->admin_token);
    free(s->adapters_dir);
    free(s->adapters_real);
    pthread_cond_destroy(&s->sweep_cv);
    pthread_mutex_destroy(&s->cmu);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->log_mu);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
