/* AdapterHub interop: a petl adapter written as an `adapters` (AdapterHub) bottleneck adapter
 * folder, loadable with adapters' `model.load_adapter(dir, use_safetensors=True)`.
 *
 * What maps (the adapters library's own source, 1.3.0: methods/modeling.py Adapter,
 * configuration/adapter_config.py BnConfig, heads/base.py):
 * - petl's adapter is the paper's: y = LN(x + h + A(h)) with A(h) = W_up act(W_down h + b) + b,
 *   after the attention output and after the FFN. That is adapters' double_seq_bn ("houlsby"):
 *   mh_adapter and output_adapter, residual_before_ln true, original_ln_after true, no adapter
 *   LayerNorms, scaling 1. petl's ffn placement is the same with mh_adapter false.
 * - the tensors keep their names but the adapter's: "<site>.adapters.<name>.adapter_down.0" /
 *   "adapter_up", where DistilBERT's sites are attention_adapters / output_adapters.
 * - the bottleneck m is stored as reduction_factor rf, which adapters turns back into
 *   int(H // rf) with Python's float floor division: rf = H / m is not always right (768 / 13
 *   gives 12), so rf is the double nearest H / m for which that division gives m.
 * - the head: a classification head (num_labels 1 for regression) over the first token with
 *   use_pooler false: layers 2 (dense, tanh, out) carry the pooler (the base's, or the trained
 *   one) and the classifier; a family without a pooler gets layers 1. A span head is a
 *   question_answering head of one layer.
 * - "version" is always written: without it adapters reads "gelu" as "gelu_new".
 * Trained LayerNorms have no place in an AdapterHub adapter: they go to a side file under the
 * model's own tensor names (load_state_dict(..., strict=False) puts them in place), and the
 * export says so. Modes that train the base's matrices (full, top:K) or no adapters (layernorm,
 * head) are refused: AdapterHub has no file for them. */
#include "adapter.h"
#include "arch.h"
#include "internal.h"
#include "model.h"
#include "taskmodel.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Python's float floor division x // y (Objects/floatobject.c float_floor_div) for finite
 * x, y > 0, as adapters computes int(H // reduction_factor). */
double petl_adapterhub_floordiv(double x, double y) {
    double mod = fmod(x, y), div = (x - mod) / y;
    if (mod != 0.0 && ((y < 0) != (mod < 0))) div -= 1.0;
    if (div == 0.0) return copysign(0.0, x / y);
    double fl = floor(div);
    return div - fl > 0.5 ? fl + 1.0 : fl;
}

double petl_adapterhub_reduction_factor(int hidden, int bottleneck) {
    if (hidden < 1 || bottleneck < 1 || bottleneck > hidden) return NAN;
    double rf = (double)hidden / bottleneck;
    /* a step or two to one side or the other: the division is off by at most one */
    for (int k = 0; k < 64; k++) {
        double q = petl_adapterhub_floordiv(hidden, rf);
        if (q == bottleneck) return rf;
        rf = nextafter(rf, q < bottleneck ? 0.0 : INFINITY);
    }
    return NAN;
}

/* ------------------------------------------------------------------------------- export */

typedef struct {
    petl_st_entry *e;
    char **names; /* owned */
    size_t n, cap;
} entries;

static petl_status add(entries *es, char *name, int rank, const int64_t *shape, const float *data,
                       petl_error *err) {
    if (!name) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    if (es->n == es->cap) {
        size_t cap = es->cap ? 2 * es->cap : 64;
        petl_st_entry *e = realloc(es->e, cap * sizeof *e);
        char **nm = e ? realloc(es->names, cap * sizeof *nm) : NULL;
        if (e) es->e = e;
        if (!nm) {
            free(name);
            return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
        }
        es->names = nm;
        es->cap = cap;
    }
    es->names[es->n] = name;
    es->e[es->n++] = (petl_st_entry){name, PETL_DT_F32, rank, shape, data};
    return PETL_OK;
}

static void entries_free(entries *es) {
    for (size_t i = 0; i < es->n; i++)
        free(es->names[i]);
    free(es->names);
    free(es->e);
}

/* malloc'd printf. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
    va_list ap, ap2;
    va_start(ap, f);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) vsnprintf(s, (size_t)n + 1, f, ap2);
    va_end(ap2);
    return s;
}

/* The adapters library's model class for a family (its AutoAdapterModel mapping), or NULL
 * where it has none (MPNet). */
static const char *model_class(const char *model_type) {
    static const char *const map[][2] = {{"bert", "BertAdapterModel"},
                                         {"roberta", "RobertaAdapterModel"},
                                         {"xlm-roberta", "XLMRobertaAdapterModel"},
                                         {"camembert", "XLMRobertaAdapterModel"},
                                         {"electra", "ElectraAdapterModel"},
                                         {"distilbert", "DistilBertAdapterModel"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i][0], model_type) == 0) return map[i][1];
    return NULL;
}

