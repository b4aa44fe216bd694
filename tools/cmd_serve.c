/* petl serve: one frozen base model in memory serving every adapter under --adapters over
 * HTTP, with dynamic batching across requests and tasks. The server itself is src/server.c;
 * this file is options, signals and the log. */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(
        f, "usage: petl serve --adapters DIR [OPTIONS]\n\n"
           "Serves every adapter folder under --adapters (the task is named by the folder) on one\n"
           "shared base model. Routes (JSON): POST /v1/predict {\"task\": NAME, \"inputs\": [TEXT\n"
           "or [TEXT_A, TEXT_B], ...]}; GET /v1/tasks; GET /v1/tasks/NAME; admin (Bearer token):\n"
           "POST /v1/tasks {\"name\": NAME, \"path\": DIR}, DELETE /v1/tasks/NAME; GET /healthz;\n"
           "GET /metrics (Prometheus). SIGTERM / SIGINT: stop accepting, finish, exit 0.\n"
           "See docs/serving.md.\n\n"
           "options:\n"
           "  --model DIR            base model folder (default: $PETL_MODEL or\n"
           "                         models/all-MiniLM-L6-v2)\n"
           "  --adapters DIR         folder of adapter folders (each loaded at start)\n"
           "  --host ADDR            IPv4 address to listen on (127.0.0.1)\n"
           "  --port N               port; 0 picks a free one, printed in the log (8080)\n"
           "  --threads N            OpenMP / OpenBLAS threads for the model (default: all)\n"
           "  --precision P          fp32 (default) or bf16 for the shared base's linear\n"
           "                         layers (AVX512-BF16 CPUs; see docs/performance.md)\n"
           "  --batch-window-ms X    wait this long for more requests to batch (2)\n"
           "  --max-batch N          rows per batch (32)\n"
           "  --queue N              requests waiting at most; more get 503 (256)\n"
           "  --max-body BYTES       request body cap; more get 413 (1048576)\n"
           "  --max-inputs N         inputs per request; more get 413 (256)\n"
           "  --max-connections N    concurrent connections served; more are answered 503\n"
           "                         (256)\n"
           "  --max-per-address N    concurrent connections served per client address; more\n"
           "                         are answered 503 (half of --max-connections)\n"
           "  --request-timeout S    a request's headers and body must arrive within S seconds\n"
           "                         of its connection's start, or it is cut (10)\n"
           "  --max-batch-tokens N   padded tokens (rows x longest row) per batch; a larger\n"
           "                         request runs in pieces with others between them (1024)\n"
           "  --admin-token-file F   enables the admin routes with the token in F (first line,\n"
           "                         at least 16 bytes; F should be readable by you only)\n"
           "  -h, --help             this help\n");
}

typedef struct {
    const char *model, *adapters, *host, *token_file, *precision;
    long port, threads, max_batch, queue, max_body, max_inputs, max_conn;
    double window_ms;
    long per_address, max_tokens;
    double request_timeout;
} serve_opts;

/* Returns CLI_GO_ON, or the exit status (0 after --help, 2 for bad usage). */
static int parse_args(int argc, char **argv, serve_opts *o) {
    *o = (serve_opts){cli_default_model(),
                      NULL,
                      "127.0.0.1",
                      NULL,
                      NULL,
                      8080,
                      0,
                      32,
                      256,
                      1 << 20,
                      256,
                      256,
                      2.0,
                      0,
                      1024,
                      10.0};
    const cli_opt opts[] = {
        CLI_OPT_STR("--model", &o->model),
        CLI_OPT_STR("--adapters", &o->adapters),
        CLI_OPT_STR("--host", &o->host),
        CLI_OPT_PRECISION(&o->precision),
        CLI_OPT_STR("--admin-token-file", &o->token_file),
        CLI_OPT_LONG("--port", &o->port, 0, 65535),
        CLI_OPT_LONG("--threads", &o->threads, 1, 1024),
        CLI_OPT_LONG("--max-batch", &o->max_batch, 1, 4096),
        CLI_OPT_LONG("--queue", &o->queue, 1, 1 << 20),
        CLI_OPT_LONG("--max-body", &o->max_body, 64, 1L << 30),
        CLI_OPT_LONG("--max-inputs", &o->max_inputs, 1, 1 << 20),
        CLI_OPT_LONG("--max-connections", &o->max_conn, 1, 1 << 16),
        CLI_OPT_DOUBLE("--batch-window-ms", &o->window_ms, 0, 1000),
        CLI_OPT_LONG("--max-per-address", &o->per_address, 1, 1 << 16),
        CLI_OPT_LONG("--max-batch-tokens", &o->max_tokens, 1, 1 << 24),
        CLI_OPT_DOUBLE("--request-timeout", &o->request_timeout, 0.1, 3600),
    };
    int rc = cli_parse_options("serve", argc, argv, opts, CLI_N_OPTS(opts), usage);
    if (rc != CLI_GO_ON) return rc;
    if (!o->adapters) {
        fprintf(stderr, "petl serve: --adapters is required (petl serve --help)\n");
        return 2;
    }
    return CLI_GO_ON;
}

/* Reads the token: the first line of the file, without its line end. NULL (after a message)
 * on failure; the caller frees. */
