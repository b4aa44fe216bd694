/* safetensors: maps, validates and writes HuggingFace's tensor file format.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON (one object), the data buffer.
 * The reader applies every check of the reference reader (huggingface/safetensors) and is
 * stricter where the reference is lax: duplicate names, exact 64-bit integers, checked
 * arithmetic everywhere, bounded nesting, no tensor named __metadata__, no unknown entry keys.
 * tests/golden/safetensors/ pins our verdicts against the reference on crafted files. */
#include "internal.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "petl reads and writes tensor data in host byte order and needs a little-endian host"
#endif

/* The reference reader's limit on N. */
#define ST_MAX_HEADER 100000000ull
/* A valid header nests three deep (root, entry, shape); anything deeper is malformed, and the
 * bound keeps the JSON parser's recursion small whatever the input. */
#define ST_MAX_DEPTH 8

struct petl_safetensors {
    void *map; /* the mapped file (petl_st_open), else NULL */
    size_t map_len;
    json_t *header;          /* owns the tensor names and metadata strings (safetensors) */
    char *names;             /* owns the tensor names of another format (petl_st_adopt) */
    petl_st_tensor *tensors; /* [n] in data-offset order */
    size_t n;
    const petl_st_tensor **by_name; /* [n] sorted by name, for petl_st_find */
    const char **meta;              /* [2 * n_meta] key, value pairs in file order */
    size_t n_meta;
    char *what; /* the file's name, for the tensors' messages (petl_st_tensor.file) */
};

/* ------------------------------------------------------------------------------ dtypes */

static const struct {
    const char *name;
    size_t size;
} st_dtypes[] = {
    [PETL_DT_BOOL] = {"BOOL", 1},       [PETL_DT_U8] = {"U8", 1},
    [PETL_DT_I8] = {"I8", 1},           [PETL_DT_U16] = {"U16", 2},
    [PETL_DT_I16] = {"I16", 2},         [PETL_DT_F16] = {"F16", 2},
    [PETL_DT_BF16] = {"BF16", 2},       [PETL_DT_U32] = {"U32", 4},
    [PETL_DT_I32] = {"I32", 4},         [PETL_DT_F32] = {"F32", 4},
    [PETL_DT_U64] = {"U64", 8},         [PETL_DT_I64] = {"I64", 8},
    [PETL_DT_F64] = {"F64", 8},         [PETL_DT_F8_E4M3] = {"F8_E4M3", 1},
    [PETL_DT_F8_E5M2] = {"F8_E5M2", 1},
};
#define ST_NUM_DTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

/* Dtypes the reference (0.8) knows but petl does not: refused as unsupported, not malformed.
 * F4 and F6 are sub-byte types whose sizes the byte arithmetic here cannot express. */
static const char *const st_foreign_dtypes[] = {
    "F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "C64",
};

static bool dtype_valid(petl_dtype dt) {
    return (unsigned)dt < ST_NUM_DTYPES;
}

const char *petl_dtype_name(petl_dtype dt) {
    return dtype_valid(dt) ? st_dtypes[dt].name : "?";
}

size_t petl_dtype_size(petl_dtype dt) {
    return dtype_valid(dt) ? st_dtypes[dt].size : 0;
}

static bool dtype_parse(const char *s, petl_dtype *out) {
    for (size_t i = 0; i < ST_NUM_DTYPES; i++) {
        if (!strcmp(s, st_dtypes[i].name)) {
            *out = (petl_dtype)i;
            return true;
        }
    }
    return false;
}

static bool dtype_foreign(const char *s) {
    for (size_t i = 0; i < sizeof st_foreign_dtypes / sizeof st_foreign_dtypes[0]; i++)
        if (!strcmp(s, st_foreign_dtypes[i])) return true;
    return false;
}

/* ------------------------------------------------------------------------------ header */

static uint64_t read_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Rejects, before the JSON parser sees them, what it would accept or handle badly: nesting
 * deeper than ST_MAX_DEPTH (bounded recursion); a minus sign outside strings (jansson reads
 * "-0" as the integer 0, but no number in a header may be negative, and the reference refuses
 * "-0" too); control bytes, which JSON allows nowhere but jansson may take for the end. */