/* A petl adapter tensor name (".adapters.petl.") in adapters' spelling, or NULL when `name` is
 * not an adapter tensor. DistilBERT's sites are renamed. */
static char *adapter_name(const char *name, const char *model_type, const char *ah) {
    const char *p = strstr(name, ".adapters.petl.");
    if (!p) return NULL;
    const char *site_end = p, *site = p;
    while (site > name && site[-1] != '.')
        site--;
    size_t head = (size_t)(site - name), sl = (size_t)(site_end - site);
    const char *site2 = NULL;
    if (strcmp(model_type, "distilbert") == 0) {
        if (sl == 9 && strncmp(site, "attention", 9) == 0) site2 = "attention_adapters";
        if (sl == 3 && strncmp(site, "ffn", 3) == 0) site2 = "output_adapters";
    }
    return site2 ? fmt("%.*s%s.adapters.%s.%s", (int)head, name, site2, ah, p + 15)
                 : fmt("%.*s.adapters.%s.%s", (int)(site_end - name), name, ah, p + 15);
}

static json_t *bn_config(const petl_tune_config *tc, int H, int L) {
    json_t *c = json_object(), *leave = json_array();
    for (int l = 0; l < L; l++)
        if (!(tc->adapter_layers >> l & 1)) json_array_append_new(leave, json_integer(l));
    json_object_set_new(c, "adapter_residual_before_ln", json_false());
    json_object_set_new(c, "cross_adapter", json_false());
    json_object_set_new(c, "dropout", json_real(0.0));
    json_object_set_new(c, "init_weights", json_string("bert"));
    json_object_set_new(c, "inv_adapter", json_null());
    json_object_set_new(c, "inv_adapter_reduction_factor", json_null());
    json_object_set_new(c, "is_parallel", json_false());
    json_object_set_new(c, "leave_out", leave);
    json_object_set_new(c, "ln_after", json_false());
    json_object_set_new(c, "ln_before", json_false());
    json_object_set_new(c, "mh_adapter", json_boolean(tc->placement == PETL_PLACE_BOTH));
    json_object_set_new(c, "non_linearity", json_string(petl_adapter_act_name(tc->adapter_act)));
    json_object_set_new(c, "original_ln_after", json_true());
    json_object_set_new(c, "original_ln_before", json_false());
    json_object_set_new(c, "output_adapter", json_true());
    json_object_set_new(c, "phm_layer", json_false());
    json_object_set_new(c, "reduction_factor",
                        json_real(petl_adapterhub_reduction_factor(H, tc->adapter_size)));
    json_object_set_new(c, "residual_before_ln", json_true());
    json_object_set_new(c, "scaling", json_real(1.0));
    json_object_set_new(c, "stochastic_depth", json_real(0.0));
    json_object_set_new(c, "use_gating", json_false());
    return c;
}

static json_t *wrap(json_t *config, int H, const char *cls, const char *model_name,
                    const char *model_type, const char *name) {
    json_t *o = json_object();
    json_object_set_new(o, "config", config);
    json_object_set_new(o, "hidden_size", json_integer(H));
    json_object_set_new(o, "model_class", json_string(cls));
    json_object_set_new(o, "model_name", json_string(model_name));
    json_object_set_new(o, "model_type", json_string(model_type));
    json_object_set_new(o, "name", json_string(name));
    /* without a version, adapters renames "gelu" to "gelu_new" (utils.py ACTIVATION_RENAME) */
    json_object_set_new(o, "version", json_string("adapters.1.3.0"));
    return o;
}

