/* petl serve's task registry: a served task (an adapter and head loaded onto the shared base,
 * reference counted so that unloading never frees it under a request or a cached executor
 * context) and the registry, name -> task, behind one mutex. Depends on the adapter loader and
 * the task model (petl.h), the task-name rule and petl_srv_rejectf (srv_request.c). */
#include "server.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

petl_status petl_srv_task_wrap(const char *name, const char *dir, petl_task_model *tm,
                               petl_adapter_info *info, petl_srv_task **out, petl_error *err) {
    *out = NULL;
    if (!petl_srv_name_valid(name, strlen(name)))
        return petl_fail(err, PETL_ERR_ARG, "'%s': not a valid task name", name);
    petl_srv_task *t = calloc(1, sizeof *t);
    char *p = strdup(dir ? dir : "");
    if (!t || !p) {
        free(t);
        free(p);
        return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", name);
    }
    snprintf(t->name, sizeof t->name, "%s", name);
    t->path = p;
    t->tm = tm;
    t->info = *info;
    memset(info, 0, sizeof *info);
    t->num_labels = t->info.regression ? 1 : (int)t->info.n_labels;
    t->max_len = t->info.max_len;
    t->params = tm ? petl_task_model_trainable_count(tm) : 0;
    t->refs = 1;
    *out = t;
    return PETL_OK;
}

petl_status petl_srv_task_load(const char *name, const char *dir, const petl_model *base,
                               const petl_base_identity *id, petl_srv_task **out, petl_error *err) {
    *out = NULL;
    petl_adapter_info info;
    memset(&info, 0, sizeof info);
    petl_task_model *tm = NULL;
    petl_status s = petl_adapter_load(dir, base, id, &info, &tm, err);
    if (s != PETL_OK) {
        petl_adapter_info_free(&info);
        return s;
    }
    if (info.tune.head != PETL_HEAD_CLASSIFY) {
        petl_task_model_free(tm);
        petl_adapter_info_free(&info);
        return petl_fail(err, PETL_ERR_UNSUPPORTED,
                         "%s: a span (question answering) adapter cannot be served; use petl "
                         "predict",
                         dir);
    }
    if ((!info.regression && info.n_labels < 2) || info.max_len < 3) {
        petl_task_model_free(tm);
        petl_adapter_info_free(&info);
        return petl_fail(err, PETL_ERR_FORMAT, "%s: %zu labels and max_len %d cannot be served",
                         dir, info.n_labels, info.max_len);
    }
    s = petl_srv_task_wrap(name, dir, tm, &info, out, err);
    if (s != PETL_OK) {
        petl_task_model_free(tm);
        petl_adapter_info_free(&info);
    }
    return s;
}

void petl_srv_task_acquire(petl_srv_task *t) {
    __atomic_fetch_add(&t->refs, 1, __ATOMIC_RELAXED);
}

void petl_srv_task_release(petl_srv_task *t) {
    if (!t) return;
    if (__atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    petl_task_model_free(t->tm);
    petl_adapter_info_free(&t->info);
    free(t->path);
    free(t);
}

struct petl_srv_registry {
    pthread_mutex_t mu;
    petl_srv_task **tasks; /* [n], sorted by name; one reference each */
    size_t n, cap, max;
};

petl_status petl_srv_registry_new(size_t max_tasks, petl_srv_registry **out, petl_error *err) {
    petl_srv_registry *r = calloc(1, sizeof *r);
    if (!r) return petl_fail(err, PETL_ERR_NOMEM, "task registry: out of memory");
    pthread_mutex_init(&r->mu, NULL);
    r->max = max_tasks;
    *out = r;
    return PETL_OK;
}

void petl_srv_registry_free(petl_srv_registry *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) {
        __atomic_store_n(&r->tasks[i]->removed, 1, __ATOMIC_RELEASE);
        petl_srv_task_release(r->tasks[i]);
    }
    free(r->tasks);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Index of name, or of where it would go (*found false). Caller holds mu. */
static size_t registry_find(const petl_srv_registry *r, const char *name, bool *found) {
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->tasks[mid]->name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

bool petl_srv_registry_add(petl_srv_registry *r, petl_srv_task *t, petl_srv_reject *rej) {
    pthread_mutex_lock(&r->mu);
    bool found, ok = false;
    size_t at = registry_find(r, t->name, &found);
    if (found) {
        petl_srv_rejectf(rej, 409, "a task named '%s' is already loaded (unload it first)",
                         t->name);
        goto done;
    }
    if (r->n >= r->max) {
        petl_srv_rejectf(rej, 507, "%zu tasks are loaded, the limit", r->max);
        goto done;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        petl_srv_task **nt = realloc(r->tasks, cap * sizeof *nt);
        if (!nt) {
            petl_srv_rejectf(rej, 500, "out of memory");
            goto done;
        }
        r->tasks = nt;
        r->cap = cap;
    }
    memmove(r->tasks + at + 1, r->tasks + at, (r->n - at) * sizeof *r->tasks);
    r->tasks[at] = t;
    r->n++;
    petl_srv_task_acquire(t);
    ok = true;
done:
    pthread_mutex_unlock(&r->mu);
    return ok;
}

bool petl_srv_registry_remove(petl_srv_registry *r, const char *name) {
    pthread_mutex_lock(&r->mu);
    bool found;
    size_t at = registry_find(r, name, &found);
    petl_srv_task *t = NULL;
    if (found) {
        t = r->tasks[at];
        memmove(r->tasks + at, r->tasks + at + 1, (r->n - at - 1) * sizeof *r->tasks);
        r->n--;
    }
    pthread_mutex_unlock(&r->mu);
    if (t) {
        /* The executor's context cache sees the flag and lets its reference go. */
        __atomic_store_n(&t->removed, 1, __ATOMIC_RELEASE);
        petl_srv_task_release(t);
    }
    return found;
}

petl_srv_task *petl_srv_registry_get(petl_srv_registry *r, const char *name) {
    pthread_mutex_lock(&r->mu);
    bool found;
    size_t at = registry_find(r, name, &found);
    petl_srv_task *t = found ? r->tasks[at] : NULL;
    if (t) petl_srv_task_acquire(t);
    pthread_mutex_unlock(&r->mu);
    return t;
}

bool petl_srv_registry_list(petl_srv_registry *r, petl_srv_task ***out, size_t *n) {
    pthread_mutex_lock(&r->mu);
    *n = r->n;
    *out = malloc((r->n ? r->n : 1) * sizeof **out);
    if (*out) {
        for (size_t i = 0; i < r->n; i++) {
            (*out)[i] = r->tasks[i];
            petl_srv_task_acquire(r->tasks[i]);
        }
    } else {
        *n = 0;
    }
    pthread_mutex_unlock(&r->mu);
    return *out != NULL;
}

size_t petl_srv_registry_count(petl_srv_registry *r) {
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}