static petl_status header_prescan(const char *h, size_t n, const char *what, petl_error *err) {
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            return petl_fail(err, PETL_ERR_FORMAT,
                             "%s: control byte 0x%02x in the header at byte %zu", what, c, 8 + i);
        if (in_string) {
            if (c == '\\')
                i++; /* skip the escaped character, which may be a quote */
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > ST_MAX_DEPTH)
                return petl_fail(err, PETL_ERR_FORMAT,
                                 "%s: header nests deeper than %d levels at byte %zu", what,
                                 ST_MAX_DEPTH, 8 + i);
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == '-') {
            return petl_fail(err, PETL_ERR_FORMAT, "%s: negative number in the header at byte %zu",
                             what, 8 + i);
        }
    }
    return PETL_OK;
}

/* A JSON value as a non-negative 64-bit integer; false for reals and anything else. */
static bool json_u63(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Formats shape as "[a, b]" into buf (always NUL-terminated, cut short when too long). */
static void shape_str(const petl_st_tensor *t, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->rank && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

static petl_status entry_dtype(const json_t *v, const char *what, const char *name,
                               petl_st_tensor *t, petl_error *err) {
    if (!json_is_string(v))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: tensor '%s': dtype is not a string", what,
                         name);
    const char *s = json_string_value(v);
    if (dtype_parse(s, &t->dtype)) return PETL_OK;
    if (dtype_foreign(s))
        return petl_fail(err, PETL_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported",
                         what, name, s);
    return petl_fail(err, PETL_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", what, name, s);
}

static petl_status entry_shape(const json_t *v, const char *what, const char *name,
                               petl_st_tensor *t, petl_error *err) {
    if (!json_is_array(v))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: tensor '%s': shape is not an array", what,
                         name);
    size_t rank = json_array_size(v);
    if (rank > PETL_ST_MAX_RANK)
        return petl_fail(err, PETL_ERR_UNSUPPORTED,
                         "%s: tensor '%s': rank %zu is over petl's limit of %d", what, name, rank,
                         PETL_ST_MAX_RANK);
    t->rank = (int)rank;
    t->numel = 1;
    for (size_t d = 0; d < rank; d++) {
        uint64_t dim;
        if (!json_u63(json_array_get(v, d), &dim))
            return petl_fail(err, PETL_ERR_FORMAT,
                             "%s: tensor '%s': shape[%zu] is not a non-negative integer", what,
                             name, d);
        t->shape[d] = (int64_t)dim;
    }
    /* Checked at every step, so that a product that wraps to 0 cannot pass for an empty
     * tensor. A real zero dimension makes the rest harmless, as in the reference. */
    for (size_t d = 0; d < rank; d++) {
        if (__builtin_mul_overflow(t->numel, t->shape[d], &t->numel))
            return petl_fail(err, PETL_ERR_FORMAT,
                             "%s: tensor '%s': shape product overflows 64 bits", what, name);
    }
    return PETL_OK;
}

static petl_status entry_offsets(const json_t *v, const char *what, const char *name,
                                 petl_st_tensor *t, petl_error *err) {
    if (!json_is_array(v) || json_array_size(v) != 2 ||
        !json_u63(json_array_get(v, 0), &t->begin) || !json_u63(json_array_get(v, 1), &t->end))
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets must be two non-negative integers", what,
                         name);
    if (t->end < t->begin)
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", what,
                         name, (unsigned long long)t->begin, (unsigned long long)t->end);
    return PETL_OK;
}

/* The byte length the offsets give must be exactly shape product x dtype size. */
static petl_status entry_check_size(const char *what, const char *name, const petl_st_tensor *t,
                                    petl_error *err) {
    uint64_t nbytes;
    if (__builtin_mul_overflow((uint64_t)t->numel, (uint64_t)petl_dtype_size(t->dtype), &nbytes))
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: tensor '%s': byte size of the shape overflows 64 bits", what, name);
    if (t->end - t->begin == nbytes) return PETL_OK;
    char shp[96];
    shape_str(t, shp, sizeof shp);
    return petl_fail(err, PETL_ERR_FORMAT,
                     "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but shape %s "
                     "of %s needs %llu",
                     what, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                     (unsigned long long)(t->end - t->begin), shp, petl_dtype_name(t->dtype),
                     (unsigned long long)nbytes);
}