static petl_status write_json(const char *dir, const char *file, json_t *o, petl_error *err) {
    char *text =
        o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17)) : NULL;
    char *path = petl_path_join(dir, file);
    petl_status s = !text || !path ? petl_fail(err, PETL_ERR_NOMEM, "out of memory") : PETL_OK;
    if (s == PETL_OK) {
        size_t n = strlen(text);
        char *t = realloc(text, n + 2);
        if (!t) {
            s = petl_fail(err, PETL_ERR_NOMEM, "out of memory");
        } else {
            text = t;
            memcpy(text + n, "\n", 2);
            s = petl_write_file(path, text, n + 1, err);
        }
    }
    free(text);
    free(path);
    json_decref(o);
    return s;
}

static bool is_head(const char *name) {
    return !strncmp(name, "classifier.", 11) || !strncmp(name, "qa_outputs.", 11);
}

/* The export's files in dir (an empty folder). */
static petl_status export_files(const petl_task_model *tm, const petl_adapter_info *info,
                                const char *dir, const char *name, const char *model_name,
                                petl_adapterhub_report *rep, petl_error *err) {
    const petl_model *base = petl_task_model_base(tm);
    const petl_arch *a = base->arch;
    const petl_tune_config *tc = petl_task_model_tune_config(tm);
    const int H = base->cfg.hidden_size, L = base->cfg.num_layers;
    const char *cls = model_class(a->model_type);
    entries ad = {0}, ln = {0}, hd = {0};
    petl_status s = PETL_OK;
    const float *pool_w = base->pool_w, *pool_b = base->pool_b; /* the trained one if any */
    int64_t pshape[2] = {H, H}, pbshape[1] = {H};
    for (size_t i = 0; i < petl_task_model_num_params(tm) && s == PETL_OK; i++) {
        const petl_param *p = petl_task_model_param(tm, i);
        char *an = adapter_name(p->name, a->model_type, name);
        if (an) {
            s = add(&ad, an, p->rank, p->shape, p->data, err);
        } else if (is_head(p->name)) {
            /* below */
        } else if (a->pooler_w && strncmp(p->name, a->prefix, strlen(a->prefix)) == 0 &&
                   !strcmp(p->name + strlen(a->prefix), a->pooler_w)) {
            pool_w = p->data;
        } else if (a->pooler_b && strncmp(p->name, a->prefix, strlen(a->prefix)) == 0 &&
                   !strcmp(p->name + strlen(a->prefix), a->pooler_b)) {
            pool_b = p->data;
        } else if (strstr(p->name, "LayerNorm") || strstr(p->name, "layer_norm")) {
            s = add(&ln, fmt("%s", p->name), p->rank, p->shape, p->data, err);
        } else {
            s = petl_fail(err, PETL_ERR_ARG,
                          "%s is trained too: AdapterHub has no place for it (only adapters, "
                          "LayerNorms and the head export)",
                          p->name);
        }
    }
    /* the head */
    const petl_param *cw = petl_task_model_find(tm, "classifier.weight"),
                     *cb = petl_task_model_find(tm, "classifier.bias"),
                     *qw = petl_task_model_find(tm, "qa_outputs.weight"),
                     *qb = petl_task_model_find(tm, "qa_outputs.bias");
    json_t *head = json_object();
    if (s == PETL_OK && tc->head == PETL_HEAD_SPAN && qw && qb) {
        json_object_set_new(head, "head_type", json_string("question_answering"));
        json_object_set_new(head, "num_labels", json_integer(2));
        json_object_set_new(head, "layers", json_integer(1));
        json_object_set_new(head, "activation_function", json_string("tanh"));
        s = add(&hd, fmt("heads.%s.1.weight", name), qw->rank, qw->shape, qw->data, err);
        if (s == PETL_OK)
            s = add(&hd, fmt("heads.%s.1.bias", name), qb->rank, qb->shape, qb->data, err);
    } else if (s == PETL_OK && cw && cb) {
        bool pooled = pool_w != NULL;
        json_object_set_new(head, "head_type", json_string("classification"));
        json_object_set_new(head, "num_labels", json_integer(tc->num_labels));
        json_object_set_new(head, "layers", json_integer(pooled ? 2 : 1));
        json_object_set_new(head, "activation_function", json_string("tanh"));
        json_object_set_new(head, "use_pooler", json_false());
        json_object_set_new(head, "bias", json_true());
        json_object_set_new(head, "dropout_prob", json_null());
        if (!info->regression) {
            json_t *l2i = json_object();
            for (size_t k = 0; k < info->n_labels; k++)
                json_object_set_new(l2i, info->labels[k], json_integer((json_int_t)k));
            json_object_set_new(head, "label2id", l2i);
        }
        int k = 1;
        if (pooled) {
            s = add(&hd, fmt("heads.%s.1.weight", name), 2, pshape, pool_w, err);
            if (s == PETL_OK) s = add(&hd, fmt("heads.%s.1.bias", name), 1, pbshape, pool_b, err);
            k = 4;
        }
        if (s == PETL_OK)
            s = add(&hd, fmt("heads.%s.%d.weight", name, k), cw->rank, cw->shape, cw->data, err);
        if (s == PETL_OK)
            s = add(&hd, fmt("heads.%s.%d.bias", name, k), cb->rank, cb->shape, cb->data, err);
    } else if (s == PETL_OK) {
        s = petl_fail(err, PETL_ERR_ARG, "the adapter has no head petl can export");
    }
    if (s == PETL_OK && ad.n == 0)
        s = petl_fail(err, PETL_ERR_ARG,
                      "the adapter holds no bottleneck adapters (tune mode %s): AdapterHub has "
                      "nothing to load",
                      petl_tune_name(tc->tune));
    char *p;
    if (s == PETL_OK) {
        p = petl_path_join(dir, "adapter.safetensors");
        s = p ? petl_st_write(p, ad.e, ad.n, NULL, 0, err)
              : petl_fail(err, PETL_ERR_NOMEM, "out of memory");
        free(p);
    }
    if (s == PETL_OK)
        s = write_json(dir, "adapter_config.json",
                       wrap(bn_config(tc, H, L), H, cls, model_name, a->model_type, name), err);
    else
        json_decref(head), head = NULL;
    if (s == PETL_OK) {
        p = petl_path_join(dir, "model_head.safetensors");
        s = p ? petl_st_write(p, hd.e, hd.n, NULL, 0, err)
              : petl_fail(err, PETL_ERR_NOMEM, "out of memory");
        free(p);
        json_t *h = head;
        head = NULL;
        if (s == PETL_OK)
            s = write_json(dir, "head_config.json",
                           wrap(h, H, cls, model_name, a->model_type, name), err);
        else
            json_decref(h);
    }
    if (s == PETL_OK && ln.n > 0) {
        p = petl_path_join(dir, PETL_ADAPTERHUB_LAYERNORMS);
        s = p ? petl_st_write(p, ln.e, ln.n, NULL, 0, err)
              : petl_fail(err, PETL_ERR_NOMEM, "out of memory");
        free(p);
    }
    json_decref(head);
    if (rep) {
        rep->adapter_tensors = ad.n;
        rep->head_tensors = hd.n;
        rep->layernorm_tensors = ln.n;
    }
    entries_free(&ad);
    entries_free(&ln);
    entries_free(&hd);
    return s;
}