static char *read_token(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "petl serve: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & 077))
        fprintf(stderr, "petl serve: warning: %s is readable by others (chmod 600 it)\n", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    fclose(f);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (n < 16) {
        fprintf(stderr, "petl serve: %s: the admin token must be at least 16 bytes\n", path);
        free(line);
        return NULL;
    }
    return line;
}

static void log_line(void *user, const char *line) {
    (void)user;
    time_t now = time(NULL);
    struct tm tm;
    char ts[32];
    gmtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s petl serve: %s\n", ts, line);
}

/* dir + "/" + name, malloc'ed (caller frees); NULL without memory. */
static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads every folder under dir that has an adapter_config.json, in name order. Hidden folders
 * (".NAME.old-*" left by an interrupted save) are skipped. Returns 0, or 1 after a message. */
static int load_all(petl_server *srv, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "petl serve: --adapters %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char *sub = join(dir, e->d_name);
        char *cfg = sub ? join(sub, PETL_ADAPTER_CONFIG) : NULL;
        struct stat sb;
        bool is_adapter = cfg && stat(cfg, &sb) == 0 && S_ISREG(sb.st_mode);
        free(cfg);
        free(sub);
        if (!is_adapter) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                rc = 1;
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = 1;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc) fprintf(stderr, "petl serve: out of memory\n");
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!petl_srv_name_valid(names[i], strlen(names[i]))) {
            fprintf(stderr,
                    "petl serve: skipping %s/%s: not a valid task name (A-Z a-z 0-9 _ - ., at "
                    "most %d)\n",
                    dir, names[i], PETL_SRV_NAME_MAX);
            continue;
        }
        char *sub = join(dir, names[i]);
        petl_error err = {0};
        if (!sub || petl_server_load(srv, names[i], sub, &err) != PETL_OK) {
            fprintf(stderr, "petl serve: cannot load task %s: %s\n", names[i],
                    sub ? err.msg : "out of memory");
            rc = 1;
        }
        free(sub);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int cmd_serve(int argc, char **argv) {
    serve_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != CLI_GO_ON) return rc;
    /* OpenMP threads spin after each parallel region by default; in a server they would
     * starve the connection threads of CPU between batches (on 2 cores: p99 of a lone request
     * 440 ms instead of 16 ms). The runtime reads the setting when it loads, so unless the
     * operator chose one, set it and start again once. */
    if (!getenv("OMP_WAIT_POLICY") && setenv("OMP_WAIT_POLICY", "passive", 1) == 0) {
        char **args = calloc((size_t)argc + 2, sizeof *args);
        if (args) {
            args[0] = "petl";
            for (int i = 0; i < argc; i++)
                args[i + 1] = argv[i];
            execv("/proc/self/exe", args);
            free(args); /* exec failed: carry on with the default policy */
        }
    }
    /* Before any thread exists, so every thread inherits the mask and only sigwait below sees
     * SIGTERM / SIGINT; SIGPIPE from a client gone away must not kill the server. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (o.threads > 0) cli_set_threads((int)o.threads);
    /* Each connection is a descriptor, and connections over --max-connections are still
     * accepted to be answered 503: the usual soft limit of 1024 would cap that, so raise it to
     * the hard limit (the server bounds itself by what it gets). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    char *token = NULL;
    if (o.token_file && !(token = read_token(o.token_file))) return 1;
    petl_error err = {0};
    petl_tokenizer *tok = NULL;
    petl_model *base = NULL;
    petl_server *srv = NULL;
    rc = 1;
    double t0 = petl_now();
    if (petl_tokenizer_load(o.model, &tok, &err) != PETL_OK ||
        petl_model_load(o.model, &base, &err) != PETL_OK) {
        fprintf(stderr, "petl serve: %s\n", err.msg);
        goto done;
    }
    if (cli_set_precision("serve", base, o.precision, false)) goto done;
    petl_server_opts so;
    petl_server_opts_default(&so);
    so.host = o.host;
    so.port = (int)o.port;
    so.max_body = (size_t)o.max_body;
    so.max_inputs = (size_t)o.max_inputs;
    so.max_connections = (int)o.max_conn;
    so.max_per_address = (int)o.per_address;
    so.request_timeout_s = o.request_timeout;
    so.batch.max_tokens = (int)o.max_tokens;
    so.batch.window_ms = o.window_ms;
    so.batch.max_batch = (int)o.max_batch;
    so.batch.queue = (int)o.queue;
    so.admin_token = token;
    so.adapters_dir = o.adapters;
    so.log = log_line;
    if (petl_server_new(&so, base, tok, &srv, &err) != PETL_OK) {
        fprintf(stderr, "petl serve: %s\n", err.msg);
        goto done;
    }
    log_line(NULL, "loading the base model and adapters");
    if (load_all(srv, o.adapters)) goto done;
    if (petl_server_start(srv, &err) != PETL_OK) {
        fprintf(stderr, "petl serve: %s\n", err.msg);
        goto done;
    }
    char line[128];
    snprintf(line, sizeof line, "ready in %.1f s (admin routes %s)", petl_now() - t0,
             token ? "enabled" : "disabled");
    log_line(NULL, line);
    int sig = 0;
    sigwait(&sigs, &sig);
    snprintf(line, sizeof line, "received %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    log_line(NULL, line);
    petl_server_stop(srv, 30);
    rc = 0;
done:
    petl_server_free(srv);
    petl_model_free(base);
    petl_tokenizer_free(tok);
    free(token);
    return rc;
}
