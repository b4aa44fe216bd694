/* petl inspect: lists a .safetensors file's tensors, or summarises a model folder (config,
 * parameter count, key layout, files). Reads the files directly through the safetensors and
 * config parts of the library, so it also works on checkpoints the encoder would refuse. */
#include "cli.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f, "usage: petl inspect FILE_OR_DIR [--json]\n\n"
               "For a .safetensors file (or torch.save's pytorch_model.bin): one line per tensor\n"
               "(name, dtype, shape) in data order, then the tensor and parameter counts and the\n"
               "metadata.\n"
               "For a model folder (config.json + model.safetensors, or pytorch_model.bin): the\n"
               "config, the number of parameters, the key layout (the family's prefix such as\n"
               "\"bert.\", LayerNorm weight/bias or gamma/beta, pooler) and the files with their\n"
               "sizes.\n\n"
               "  --json   machine-readable output (one JSON object)\n"
               "  --help   this text\n");
}

/* ------------------------------------------------------------------------ shared helpers */

static bool is_float(petl_dtype dt) {
    return dt == PETL_DT_F32 || dt == PETL_DT_F16 || dt == PETL_DT_BF16 || dt == PETL_DT_F64;
}

/* Parameters: elements of the floating-point tensors (integer buffers such as position_ids
 * are not parameters). */
static int64_t count_params(const petl_safetensors *st) {
    int64_t n = 0;
    for (size_t i = 0; i < petl_st_count(st); i++) {
        const petl_st_tensor *t = petl_st_at(st, i);
        if (is_float(t->dtype)) n += t->numel; /* <= file size: cannot overflow */
    }
    return n;
}