static const char *const EXPORT_FILES[] = {"adapter.safetensors", "adapter_config.json",
                                           "model_head.safetensors", "head_config.json",
                                           PETL_ADAPTERHUB_LAYERNORMS};

petl_status petl_adapterhub_export(const petl_task_model *tm, const petl_adapter_info *info,
                                   const char *out, const char *name, const char *model_name,
                                   petl_adapterhub_report *rep, petl_error *err) {
    if (!tm || !info || !out || !name || !model_name)
        return petl_fail(err, PETL_ERR_ARG, "petl_adapterhub_export: NULL argument");
    if (rep) memset(rep, 0, sizeof *rep);
    const petl_model *base = petl_task_model_base(tm);
    if (!model_class(base->arch->model_type))
        return petl_fail(err, PETL_ERR_ARG,
                         "model_type %s: the adapters library has no adapter model for it "
                         "(AdapterHub: bert, roberta, xlm-roberta, camembert, electra, distilbert)",
                         base->arch->model_type);
    if (!*name || strchr(name, '.') || strchr(name, '/') || strlen(name) > 64)
        return petl_fail(err, PETL_ERR_ARG,
                         "adapter name \"%.64s\": 1 to 64 characters, no '.' or '/'", name);
    char dir[PATH_MAX], parent[PATH_MAX], leaf[PATH_MAX], tmp[2 * PATH_MAX + 16];
    petl_out_state state;
    petl_status s = petl_out_begin(out, false, dir, parent, leaf, tmp, &state, err);
    if (s != PETL_OK) return s;
    s = export_files(tm, info, tmp, name, model_name, rep, err);
    if (s == PETL_OK && rename(tmp, dir) != 0)
        s = petl_fail(err, PETL_ERR_IO, "%s: cannot move the export into place: %s", dir,
                      strerror(errno));
    if (s != PETL_OK) { /* only what this call wrote */
        for (size_t i = 0; i < sizeof EXPORT_FILES / sizeof EXPORT_FILES[0]; i++) {
            char *p = petl_path_join(tmp, EXPORT_FILES[i]);
            if (p) unlink(p);
            free(p);
        }
        rmdir(tmp);
    }
    return s;
}

