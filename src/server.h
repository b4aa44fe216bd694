/* petl serve, the library's internal units, declared here in the order of their files. The
 * server itself (petl_server_*, its options and the task-name rule) is public: include/petl.h,
 * section "server". Each unit below is usable (and tested) on its own:
 *   - request parsing (src/srv_request.c): a pure function from a request body to a parsed
 *     request or a rejection (HTTP status + reason). This is what fuzz/fuzz_server_request.c
 *     drives.
 *   - the task registry (src/srv_registry.c): name -> loaded task (adapter + head on the shared
 *     base), reference counted, so that unloading a task never frees it under a request still
 *     using it.
 *   - metrics in the Prometheus text format (src/srv_metrics.c).
 *   - the request queue (src/srv_queue.c): a bounded queue of jobs (one job = the rows of one
 *     request) and one worker thread that gathers the jobs arriving within a window, across
 *     requests AND tasks, into one batch of up to max_batch rows and hands the whole mixed
 *     batch to an executor function.
 *   - the default executor (src/executor.c) runs the rows of every task that leaves the base's
 *     weights untouched through ONE fused forward (petl_task_predict_multi: the base's GEMMs
 *     once for all rows, each task's adapters, LayerNorms and head on its own rows), and the
 *     rows of full / top-K tasks through petl_task_predict, task by task.
 *   - the server (src/server.c: petl_server_*, public) puts the routes on top of the above. */
#ifndef PETL_SERVER_H
#define PETL_SERVER_H

#include "internal.h"
#include "petl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ========================================================== request parsing (src/srv_request.c) */

/* Why a request is refused: the HTTP status and a one-line reason for the JSON error body. */
typedef struct {
    int status;
    char reason[256];
} petl_srv_reject;

/* One input of a predict request: text_a and, for pairs, text_b (NULL otherwise). The strings
 * point into the parsed JSON document owned by the request; they are valid UTF-8 (the JSON
 * parser refuses anything else) and may not contain NUL. */
typedef struct {
    const char *a;
    size_t len_a;
    const char *b;
    size_t len_b;
} petl_srv_input;

/* A parsed POST /v1/predict body: {"task": NAME, "inputs": [TEXT | [TEXT] | [TEXT, TEXT], ...]}.
 * Owns everything: free with petl_srv_request_free (safe on a zeroed struct). */
typedef struct {
    char task[PETL_SRV_NAME_MAX + 1];
    size_t n_inputs;
    petl_srv_input *inputs; /* [n_inputs] */
    void *root;             /* the JSON document the strings point into */
} petl_srv_request;

/* Parses body[0..len) (need not be NUL-terminated). On success returns true with *out filled.
 * On failure returns false with *rej filled (400 malformed, 413 more than max_inputs inputs,
 * 404 never: the task's existence is the registry's business) and *out zeroed. Never reads past
 * len, never aborts, leaks nothing. */
bool petl_srv_parse_predict(const char *body, size_t len, size_t max_inputs, petl_srv_request *out,
                            petl_srv_reject *rej);
void petl_srv_request_free(petl_srv_request *r);

/* Parses a POST /v1/tasks body {"name": NAME, "path": PATH} into name / path (path: malloc'ed,
 * caller frees). False with *rej (400) on anything else. */
bool petl_srv_parse_load(const char *body, size_t len, char name[PETL_SRV_NAME_MAX + 1],
                         char **path, petl_srv_reject *rej);

/* Constant-time comparison of a presented token with the secret (time depends only on the
 * secret's length). */
bool petl_srv_token_equal(const char *given, size_t given_len, const char *secret,
                          size_t secret_len);

/* Fills *rej (when non-NULL) with status and a printf-formatted reason; the task registry
 * uses it too. */
void petl_srv_rejectf(petl_srv_reject *rej, int status, const char *fmt, ...) PETL_PRINTF(3, 4);

/* ====================================================== tasks and registry (src/srv_registry.c) */

/* A loaded task. Reference counted: the registry holds one reference while the task is
 * registered, each request or batch using it holds one more; the last release frees it. */