static void print_shape(FILE *out, const petl_st_tensor *t) {
    putc('[', out);
    for (int d = 0; d < t->rank; d++)
        fprintf(out, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    putc(']', out);
}

/* Prints j to stdout followed by a newline and takes j over; 1 when out of memory. */
static int emit_json(json_t *j) {
    char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(j);
    if (!s) {
        fprintf(stderr, "petl inspect: cannot build the JSON output (out of memory, or a path "
                        "that is not UTF-8)\n");
        return 1;
    }
    puts(s);
    free(s);
    return 0;
}

static json_t *shape_json(const petl_st_tensor *t) {
    json_t *a = json_array();
    for (int d = 0; a && d < t->rank; d++)
        json_array_append_new(a, json_integer(t->shape[d]));
    return a;
}

static json_t *meta_json(const petl_safetensors *st) {
    json_t *m = json_object();
    for (size_t i = 0; m && i < petl_st_meta_count(st); i++) {
        const char *k, *v;
        petl_st_meta_at(st, i, &k, &v);
        json_object_set_new(m, k, json_string(v));
    }
    return m;
}

/* ------------------------------------------------------------------------------ one file */

static void file_text(const char *path, const petl_safetensors *st) {
    size_t w = 4;
    for (size_t i = 0; i < petl_st_count(st); i++) {
        size_t len = strlen(petl_st_at(st, i)->name);
        if (len > w) w = len;
    }
    for (size_t i = 0; i < petl_st_count(st); i++) {
        const petl_st_tensor *t = petl_st_at(st, i);
        printf("%-*s  %-7s ", (int)w, t->name, petl_dtype_name(t->dtype));
        print_shape(stdout, t);
        putchar('\n');
    }
    printf("%s: %zu tensors, %lld parameters\n", path, petl_st_count(st),
           (long long)count_params(st));
    for (size_t i = 0; i < petl_st_meta_count(st); i++) {
        const char *k, *v;
        petl_st_meta_at(st, i, &k, &v);
        printf("metadata: %s = %s\n", k, v);
    }
}

static json_t *file_json(const char *path, const petl_safetensors *st) {
    json_t *tensors = json_array();
    for (size_t i = 0; tensors && i < petl_st_count(st); i++) {
        const petl_st_tensor *t = petl_st_at(st, i);
        json_array_append_new(tensors,
                              json_pack("{s:s, s:s, s:o, s:[I,I]}", "name", t->name, "dtype",
                                        petl_dtype_name(t->dtype), "shape", shape_json(t),
                                        "data_offsets", (json_int_t)t->begin, (json_int_t)t->end));
    }
    return json_pack("{s:s, s:I, s:I, s:o, s:o}", "file", path, "num_tensors",
                     (json_int_t)petl_st_count(st), "num_params", (json_int_t)count_params(st),
                     "tensors", tensors, "metadata", meta_json(st));
}

/* A weights file: torch.save's zip format (it starts "PK\3\4": pytorch_model.bin), else
 * safetensors. */
static petl_status open_weights(const char *path, petl_safetensors **st, petl_error *err) {
    unsigned char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(magic, 1, 4, f) : 0;
    if (f) fclose(f);
    return n == 4 && !memcmp(magic, "PK\3\4", 4) ? petl_torch_open(path, st, err)
                                                 : petl_st_open(path, st, err);
}

static int inspect_file(const char *path, bool json) {
    petl_safetensors *st;
    petl_error err;
    if (open_weights(path, &st, &err) != PETL_OK) {
        fprintf(stderr, "petl inspect: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    if (json)
        rc = emit_json(file_json(path, st));
    else
        file_text(path, st);
    petl_st_close(st);
    return rc;
}

/* -------------------------------------------------------------------------- model folder */

typedef struct {
    petl_family_keys keys;  /* the family's key names (config.json's model_type) */
    const char *prefix;     /* keys.prefix or "" */
    const char *layer_norm; /* "weight/bias", "gamma/beta" or "absent" */
    bool pooler;
    bool position_ids;
    int layers;                 /* 1 + the highest encoder.layer.N in the file, 0 when none */
    size_t other;               /* tensors outside embeddings / encoder / pooler (task heads) */
    const petl_st_tensor *word; /* word embeddings, or NULL */
} layout;

static const petl_st_tensor *find2(const petl_safetensors *st, const char *prefix,
                                   const char *name) {
    char key[256];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    return petl_st_find(st, key);
}

static bool starts(const char *s, const char *p) {
    return strncmp(s, p, strlen(p)) == 0;
}

/* Counts the layers and the tensors that are not the encoder's (task heads). */
static void scan_names(const petl_safetensors *st, layout *l) {
    const petl_family_keys *k = &l->keys;
    char enc[64], emb[64], pool[64], extra[2][96];
    snprintf(enc, sizeof enc, "%s%s", l->prefix, k->layers);
    snprintf(emb, sizeof emb, "%s%s", l->prefix, k->emb);
    snprintf(pool, sizeof pool, "%spooler.", l->prefix);
    for (int i = 0; i < 2; i++)
        snprintf(extra[i], sizeof extra[i], "%s%s", l->prefix, k->extra[i] ? k->extra[i] : "");
    for (size_t i = 0; i < petl_st_count(st); i++) {
        const char *name = petl_st_at(st, i)->name;
        if (starts(name, enc)) {
            long n = strtol(name + strlen(enc), NULL, 10);
            if (n >= 0 && n < 1000000 && n + 1 > l->layers) l->layers = (int)n + 1;
        } else if (!starts(name, emb) && !(k->pooler_w && starts(name, pool)) &&
                   !(k->extra[0] && starts(name, extra[0])) &&
                   !(k->extra[1] && starts(name, extra[1]))) {
            l->other++;
        }
    }
}

static layout find_layout(const petl_safetensors *st, const petl_config *c) {
    layout l = {.prefix = "", .layer_norm = "absent"};
    petl_family_keys_get(c->model_type, &l.keys); /* the config was accepted: always found */
    const petl_family_keys *k = &l.keys;
    if (!find2(st, "", k->word_emb) && find2(st, k->prefix, k->word_emb)) l.prefix = k->prefix;
    l.word = find2(st, l.prefix, k->word_emb);
    char gamma[96];
    snprintf(gamma, sizeof gamma, "%.*sgamma", (int)(strlen(k->emb_ln_w) - strlen("weight")),
             k->emb_ln_w);
    if (find2(st, l.prefix, k->emb_ln_w))
        l.layer_norm = "weight/bias";
    else if (find2(st, l.prefix, gamma))
        l.layer_norm = "gamma/beta";
    l.pooler = k->pooler_w && find2(st, l.prefix, k->pooler_w) != NULL;
    l.position_ids = find2(st, l.prefix, "embeddings.position_ids") != NULL;
    scan_names(st, &l);
    return l;
}

/* Where the file disagrees with the config, a line for the user (empty string when fine). */
static void check_layout(const layout *l, const petl_config *c, char *buf, size_t cap) {
    buf[0] = '\0';
    if (!l->word)
        snprintf(buf, cap, "no %s%s in the weights", l->prefix, l->keys.word_emb);
    else if (l->word->rank != 2 || l->word->shape[0] != c->vocab_size ||
             l->word->shape[1] != (c->embedding_size ? c->embedding_size : c->hidden_size))
        snprintf(buf, cap, "word embeddings are not [vocab_size %d, %s %d]", c->vocab_size,
                 c->embedding_size ? "embedding_size" : "hidden_size",
                 c->embedding_size ? c->embedding_size : c->hidden_size);
    else if (l->layers != c->num_layers)
        snprintf(buf, cap, "the file has %d encoder layers, the config %d", l->layers,
                 c->num_layers);
}

typedef struct {
    char name[256];
    long long bytes;
} file_entry;

static int cmp_files(const void *a, const void *b) {
    return strcmp(((const file_entry *)a)->name, ((const file_entry *)b)->name);
}

/* The regular files of dir, sorted by name (malloc'ed, caller frees); NULL on failure. */
static file_entry *list_files(const char *dir, size_t *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    size_t cap = 16;
    file_entry *v = malloc(cap * sizeof *v);
    for (struct dirent *de; v && (de = readdir(d));) {
        char *p = petl_path_join(dir, de->d_name);
        struct stat sb;
        bool keep = p && de->d_name[0] != '.' && stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
        free(p);
        if (!keep) continue;
        if (*n == cap) {
            file_entry *g = realloc(v, (cap *= 2) * sizeof *v);
            if (!g) free(v);
            v = g;
            if (!v) break;
        }
        snprintf(v[*n].name, sizeof v[*n].name, "%s", de->d_name);
        v[(*n)++].bytes = (long long)sb.st_size;
    }
    closedir(d);
    if (v) qsort(v, *n, sizeof *v, cmp_files);
    return v;
}

static void dir_text(const char *dir, const petl_config *c, const petl_safetensors *st,
                     const layout *l, const char *problem, const file_entry *f, size_t nf) {
    int64_t params = count_params(st);
    printf("model folder: %s\n", dir);
    printf("config: %s, %d layers, hidden %d, %d heads (head size %d), intermediate %d,\n"
           "        vocab %d, act %s, max positions %d, type vocab %d, layer norm eps %g\n",
           c->model_type, c->num_layers, c->hidden_size, c->num_heads,
           c->hidden_size / c->num_heads, c->intermediate_size, c->vocab_size,
           petl_act_name(c->hidden_act), c->max_position_embeddings, c->type_vocab_size,
           (double)c->layer_norm_eps);
    printf("parameters: %lld", (long long)params);
    if (params >= 100000) printf(" (%.1fM)", (double)params / 1e6);
    printf(" in %zu tensors\n", petl_st_count(st));
    printf("key layout: %s\"%s\" prefix, LayerNorm %s, pooler %s, position_ids %s, %d layers in "
           "the file",
           *l->prefix ? "" : "no ", l->keys.prefix, l->layer_norm, l->pooler ? "present" : "absent",
           l->position_ids ? "present" : "absent", l->layers);
    if (l->other) printf(", %zu other tensors (heads)", l->other);
    putchar('\n');
    if (*problem) printf("warning: %s\n", problem);
    printf("files:\n");
    for (size_t i = 0; i < nf; i++)
        printf("  %-28s %12lld bytes (%.1f MB)\n", f[i].name, f[i].bytes, f[i].bytes / 1e6);
}

/* The shortest decimal that reads back as the same float (1e-12, not 9.99999996e-13). */
static double float_for_json(float x) {
    char buf[32];
    for (int prec = 6; prec < 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
        if ((float)strtod(buf, NULL) == x) return strtod(buf, NULL);
    }
    return (double)x;
}

static json_t *config_json(const petl_config *c) {
    return json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:i, s:f}", "model_type",
                     c->model_type, "num_layers", c->num_layers, "hidden_size", c->hidden_size,
                     "num_heads", c->num_heads, "head_size", c->hidden_size / c->num_heads,
                     "intermediate_size", c->intermediate_size, "vocab_size", c->vocab_size,
                     "max_position_embeddings", c->max_position_embeddings, "hidden_act",
                     petl_act_name(c->hidden_act), "type_vocab_size", c->type_vocab_size,
                     "layer_norm_eps", float_for_json(c->layer_norm_eps));
}

static json_t *dir_json(const char *dir, const petl_config *c, const petl_safetensors *st,
                        const layout *l, const char *problem, const file_entry *f, size_t nf) {
    json_t *files = json_array();
    for (size_t i = 0; files && i < nf; i++)
        json_array_append_new(files,
                              json_pack("{s:s, s:I}", "name", f[i].name, "bytes", f[i].bytes));
    json_t *lay = json_pack("{s:s, s:s, s:b, s:b, s:i, s:I}", "prefix", l->prefix, "layer_norm",
                            l->layer_norm, "pooler", l->pooler, "position_ids", l->position_ids,
                            "layers_in_file", l->layers, "other_tensors", (json_int_t)l->other);
    return json_pack("{s:s, s:o, s:I, s:I, s:o, s:s?, s:o}", "model_dir", dir, "config",
                     config_json(c), "num_params", (json_int_t)count_params(st), "num_tensors",
                     (json_int_t)petl_st_count(st), "layout", lay, "warning",
                     *problem ? problem : NULL, "files", files);
}

static int inspect_dir(const char *dir, bool json) {
    petl_config cfg;
    petl_safetensors *st = NULL;
    petl_error err;
    char *cpath = petl_path_join(dir, "config.json");
    char *mpath = petl_path_join(dir, "model.safetensors");
    file_entry *files = NULL;
    int rc = 1;
    if (!cpath || !mpath) {
        fprintf(stderr, "petl inspect: out of memory\n");
        goto done;
    }
    if (petl_config_load(cpath, &cfg, &err) != PETL_OK) {
        fprintf(stderr, "petl inspect: %s\n", err.msg);
        goto done;
    }
    if (access(mpath, F_OK) != 0) { /* a folder with torch.save's file only */
        free(mpath);
        mpath = petl_path_join(dir, "pytorch_model.bin");
        if (!mpath || access(mpath, F_OK) != 0) {
            fprintf(stderr, "petl inspect: %s: no model.safetensors or pytorch_model.bin\n", dir);
            goto done;
        }
    }
    if (open_weights(mpath, &st, &err) != PETL_OK) {
        fprintf(stderr, "petl inspect: %s\n", err.msg);
        goto done;
    }
    size_t nf;
    files = list_files(dir, &nf);
    if (!files) nf = 0;
    layout l = find_layout(st, &cfg);
    char problem[256];
    check_layout(&l, &cfg, problem, sizeof problem);
    rc = 0;
    if (json)
        rc = emit_json(dir_json(dir, &cfg, st, &l, problem, files, nf));
    else
        dir_text(dir, &cfg, st, &l, problem, files, nf);
done:
    free(files);
    petl_st_close(st);
    free(cpath);
    free(mpath);
    return rc;
}

/* FILE_OR_DIR, the one positional argument. */
static int set_path(const char *cmd, const char *opt, const char *v, void *dst) {
    const char **path = dst;
    (void)opt;
    if (*path) {
        fprintf(stderr, "petl %s: give one file or folder, not '%s' and '%s'\n\n", cmd, *path, v);
        usage(stderr);
        return -1;
    }
    *path = v;
    return 0;
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    bool json = false;
    const cli_opt opts[] = {
        CLI_OPT_CUSTOM(NULL, set_path, &path),
        CLI_OPT_FLAG("--json", &json),
    };
    int rc = cli_parse_options("inspect", argc, argv, opts, CLI_N_OPTS(opts), usage);
    if (rc != CLI_GO_ON) return rc;
    if (!path) {
        usage(stderr);
        return 2;
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return inspect_dir(path, json);
    return inspect_file(path, json);
}