/* ------------------------------------------------------------------------------- import */

/* Tensors from NAME.safetensors, else from the .bin torch.save wrote (adapters' default). */
static petl_status open_weights(const char *dir, const char *st_name, const char *bin_name,
                                petl_safetensors **out, petl_error *err) {
    char *p = petl_path_join(dir, st_name);
    if (!p) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    if (access(p, F_OK) == 0) {
        petl_status s = petl_st_open(p, out, err);
        free(p);
        return s;
    }
    free(p);
    if (!(p = petl_path_join(dir, bin_name)))
        return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    petl_status s = access(p, F_OK) == 0
                        ? petl_torch_open(p, out, err)
                        : petl_fail(err, PETL_ERR_IO, "%s: no %s or %s", dir, st_name, bin_name);
    free(p);
    return s;
}

static json_t *load_json(const char *dir, const char *file, petl_error *err) {
    char *p = petl_path_join(dir, file);
    json_error_t je;
    json_t *o = p ? json_load_file(p, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (!o)
        petl_fail(err, p ? PETL_ERR_FORMAT : PETL_ERR_NOMEM, "%s: %s", p ? p : file,
                  p ? je.text : "out of memory");
    else if (!json_is_object(o)) {
        petl_fail(err, PETL_ERR_FORMAT, "%s: not a JSON object", p);
        json_decref(o);
        o = NULL;
    }
    free(p);
    return o;
}

/* A boolean field of adapters' config that must have one value ("what" says why). */
static petl_status need(json_t *c, const char *path, const char *key, bool want, const char *what,
                        petl_error *err) {
    json_t *v = json_object_get(c, key);
    if (!v || json_is_null(v)) v = NULL;
    bool is = v && json_is_true(v);
    if (v && !json_is_boolean(v))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: config.%s must be true or false", path, key);
    if (is != want)
        return petl_fail(err, PETL_ERR_ARG,
                         "%s: config.%s = %s: %s (petl computes the paper's "
                         "adapter only: adapters' double_seq_bn, or its output adapter alone)",
                         path, key, is ? "true" : "false", what);
    return PETL_OK;
}

/* adapter_config.json's "config" -> the tune config (adapter mode, LayerNorms frozen). */
static petl_status read_bn_config(json_t *root, const char *path, int H, int L,
                                  petl_tune_config *tc, petl_error *err) {
    json_t *c = json_object_get(root, "config");
    if (!json_is_object(c))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: \"config\" must be an object", path);
    json_t *arch = json_object_get(c, "architecture");
    if (arch && !json_is_null(arch) &&
        !(json_is_string(arch) && !strcmp(json_string_value(arch), "bottleneck")))
        return petl_fail(err, PETL_ERR_ARG,
                         "%s: config.architecture %s: only bottleneck "
                         "adapters are computed by petl",
                         path, json_is_string(arch) ? json_string_value(arch) : "(not a string)");
    petl_status s;
    if ((s = need(c, path, "is_parallel", false, "parallel adapters", err)) != PETL_OK ||
        (s = need(c, path, "use_gating", false, "gated adapters", err)) != PETL_OK ||
        (s = need(c, path, "phm_layer", false, "PHM (Compacter) layers", err)) != PETL_OK ||
        (s = need(c, path, "ln_before", false, "an adapter LayerNorm", err)) != PETL_OK ||
        (s = need(c, path, "ln_after", false, "an adapter LayerNorm", err)) != PETL_OK ||
        (s = need(c, path, "adapter_residual_before_ln", false, "another residual", err)) !=
            PETL_OK ||
        (s = need(c, path, "original_ln_before", false,
                  "the adapter after the LayerNorm (seq_bn / Pfeiffer)", err)) != PETL_OK ||
        (s = need(c, path, "original_ln_after", true, "no LayerNorm after the adapter", err)) !=
            PETL_OK ||
        (s = need(c, path, "cross_adapter", false, "cross-attention adapters", err)) != PETL_OK ||
        (s = need(c, path, "output_adapter", true, "no adapter after the FFN", err)) != PETL_OK)
        return s;
    json_t *rb = json_object_get(c, "residual_before_ln");
    if (!json_is_true(rb))
        return petl_fail(err, PETL_ERR_ARG,
                         "%s: config.residual_before_ln must be true (the "
                         "paper's residual)",
                         path);
    json_t *inv = json_object_get(c, "inv_adapter");
    if (inv && !json_is_null(inv))
        return petl_fail(err, PETL_ERR_ARG,
                         "%s: config.inv_adapter: invertible adapters are not "
                         "computed by petl",
                         path);
    json_t *sc = json_object_get(c, "scaling");
    if (sc && !(json_is_number(sc) && json_number_value(sc) == 1.0))
        return petl_fail(err, PETL_ERR_ARG, "%s: config.scaling must be 1.0", path);
    json_t *mh = json_object_get(c, "mh_adapter");
    if (mh && !json_is_boolean(mh))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: config.mh_adapter must be true or false", path);
    tc->placement = json_is_true(mh) ? PETL_PLACE_BOTH : PETL_PLACE_FFN;
    /* the activation: without "version", adapters itself reads "gelu" as gelu_new */
    json_t *nl = json_object_get(c, "non_linearity");
    const char *act = json_is_string(nl) ? json_string_value(nl) : "";
    if (!json_object_get(root, "version"))
        act = !strcmp(act, "gelu") ? "gelu_new" : !strcmp(act, "gelu_orig") ? "gelu" : act;
    if (!strcmp(act, "silu")) act = "swish";
    petl_error e2;
    if (petl_adapter_act_parse(act, &tc->adapter_act, &e2) != PETL_OK)
        return petl_fail(err, PETL_ERR_ARG,
                         "%s: config.non_linearity %s is not computed by petl "
                         "(gelu, relu, swish)",
                         path, *act ? act : "(missing)");
    json_t *rf = json_object_get(c, "reduction_factor");
    if (!json_is_number(rf))
        return petl_fail(err, PETL_ERR_ARG,
                         "%s: config.reduction_factor must be one number (per-"
                         "layer factors are not supported)",
                         path);
    double m = json_number_value(rf) > 0 ? petl_adapterhub_floordiv(H, json_number_value(rf)) : 0;
    if (!(m >= 1 && m <= H))
        return petl_fail(err, PETL_ERR_ARG,
                         "%s: config.reduction_factor %g gives a bottleneck of "
                         "%g for hidden size %d",
                         path, json_number_value(rf), m, H);
    tc->adapter_size = (int)m;
    json_t *lo = json_object_get(c, "leave_out");
    if (lo && !json_is_array(lo))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: config.leave_out must be a list", path);
    for (size_t i = 0; lo && i < json_array_size(lo); i++) {
        json_t *v = json_array_get(lo, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= L)
            return petl_fail(err, PETL_ERR_FORMAT,
                             "%s: config.leave_out[%zu] is not a layer "
                             "0..%d",
                             path, i, L - 1);
        tc->adapter_layers &= ~((uint64_t)1 << json_integer_value(v));
    }
    return PETL_OK;
}