static petl_status parse_entry(const char *what, const char *name, json_t *v, petl_st_tensor *t,
                               petl_error *err) {
    if (!json_is_object(v))
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: tensor '%s': expected an object with dtype, shape and data_offsets",
                         what, name);
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return petl_fail(err, PETL_ERR_FORMAT, "%s: tensor '%s': unknown key '%s'", what, name,
                             key);
    }
    static const char *const need[] = {"dtype", "shape", "data_offsets"};
    for (size_t i = 0; i < 3; i++)
        if (!json_object_get(v, need[i]))
            return petl_fail(err, PETL_ERR_FORMAT, "%s: tensor '%s': missing '%s'", what, name,
                             need[i]);
    t->name = name;
    petl_status s = entry_dtype(json_object_get(v, "dtype"), what, name, t, err);
    if (s == PETL_OK) s = entry_shape(json_object_get(v, "shape"), what, name, t, err);
    if (s == PETL_OK) s = entry_offsets(json_object_get(v, "data_offsets"), what, name, t, err);
    if (s == PETL_OK) s = entry_check_size(what, name, t, err);
    return s;
}

static petl_status parse_meta(petl_safetensors *st, const char *what, json_t *v, petl_error *err) {
    if (!json_is_object(v))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: __metadata__ is not an object", what);
    /* A tensor entry under this name would land here: say so rather than "not a string". */
    if (json_object_get(v, "data_offsets") && !json_is_string(json_object_get(v, "data_offsets")))
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: a tensor may not be named __metadata__ (reserved for metadata)",
                         what);
    st->meta = calloc(2 * json_object_size(v) + 1, sizeof *st->meta);
    if (!st->meta) return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        if (!json_is_string(val))
            return petl_fail(err, PETL_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string",
                             what, key);
        st->meta[2 * st->n_meta] = key;
        st->meta[2 * st->n_meta + 1] = json_string_value(val);
        st->n_meta++;
    }
    return PETL_OK;
}

static int cmp_offsets(const void *a, const void *b) {
    const petl_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name); /* zero-size tensors may share an offset */
}

static int cmp_names(const void *a, const void *b) {
    const petl_st_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* By name, for petl_st_find; a name given twice is refused. */
static petl_status index_names(petl_safetensors *st, const char *what, petl_error *err) {
    st->by_name = malloc((st->n + 1) * sizeof *st->by_name);
    if (!st->by_name) return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < st->n; i++)
        st->by_name[i] = &st->tensors[i];
    qsort(st->by_name, st->n, sizeof *st->by_name, cmp_names);
    for (size_t i = 1; i < st->n; i++)
        if (!strcmp(st->by_name[i - 1]->name, st->by_name[i]->name))
            return petl_fail(err, PETL_ERR_FORMAT, "%s: tensor '%s' appears twice", what,
                             st->by_name[i]->name);
    return PETL_OK;
}

/* Sorted by offset, the tensors must start at 0 and run on with no gap and no overlap to
 * exactly the end of the file. Sets each tensor's data pointer. */
static petl_status check_layout(petl_safetensors *st, const unsigned char *data, uint64_t data_len,
                                uint64_t data_start, const char *what, petl_error *err) {
    qsort(st->tensors, st->n, sizeof *st->tensors, cmp_offsets);
    uint64_t at = 0;
    for (size_t i = 0; i < st->n; i++) {
        petl_st_tensor *t = &st->tensors[i];
        if (t->begin != at)
            return petl_fail(err, PETL_ERR_FORMAT,
                             "%s: tensor '%s' begins at data byte %llu, expected %llu (%s)", what,
                             t->name, (unsigned long long)t->begin, (unsigned long long)at,
                             t->begin < at ? "overlap" : "gap");
        at = t->end;
        if (at > data_len)
            return petl_fail(err, PETL_ERR_FORMAT,
                             "%s: tensor '%s' ends at data byte %llu, past the end of the data "
                             "(%llu bytes)",
                             what, t->name, (unsigned long long)at, (unsigned long long)data_len);
        t->data = data + t->begin;
    }
    if (at != data_len)
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: the tensors cover %llu of the %llu data bytes (trailing bytes at "
                         "file offset %llu)",
                         what, (unsigned long long)at, (unsigned long long)data_len,
                         (unsigned long long)(data_start + at));
    return index_names(st, what, err);
}

static petl_status parse_json(petl_safetensors *st, const char *h, size_t n, const char *what,
                              petl_error *err) {
    petl_status s = header_prescan(h, n, what, err);
    if (s != PETL_OK) return s;
    json_error_t je;
    /* Without JSON_ALLOW_NUL, jansson refuses "\u0000": names stay plain C strings. */
    st->header = json_loadb(h, n, JSON_REJECT_DUPLICATES, &je);
    if (!st->header)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: invalid JSON header at byte %lld: %s", what,
                         8 + (long long)je.position, je.text);
    if (!json_is_object(st->header))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: the header is not a JSON object", what);
    return PETL_OK;
}