typedef struct petl_srv_task {
    char name[PETL_SRV_NAME_MAX + 1];
    char *path;             /* the folder it was loaded from (owned) */
    petl_task_model *tm;    /* owned; NULL in unit tests */
    petl_adapter_info info; /* owned */
    int num_labels;         /* 1 for regression */
    int max_len;            /* truncation of inputs (the adapter's max_len) */
    int64_t params;         /* floats the adapter adds to the base */
    int refs;               /* atomic */
    int removed;            /* atomic; set when unloaded from the registry */
} petl_srv_task;

/* Loads the adapter folder `dir` for `base` as task `name` (1 reference, caller's). */
petl_status petl_srv_task_load(const char *name, const char *dir, const petl_model *base,
                               const petl_base_identity *id, petl_srv_task **out, petl_error *err);
/* A task from parts (takes ownership of tm and *info, which is zeroed); for tests and for
 * callers that build task models themselves. */
petl_status petl_srv_task_wrap(const char *name, const char *dir, petl_task_model *tm,
                               petl_adapter_info *info, petl_srv_task **out, petl_error *err);
void petl_srv_task_acquire(petl_srv_task *t);
/* Drops one reference; frees the task at the last. NULL is a no-op. */
void petl_srv_task_release(petl_srv_task *t);

typedef struct petl_srv_registry petl_srv_registry;

petl_status petl_srv_registry_new(size_t max_tasks, petl_srv_registry **out, petl_error *err);
/* Releases the registry's references (tasks still in use live on until released). */
void petl_srv_registry_free(petl_srv_registry *r);
/* Adds t under t->name, taking a new reference. 409 when the name is taken, 507 when the
 * registry is full; the reason goes to rej. */
bool petl_srv_registry_add(petl_srv_registry *r, petl_srv_task *t, petl_srv_reject *rej);
/* Removes name: false when absent. Requests holding the task keep it until they finish. */
bool petl_srv_registry_remove(petl_srv_registry *r, const char *name);
/* The task under name with a reference for the caller (petl_srv_task_release), or NULL. */
petl_srv_task *petl_srv_registry_get(petl_srv_registry *r, const char *name);
/* A snapshot of every task in name order, each with a reference; *n tasks in the malloc'ed
 * array *out (caller releases each and frees the array). False only when out of memory. */
bool petl_srv_registry_list(petl_srv_registry *r, petl_srv_task ***out, size_t *n);
size_t petl_srv_registry_count(petl_srv_registry *r);

/* ================================================================== metrics (src/srv_metrics.c) */

typedef struct petl_srv_metrics petl_srv_metrics;

petl_status petl_srv_metrics_new(petl_srv_metrics **out, petl_error *err);
void petl_srv_metrics_free(petl_srv_metrics *m);
/* One HTTP response: route is a fixed label ("/v1/predict", "other", ...), never user input. */
void petl_srv_metrics_http(petl_srv_metrics *m, const char *route, int status);
/* One predict request for a registered task: its inputs, status, queue wait and end-to-end
 * latency (seconds; queue_s < 0 when it never reached the queue). */
void petl_srv_metrics_predict(petl_srv_metrics *m, const char *task, size_t inputs, int status,
                              double queue_s, double latency_s);
/* Connections turned away or cut: over the per-address limit, over the total limit (both
 * answered 503 and closed), or closed for not sending a request within the deadline. */
typedef enum {
    PETL_SRV_CONN_OVER_ADDRESS,
    PETL_SRV_CONN_OVER_TOTAL,
    PETL_SRV_CONN_DEADLINE,
    PETL_SRV_CONN_KINDS
} petl_srv_conn_event;
void petl_srv_metrics_conn(petl_srv_metrics *m, petl_srv_conn_event ev);
/* One batch run by the worker: rows and distinct tasks, and how long it ran. */
void petl_srv_metrics_batch(petl_srv_metrics *m, size_t rows, size_t tasks, double run_s);
/* The Prometheus text exposition (format 0.0.4), with gauges for the queue depth and loaded
 * tasks. malloc'ed (caller frees), NULL when out of memory. */
char *petl_srv_metrics_render(petl_srv_metrics *m, size_t queue_depth, size_t tasks_loaded);

/* ============================================================== request queue (src/srv_queue.c) */