/* head_config.json -> the head of tc and the label names (by id). */
static petl_status read_head_config(json_t *root, const char *path, bool has_pooler,
                                    petl_tune_config *tc, petl_adapterhub_imported *im, int *layers,
                                    petl_error *err) {
    json_t *c = json_object_get(root, "config");
    if (!json_is_object(c))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: \"config\" must be an object", path);
    json_t *ht = json_object_get(c, "head_type"), *nl = json_object_get(c, "num_labels"),
           *ly = json_object_get(c, "layers"), *af = json_object_get(c, "activation_function"),
           *up = json_object_get(c, "use_pooler"), *bias = json_object_get(c, "bias");
    const char *type = json_is_string(ht) ? json_string_value(ht) : "(missing)";
    *layers = json_is_integer(ly) ? (int)json_integer_value(ly) : -1;
    if (json_is_true(up))
        return petl_fail(err, PETL_ERR_ARG,
                         "%s: config.use_pooler true: petl's head reads the "
                         "first token's hidden state",
                         path);
    if (bias && !json_is_true(bias))
        return petl_fail(err, PETL_ERR_ARG, "%s: config.bias must be true", path);
    if (!strcmp(type, "question_answering")) {
        if (*layers != 1 || !json_is_integer(nl) || json_integer_value(nl) != 2)
            return petl_fail(err, PETL_ERR_ARG,
                             "%s: a question_answering head of 1 layer and 2 "
                             "labels is what petl computes",
                             path);
        tc->head = PETL_HEAD_SPAN;
        tc->num_labels = 2;
        return PETL_OK;
    }
    if (strcmp(type, "classification") != 0)
        return petl_fail(err, PETL_ERR_ARG,
                         "%s: head_type %s: petl computes classification "
                         "(regression as 1 label) and question_answering heads",
                         path, type);
    if (!json_is_integer(nl) || json_integer_value(nl) < 1 || json_integer_value(nl) > 1000000)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: config.num_labels must be 1..1000000", path);
    if (*layers != 1 && *layers != 2)
        return petl_fail(err, PETL_ERR_ARG, "%s: config.layers %d: petl computes 1 or 2", path,
                         *layers);
    if (*layers == 2 && !(json_is_string(af) && !strcmp(json_string_value(af), "tanh")))
        return petl_fail(err, PETL_ERR_ARG,
                         "%s: config.activation_function of a 2-layer head "
                         "must be tanh",
                         path);
    if (*layers == 1 && has_pooler)
        return petl_fail(err, PETL_ERR_ARG,
                         "%s: config.layers 1: petl's head runs the base's "
                         "pooler first in a family that has one (a 2-layer head is computed)",
                         path);
    tc->head = PETL_HEAD_CLASSIFY;
    tc->num_labels = (int)json_integer_value(nl);
    tc->head_dense = *layers == 2;
    json_t *l2i = json_object_get(c, "label2id");
    if (json_is_object(l2i) && tc->num_labels > 1 &&
        json_object_size(l2i) == (size_t)tc->num_labels) {
        im->labels = calloc((size_t)tc->num_labels, sizeof *im->labels);
        if (!im->labels) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
        im->n_labels = (size_t)tc->num_labels;
        const char *k;
        json_t *v;
        json_object_foreach(l2i, k, v) {
            json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
            if (id < 0 || id >= tc->num_labels || im->labels[id])
                return petl_fail(err, PETL_ERR_FORMAT,
                                 "%s: label2id is not a numbering of "
                                 "0..%d",
                                 path, tc->num_labels - 1);
            if (!(im->labels[id] = strdup(k)))
                return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
        }
    }
    return PETL_OK;
}