static petl_status parse_tensors(petl_safetensors *st, const char *what, petl_error *err) {
    json_t *meta = json_object_get(st->header, "__metadata__");
    size_t count = json_object_size(st->header) - (meta ? 1 : 0);
    st->tensors = calloc(count + 1, sizeof *st->tensors);
    if (!st->tensors) return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    const char *key;
    json_t *val;
    json_object_foreach(st->header, key, val) {
        petl_status s;
        if (!strcmp(key, "__metadata__"))
            s = parse_meta(st, what, val, err);
        else
            s = parse_entry(what, key, val, &st->tensors[st->n++], err);
        if (s != PETL_OK) return s;
    }
    return PETL_OK;
}

static petl_status st_parse_into(petl_safetensors *st, const unsigned char *buf, size_t len,
                                 const char *what, petl_error *err) {
    if (len < 8)
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: file of %zu bytes is shorter than the 8-byte header length", what,
                         len);
    uint64_t n = read_le64(buf);
    if (n > ST_MAX_HEADER)
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: header length %llu is over the limit of %llu bytes", what,
                         (unsigned long long)n, ST_MAX_HEADER);
    if (n > len - 8)
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: header of %llu bytes runs past the end of the file (%zu bytes)", what,
                         (unsigned long long)n, len);
    petl_status s = parse_json(st, (const char *)buf + 8, (size_t)n, what, err);
    if (s == PETL_OK) s = parse_tensors(st, what, err);
    if (s == PETL_OK) s = check_layout(st, buf + 8 + n, len - 8 - n, 8 + n, what, err);
    return s;
}

petl_status petl_st_parse(const void *buf, size_t len, const char *what, petl_safetensors **out,
                          petl_error *err) {
    if (!out || (!buf && len))
        return petl_fail(err, PETL_ERR_ARG, "petl_st_parse: NULL buffer or output");
    *out = NULL;
    if (!what) what = "<buffer>";
    petl_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->what = strdup(what))) {
        free(st);
        return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    }
    petl_status s = st_parse_into(st, buf, len, what, err);
    for (size_t i = 0; s == PETL_OK && i < st->n; i++)
        st->tensors[i].file = st->what;
    if (s != PETL_OK) {
        petl_st_close(st);
        return s;
    }
    *out = st;
    return PETL_OK;
}

petl_status petl_st_adopt(const char *what, petl_st_tensor *tensors, size_t n, char *names,
                          void *map, size_t map_len, petl_safetensors **out, petl_error *err) {
    *out = NULL;
    petl_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->what = strdup(what))) {
        free(st);
        free(tensors);
        free(names);
        return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    }
    st->tensors = tensors;
    st->n = n;
    st->names = names;
    for (size_t i = 0; i < n; i++)
        tensors[i].file = st->what;
    petl_status s = index_names(st, what, err);
    if (s != PETL_OK) {
        petl_st_close(st);
        return s;
    }
    st->map = map;
    st->map_len = map_len;
    *out = st;
    return PETL_OK;
}

petl_status petl_st_open(const char *path, petl_safetensors **out, petl_error *err) {
    if (!path || !out) return petl_fail(err, PETL_ERR_ARG, "petl_st_open: NULL path or output");
    *out = NULL;
    void *map;
    size_t len;
    petl_status s = petl_map_file(path, &map, &len, err);
    if (s == PETL_OK) s = petl_st_parse(map, len, path, out, err);
    if (s != PETL_OK) {
        if (map) munmap(map, len);
        return s;
    }
    (*out)->map = map;
    (*out)->map_len = len;
    return PETL_OK;
}

void petl_st_close(petl_safetensors *st) {
    if (!st) return;
    if (st->map) munmap(st->map, st->map_len);
    json_decref(st->header);
    free(st->names);
    free(st->tensors);
    free(st->by_name);
    free(st->meta);
    free(st->what);
    free(st);
}

size_t petl_st_count(const petl_safetensors *st) {
    return st ? st->n : 0;
}

const petl_st_tensor *petl_st_at(const petl_safetensors *st, size_t i) {
    return st && i < st->n ? &st->tensors[i] : NULL;
}

const petl_st_tensor *petl_st_find(const petl_safetensors *st, const char *name) {
    if (!st || !name) return NULL;
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->by_name[mid]->name);
        if (c == 0) return st->by_name[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *petl_st_meta(const petl_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    for (size_t i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta[2 * i], key)) return st->meta[2 * i + 1];
    return NULL;
}