/* The rows of one gathered batch, across requests and tasks, in arrival order. Row i belongs
 * to task[i], its tokens are enc[i], and its num_labels logits go to out[i]. */
typedef struct {
    size_t n;
    petl_srv_task *const *task;      /* [n] */
    const petl_encoding *const *enc; /* [n] */
    float *const *out;               /* [n] -> [task[i]->num_labels] */
    /* [n], each code PETL_OK on entry. An executor that cannot compute some rows (one task's
     * model failed) sets those rows' code and message and still returns PETL_OK: the queue
     * then fails only the jobs holding such rows, and the other tasks' requests succeed. */
    petl_error *row_err;
} petl_srv_rows;

/* Runs a batch: fills every out[i] whose row_err[i] it leaves PETL_OK, or returns an error to
 * fail the whole batch (e.g. out of memory for its scratch). Called on the worker thread only,
 * so an executor may keep unsynchronised state in `user`. */
typedef petl_status (*petl_srv_exec_fn)(void *user, const petl_srv_rows *rows, petl_error *err);

/* One request's worth of rows. The submitter fills task (holding a reference), n, enc and out;
 * the queue fills status / err / times and signals done. */
typedef struct petl_srv_job {
    petl_srv_task *task;
    size_t n;
    const petl_encoding *enc; /* [n] */
    float *out;               /* [n * task->num_labels] */
    petl_status status;
    petl_error err;
    double t_submit, t_start, t_done; /* monotonic seconds */
    /* private to the queue */
    struct petl_srv_job *next;
    int done;
    size_t off, take; /* rows already run; rows in the batch being run */
} petl_srv_job;

typedef struct petl_srv_queue petl_srv_queue;

/* Starts the worker thread. exec / user are used on it; metrics may be NULL.
 * Fairness: a job that does not fit one batch (more than max_batch rows, or more than
 * max_tokens padded tokens) runs one piece per batch, and after each piece goes back to the end
 * of the queue, so that requests arriving meanwhile (of any task) run between its pieces: a
 * small request waits for at most about one piece, not for the whole large job. */
petl_status petl_srv_queue_new(const petl_srv_queue_opts *o, petl_srv_exec_fn exec, void *user,
                               petl_srv_metrics *metrics, petl_srv_queue **out, petl_error *err);
/* Runs every job already queued, stops the worker and frees. New submissions are refused
 * from the start of the call. NULL is a no-op. */
void petl_srv_queue_free(petl_srv_queue *b);
/* Queues job and waits until it has run: true with job->status set; false when the queue is
 * full or the queue is stopping (job not run). */
bool petl_srv_queue_run(petl_srv_queue *b, petl_srv_job *job);
size_t petl_srv_queue_depth(petl_srv_queue *b);

/* ==================================================================== executor (src/executor.c) */

/* The default executor. Rows of tasks that share the base's weights (--tune adapter, layernorm,
 * head: petl_task_model_shares_base) run together through petl_task_predict_multi in padded
 * pieces of at most max_batch rows, on one context grown to the largest max_len, adapter size
 * and label count seen. Rows of other tasks (full, top:K), and the rows of a fused piece that
 * failed (so that the failure is pinned on its task), run task by task through
 * petl_task_predict with per-task contexts cached (the most recently used few). A task whose
 * forward fails fails only its own rows (row_err). pad_id is the tokenizer's. */
typedef struct petl_srv_exec petl_srv_exec;
petl_status petl_srv_exec_new(int max_batch, int32_t pad_id, petl_srv_exec **out, petl_error *err);
/* Bounds the padded tokens (rows x longest row) of one forward (0: max_batch rows only). Work
 * buffers sized for more than max_batch x 64 tokens are freed after the batch that needed them
 * (a request of long inputs must not leave hundreds of MB resident). */
void petl_srv_exec_set_max_tokens(petl_srv_exec *e, int max_tokens);
/* Rows x length (tokens) of the fused work context held between batches; 0 when none. */
size_t petl_srv_exec_held_tokens(const petl_srv_exec *e);
void petl_srv_exec_free(petl_srv_exec *e);
petl_status petl_srv_exec_run(void *exec, const petl_srv_rows *rows, petl_error *err);

#endif