/* Copies tensor `name` of st into p, checking its shape; counts it. */
static petl_status take(const petl_safetensors *st, const char *name, const petl_param *p,
                        size_t *used, petl_error *err) {
    const petl_st_tensor *t = petl_st_find(st, name);
    if (!t) return petl_fail(err, PETL_ERR_FORMAT, "%s: no tensor %s", "AdapterHub folder", name);
    bool same = t->rank == p->rank;
    for (int d = 0; same && d < p->rank; d++)
        same = t->shape[d] == p->shape[d];
    if (!same)
        return petl_fail(err, PETL_ERR_SHAPE,
                         "%s: %s has another shape than petl's %s (%lld x %lld)",
                         t->file ? t->file : "AdapterHub folder", name, p->name,
                         (long long)p->shape[0], (long long)(p->rank == 2 ? p->shape[1] : 1));
    (*used)++;
    return petl_st_read_f32(t, p->data, err);
}

void petl_adapterhub_imported_free(petl_adapterhub_imported *im) {
    for (size_t i = 0; im->labels && i < im->n_labels; i++)
        free(im->labels[i]);
    free(im->labels);
    memset(im, 0, sizeof *im);
}

petl_status petl_adapterhub_import(const char *dir, const petl_model *base, petl_task_model **out,
                                   petl_adapterhub_imported *im, petl_error *err) {
    *out = NULL;
    memset(im, 0, sizeof *im);
    const petl_arch *a = base->arch;
    const int H = base->cfg.hidden_size, L = base->cfg.num_layers;
    petl_status s;
    json_t *ac = load_json(dir, "adapter_config.json", err), *hc = NULL;
    if (!ac) return PETL_ERR_FORMAT; /* (load_json said why) */
    char apath[PATH_MAX], hpath[PATH_MAX];
    snprintf(apath, sizeof apath, "%s/adapter_config.json", dir);
    snprintf(hpath, sizeof hpath, "%s/head_config.json", dir);
    json_t *mt = json_object_get(ac, "model_type"), *hs = json_object_get(ac, "hidden_size"),
           *nm = json_object_get(ac, "name");
    petl_tune_config tc;
    petl_tune_config_default(&tc, &base->cfg);
    tc.freeze_layernorms = true; /* an AdapterHub adapter holds no LayerNorms */
    petl_safetensors *aw = NULL, *hw = NULL;
    petl_task_model *tm = NULL;
    int layers = 0;
    if (!json_is_string(mt) || strcmp(json_string_value(mt), a->model_type) != 0) {
        s = petl_fail(err, PETL_ERR_ARG,
                      "%s: model_type %s, but the base is %s (AdapterHub "
                      "records no base hash: give the --model it was trained on)",
                      apath, json_is_string(mt) ? json_string_value(mt) : "(missing)",
                      a->model_type);
    } else if (!json_is_integer(hs) || json_integer_value(hs) != H) {
        s = petl_fail(err, PETL_ERR_ARG, "%s: hidden_size %lld, the base's is %d", apath,
                      json_is_integer(hs) ? (long long)json_integer_value(hs) : -1LL, H);
    } else if (!json_is_string(nm) || !*json_string_value(nm) ||
               strlen(json_string_value(nm)) >= sizeof im->name ||
               strchr(json_string_value(nm), '.')) {
        s = petl_fail(err, PETL_ERR_FORMAT, "%s: \"name\" must be a name (no '.')", apath);
    } else {
        snprintf(im->name, sizeof im->name, "%s", json_string_value(nm));
        s = read_bn_config(ac, apath, H, L, &tc, err);
    }
    if (s == PETL_OK && !(hc = load_json(dir, "head_config.json", err))) s = PETL_ERR_FORMAT;
    if (s == PETL_OK) s = read_head_config(hc, hpath, base->has_pooler, &tc, im, &layers, err);
    if (s == PETL_OK) s = open_weights(dir, "adapter.safetensors", "pytorch_adapter.bin", &aw, err);
    if (s == PETL_OK)
        s = open_weights(dir, "model_head.safetensors", "pytorch_model_head.bin", &hw, err);
    if (s == PETL_OK) s = petl_task_model_new(base, &tc, 0, &tm, err);
    size_t used_a = 0, used_h = 0;
    for (size_t i = 0; s == PETL_OK && i < petl_task_model_num_params(tm); i++) {
        const petl_param *p = petl_task_model_param(tm, i);
        char *an = adapter_name(p->name, a->model_type, im->name), *hn = NULL;
        if (an) {
            s = take(aw, an, p, &used_a, err);
        } else {
            const bool qa = !strncmp(p->name, "qa_outputs.", 11),
                       cls = !strncmp(p->name, "classifier.", 11);
            const char *wb = strrchr(p->name, '.') + 1;
            /* the head: heads.NAME.K.weight / .bias, K the layer's index in adapters' head */
            hn = fmt("heads.%s.%d.%s", im->name, qa ? 1 : cls ? (layers == 2 ? 4 : 1) : 1, wb);
            s = hn ? take(hw, hn, p, &used_h, err)
                   : petl_fail(err, PETL_ERR_NOMEM, "out of memory");
        }
        free(an);
        free(hn);
    }
    if (s == PETL_OK && (used_a != petl_st_count(aw) || used_h != petl_st_count(hw))) {
        const petl_safetensors *st = used_a != petl_st_count(aw) ? aw : hw;
        s = petl_fail(err, PETL_ERR_ARG,
                      "%s: %zu tensors, petl reads %zu: it holds more than a "
                      "bottleneck adapter and head petl computes (first: %s)",
                      st == aw ? "adapter weights" : "head weights", petl_st_count(st),
                      st == aw ? used_a : used_h, petl_st_at(st, 0)->name);
    }
    if (aw) petl_st_close(aw);
    if (hw) petl_st_close(hw);
    json_decref(ac);
    json_decref(hc);
    if (s != PETL_OK) {
        petl_task_model_free(tm);
        petl_adapterhub_imported_free(im);
        return s;
    }
    *out = tm;
    return PETL_OK;
}