size_t petl_st_meta_count(const petl_safetensors *st) {
    return st ? st->n_meta : 0;
}

void petl_st_meta_at(const petl_safetensors *st, size_t i, const char **key, const char **value) {
    bool ok = st && i < st->n_meta;
    if (key) *key = ok ? st->meta[2 * i] : NULL;
    if (value) *value = ok ? st->meta[2 * i + 1] : NULL;
}

/* ---------------------------------------------------------------------- float conversion */

/* Exact: every half is a float. Subnormals are man x 2^-24; inf and NaN keep their payload. */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13); /* rebias 15 -> 127 */
    } else {
        float f = (float)man * 0x1p-24f; /* 0 or subnormal, exact */
        memcpy(&bits, &f, sizeof bits);
        bits |= sign;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Rounds to nearest like the hardware would, but without the undefined behaviour of
 * converting an out-of-range double: beyond FLT_MAX + half an ulp it becomes infinity. */
static float f64_to_f32(double d) {
    const double limit = (double)FLT_MAX + 0x1p103; /* half an ulp above FLT_MAX */
    if (isnan(d)) return (float)d;
    if (d >= limit) return INFINITY;
    if (d <= -limit) return -INFINITY;
    if (d > FLT_MAX) return FLT_MAX;
    if (d < -FLT_MAX) return -FLT_MAX;
    return (float)d;
}

petl_status petl_st_read_f32(const petl_st_tensor *t, float *dst, petl_error *err) {
    if (!t || (!dst && t->numel > 0))
        return petl_fail(err, PETL_ERR_ARG, "petl_st_read_f32: NULL tensor or destination");
    const unsigned char *p = t->data; /* may be unaligned: read through memcpy */
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case PETL_DT_F32:
        if (n) memcpy(dst, p, n * sizeof *dst);
        return PETL_OK;
    case PETL_DT_F16:
    case PETL_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, sizeof h);
            dst[i] = t->dtype == PETL_DT_F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
        return PETL_OK;
    case PETL_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, sizeof d);
            dst[i] = f64_to_f32(d);
        }
        return PETL_OK;
    default:
        return petl_fail(err, PETL_ERR_SHAPE, "%s%stensor '%s': dtype %s cannot be read as float32",
                         t->file ? t->file : "", t->file ? ": " : "", t->name ? t->name : "?",
                         petl_dtype_name(t->dtype));
    }
}

void petl_st_drop_pages(const petl_safetensors *st, const petl_st_tensor *t) {
    if (!st || !st->map || !t) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = ((uintptr_t)t->data + page - 1) / page * page;
    const uintptr_t hi = ((uintptr_t)t->data + (t->end - t->begin)) / page * page;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* --------------------------------------------------------------------------------- write */

/* Byte size of one entry, or an error naming it. */
static petl_status entry_nbytes(const petl_st_entry *e, const char *path, uint64_t *out,
                                petl_error *err) {
    if (!e->name || !dtype_valid(e->dtype) || e->rank < 0 || e->rank > PETL_ST_MAX_RANK ||
        (e->rank > 0 && !e->shape))
        return petl_fail(err, PETL_ERR_ARG, "%s: tensor '%s': bad name, dtype, rank or shape", path,
                         e->name ? e->name : "(null)");
    if (!strcmp(e->name, "__metadata__"))
        return petl_fail(err, PETL_ERR_ARG, "%s: a tensor may not be named __metadata__", path);
    uint64_t nbytes = petl_dtype_size(e->dtype);
    for (int d = 0; d < e->rank; d++) {
        if (e->shape[d] < 0 || __builtin_mul_overflow(nbytes, (uint64_t)e->shape[d], &nbytes))
            return petl_fail(err, PETL_ERR_ARG, "%s: tensor '%s': bad shape[%d] = %lld", path,
                             e->name, d, (long long)e->shape[d]);
    }
    if (nbytes > SIZE_MAX || (nbytes && !e->data))
        return petl_fail(err, PETL_ERR_ARG, "%s: tensor '%s': no data or too large", path, e->name);
    *out = nbytes;
    return PETL_OK;
}

/* The header entry of e (a new reference), or NULL when out of memory. */
static json_t *entry_json(const petl_st_entry *e, uint64_t begin, uint64_t end) {
    json_t *shape = json_array();
    for (int d = 0; shape && d < e->rank; d++) {
        if (json_array_append_new(shape, json_integer(e->shape[d])) != 0) {
            json_decref(shape);
            shape = NULL;
        }
    }
    if (!shape) return NULL;
    /* "o" steals the shape, even when packing fails. */
    return json_pack("{s:s, s:o, s:[I,I]}", "dtype", petl_dtype_name(e->dtype), "shape", shape,
                     "data_offsets", (json_int_t)begin, (json_int_t)end);
}

static petl_status build_meta(json_t *root, const char *path, const char *const *meta,
                              size_t n_meta, petl_error *err) {
    json_t *m = json_object();
    if (!m || json_object_set_new(root, "__metadata__", m) ||
        json_object_set_new(m, "format", json_string("pt")))
        return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n_meta; i++) {
        const char *k = meta[2 * i], *v = meta[2 * i + 1];
        json_t *s = k && v ? json_string(v) : NULL;
        if (!s)
            return petl_fail(err, PETL_ERR_ARG, "%s: metadata pair %zu is NULL or not UTF-8", path,
                             i);
        /* The caller may override "format"; other repeats are a mistake. */
        bool dup = strcmp(k, "format") && json_object_get(m, k);
        if (dup || json_object_set_new(m, k, s)) {
            if (dup) json_decref(s);
            return petl_fail(err, PETL_ERR_ARG, "%s: metadata key '%s' repeated or not UTF-8", path,
                             k);
        }
    }
    return PETL_OK;
}

/* Builds the header text (malloc'ed, caller frees) for the entries laid out contiguously in
 * the given order. */
static petl_status build_header(const char *path, const petl_st_entry *entries, size_t n,
                                const char *const *meta, size_t n_meta, char **out,
                                petl_error *err) {
    *out = NULL;
    json_t *root = json_object();
    if (!root) return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", path);
    petl_status s = build_meta(root, path, meta, n_meta, err);
    uint64_t at = 0;
    for (size_t i = 0; s == PETL_OK && i < n; i++) {
        const petl_st_entry *e = &entries[i];
        uint64_t nbytes = 0;
        s = entry_nbytes(e, path, &nbytes, err);
        if (s != PETL_OK) break;
        if (json_object_get(root, e->name) || at + nbytes < at || at + nbytes > INT64_MAX) {
            s = petl_fail(err, PETL_ERR_ARG, "%s: tensor '%s' repeated or data too large", path,
                          e->name);
            break;
        }
        json_t *v = entry_json(e, at, at + nbytes);
        if (!v || json_object_set_new(root, e->name, v))
            s = petl_fail(err, PETL_ERR_ARG, "%s: tensor '%s': name not UTF-8 or out of memory",
                          path, e->name);
        at += nbytes;
    }
    if (s == PETL_OK && !(*out = json_dumps(root, JSON_COMPACT)))
        s = petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", path);
    json_decref(root);
    return s;
}

/* What write_body writes: the header text and the entries' data. */
typedef struct {
    const char *header;
    const petl_st_entry *entries;
    size_t n;
} st_body;

static bool write_body(int fd, void *user) {
    const st_body *b = user;
    const petl_st_entry *e = b->entries;
    size_t hlen = strlen(b->header);
    size_t pad = (8 - hlen % 8) % 8; /* data starts 8-aligned, as the reference writer does */
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)(hlen + pad) >> (8 * i));
    if (!petl_write_all(fd, len8, 8) || !petl_write_all(fd, b->header, hlen) ||
        !petl_write_all(fd, "       ", pad))
        return false;
    for (size_t i = 0; i < b->n; i++) {
        size_t nbytes = petl_dtype_size(e[i].dtype);
        for (int d = 0; d < e[i].rank; d++)
            nbytes *= (size_t)e[i].shape[d];
        if (nbytes && !petl_write_all(fd, e[i].data, nbytes)) return false;
    }
    return true;
}

petl_status petl_st_write(const char *path, const petl_st_entry *entries, size_t n,
                          const char *const *meta, size_t n_meta, petl_error *err) {
    if (!path || (n && !entries) || (n_meta && !meta))
        return petl_fail(err, PETL_ERR_ARG, "petl_st_write: NULL path, entries or metadata");
    char *header = NULL;
    petl_status s = build_header(path, entries, n, meta, n_meta, &header, err);
    if (s == PETL_OK) {
        st_body body = {header, entries, n};
        s = petl_write_atomic(path, write_body, &body, err);
    }
    free(header);
    return s;
}
