/* torch_bin: reads a state dict from torch.save's zip format (pytorch_model.bin) without
 * executing anything the file names.
 *
 * A torch.save file is a zip archive (src/zip.c) of stored entries under one folder, ARCHIVE/:
 * data.pkl (the pickled object), data/KEY (the bytes of each storage), byteorder ("little"),
 * version, ... . data.pkl pickles a dict of tensors (torch/serialization.py, torch/_utils.py):
 *
 *     collections.OrderedDict() then SETITEMS of  name -> torch._utils._rebuild_tensor_v2(
 *         storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
 *
 * where storage is a persistent id (BINPERSID) ('storage', torch.FloatStorage, KEY, location,
 * numel), and BUILD sets the dict's _metadata attribute. Parameters are wrapped in
 * torch._utils._rebuild_parameter(tensor, requires_grad, hooks); dtypes without a legacy
 * storage class (float8, uint16..64) use _rebuild_tensor_v3(..., dtype) over a
 * torch.UntypedStorage whose numel counts bytes.
 *
 * Python's unpickler imports and calls whatever the file names (GLOBAL os.system + REDUCE runs
 * a shell command). This one is a small stack machine that knows a fixed list of globals; it
 * never imports or calls anything: a global outside the list, or an opcode outside what a state
 * dict needs, stops the load with a message naming it. Counts, sizes and nesting are bounded
 * by the pickle's length; tensors must be contiguous and lie inside their storage. The tensors
 * point into the caller's buffer (the mapped file), as safetensors' do. */
#include "internal.h"
#include "zip.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* data.pkl of the largest models is well under a megabyte; this bounds the parser's memory. */
#define PK_MAX_PICKLE (256u << 20)
/* A state dict nests MARKs three deep; Python has no limit, petl does. */
#define PK_MAX_MARKS 64
/* A GLOBAL's module and name, and a storage key. */
#define PK_MAX_IDENT 256

/* ------------------------------------------------------------------------ allowed globals */

typedef enum {
    G_ODICT,         /* collections.OrderedDict: called with () for an empty dict */
    G_REBUILD_V2,    /* torch._utils._rebuild_tensor_v2 */
    G_REBUILD_V3,    /* torch._utils._rebuild_tensor_v3 */
    G_REBUILD_PARAM, /* torch._utils._rebuild_parameter */
    G_STORAGE,       /* a storage class, only as the type in a persistent id */
    G_DTYPE,         /* a torch dtype, only as _rebuild_tensor_v3's argument */
} gkind;

#define DT_UNTYPED (-1) /* torch.UntypedStorage: bytes, typed by _rebuild_tensor_v3 */

static const struct {
    const char *module, *name;
    gkind kind;
    int dtype; /* petl_dtype, or DT_UNTYPED */
} globals[] = {
    {"collections", "OrderedDict", G_ODICT, 0},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_V2, 0},
    {"torch._utils", "_rebuild_tensor_v3", G_REBUILD_V3, 0},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAM, 0},
    /* torch/storage.py _dtype_to_storage_type_map, those petl has a dtype for */
    {"torch", "DoubleStorage", G_STORAGE, PETL_DT_F64},
    {"torch", "FloatStorage", G_STORAGE, PETL_DT_F32},
    {"torch", "HalfStorage", G_STORAGE, PETL_DT_F16},
    {"torch", "BFloat16Storage", G_STORAGE, PETL_DT_BF16},
    {"torch", "LongStorage", G_STORAGE, PETL_DT_I64},
    {"torch", "IntStorage", G_STORAGE, PETL_DT_I32},
    {"torch", "ShortStorage", G_STORAGE, PETL_DT_I16},
    {"torch", "CharStorage", G_STORAGE, PETL_DT_I8},
    {"torch", "ByteStorage", G_STORAGE, PETL_DT_U8},
    {"torch", "BoolStorage", G_STORAGE, PETL_DT_BOOL},
    {"torch", "UntypedStorage", G_STORAGE, DT_UNTYPED},
    {"torch.storage", "UntypedStorage", G_STORAGE, DT_UNTYPED},
    {"torch", "float64", G_DTYPE, PETL_DT_F64},
    {"torch", "float32", G_DTYPE, PETL_DT_F32},
    {"torch", "float16", G_DTYPE, PETL_DT_F16},
    {"torch", "bfloat16", G_DTYPE, PETL_DT_BF16},
    {"torch", "int64", G_DTYPE, PETL_DT_I64},
    {"torch", "int32", G_DTYPE, PETL_DT_I32},
    {"torch", "int16", G_DTYPE, PETL_DT_I16},
    {"torch", "int8", G_DTYPE, PETL_DT_I8},
    {"torch", "uint8", G_DTYPE, PETL_DT_U8},
    {"torch", "bool", G_DTYPE, PETL_DT_BOOL},
    {"torch", "uint16", G_DTYPE, PETL_DT_U16},
    {"torch", "uint32", G_DTYPE, PETL_DT_U32},
    {"torch", "uint64", G_DTYPE, PETL_DT_U64},
    {"torch", "float8_e4m3fn", G_DTYPE, PETL_DT_F8_E4M3},
    {"torch", "float8_e5m2", G_DTYPE, PETL_DT_F8_E5M2},
};
#define NUM_GLOBALS (sizeof globals / sizeof globals[0])

/* --------------------------------------------------------------------------- values */

typedef enum {
    V_NONE,
    V_BOOL,
    V_INT,
    V_FLOAT,
    V_STR,
    V_TUPLE,
    V_LIST,
    V_DICT,
    V_GLOBAL,
    V_STORAGE,
    V_TENSOR
} vkind;

static const char *const vkind_names[] = {
    "None", "bool", "int", "float", "str", "tuple", "list", "dict", "global", "storage", "tensor",
};

typedef struct pv pv;
struct pv {
    vkind kind;
    int64_t i; /* BOOL, INT; GLOBAL: index in globals[]; STORAGE, TENSOR: index in the tables;
                  DICT: 1 for an OrderedDict */
    double f;
    const char *s; /* STR: NUL-terminated copy (may hold NULs: see len) */
    size_t len;    /* STR: bytes; TUPLE, LIST: items; DICT: pairs */
    size_t cap;    /* LIST, DICT: items allocated */
    pv **items;    /* TUPLE, LIST: [len]; DICT: [2 len] key, value, in insertion order */
};

/* One block of the arena: everything the unpickler allocates is freed at once at the end. */
typedef struct arena_block {
    struct arena_block *next;
    max_align_t data[];
} arena_block;

typedef struct {
    const char *key; /* the record data/KEY */
    int dtype;       /* petl_dtype, or DT_UNTYPED */
    int64_t numel;   /* elements (bytes when untyped) */
    const unsigned char *data;
    uint64_t nbytes, offset; /* offset: of the data in the file */
} pk_storage;

typedef struct {
    size_t storage;
    petl_dtype dtype;
    int rank;
    int64_t shape[PETL_ST_MAX_RANK], stride[PETL_ST_MAX_RANK];
    int64_t offset; /* in elements */
    size_t at;      /* the REDUCE that built it, for messages */
} pk_tensor;

typedef struct {
    const char *what;
    petl_error *err;
    const unsigned char *pkl, *p, *end; /* data.pkl and the read position */
    size_t op;                          /* the offset of the opcode being run, for messages */
    const petl_zip *zip;
    const char *prefix; /* "ARCHIVE/" */
    arena_block *arena;
    size_t arena_bytes, arena_limit;
    pv **stack;
    size_t sp, stack_cap;
    size_t marks[PK_MAX_MARKS];
    int n_marks;
    pv **memo;
    size_t memo_cap, memo_count;
    pk_storage *storages;
    size_t n_storages, storages_cap;
    size_t *storage_of_entry; /* [zip->n]: storage index + 1 of each entry, 0 for none yet */
    pk_tensor *tensors;
    size_t n_tensors, tensors_cap;
    pv none, yes, no; /* shared constants */
} pk;

/* Fails with a message naming the file and the byte of data.pkl of the opcode being run;
 * returns false, so that a step can `return pk_fail(...)`. */
PETL_PRINTF(3, 4) static bool pk_fail(pk *k, petl_status code, const char *fmt, ...) {
    char detail[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    petl_fail(k->err, code, "%s: data.pkl byte %zu: %s", k->what, k->op, detail);
    return false;
}

/* The read position in data.pkl. */
static size_t pk_at(const pk *k) {
    return (size_t)(k->p - k->pkl);
}

static void *pk_alloc(pk *k, size_t n) {
    if (n > k->arena_limit - k->arena_bytes) {
        pk_fail(k, PETL_ERR_FORMAT, "the pickle builds more than its size accounts for");
        return NULL;
    }
    arena_block *b = malloc(sizeof *b + n);
    if (!b) {
        petl_fail(k->err, PETL_ERR_NOMEM, "%s: out of memory", k->what);
        return NULL;
    }
    k->arena_bytes += sizeof *b + n;
    b->next = k->arena;
    k->arena = b;
    return b->data;
}

static pv *pv_new(pk *k, vkind kind) {
    pv *v = pk_alloc(k, sizeof *v);
    if (v) {
        memset(v, 0, sizeof *v);
        v->kind = kind;
    }
    return v;
}

/* Grows a list's or dict's items to hold `need`; the old array stays in the arena. */
static bool pv_reserve(pk *k, pv *v, size_t need) {
    if (need <= v->cap) return true;
    size_t cap = v->cap ? v->cap : 4;
    while (cap < need)
        cap *= 2;
    pv **items = pk_alloc(k, cap * sizeof *items);
    if (!items) return false;
    if (v->cap) memcpy(items, v->items, v->cap * sizeof *items);
    v->items = items;
    v->cap = cap;
    return true;
}

/* Writes s[n] into buf[cap] for a message: printable ASCII kept, anything else as '?'. */
static const char *printable(char *buf, size_t cap, const char *s, size_t n) {
    size_t m = n < cap - 1 ? n : cap - 1;
    for (size_t i = 0; i < m; i++)
        buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    buf[m] = '\0';
    return buf;
}

/* ---------------------------------------------------------------------------- the stack */

/* Grows the array *p (*cap elements of elem bytes; first: its first size) by doubling until
 * index `need` fits, the new elements zeroed. false (a NOMEM error set) when out of memory. */
static bool pk_grow(pk *k, void **p, size_t *cap, size_t need, size_t elem, size_t first) {
    if (need < *cap) return true;
    size_t n = *cap ? *cap : first;
    while (n <= need)
        n *= 2;
    unsigned char *q = realloc(*p, n * elem);
    if (!q) {
        petl_fail(k->err, PETL_ERR_NOMEM, "%s: out of memory", k->what);
        return false;
    }
    memset(q + *cap * elem, 0, (n - *cap) * elem);
    *p = q;
    *cap = n;
    return true;
}

static bool push(pk *k, pv *v) {
    if (!v) return false;
    if (!pk_grow(k, (void **)&k->stack, &k->stack_cap, k->sp, sizeof *k->stack, 64)) return false;
    k->stack[k->sp++] = v;
    return true;
}

/* The stack's floor: values below the innermost MARK belong to the caller of the MARK. */
static size_t floor_(const pk *k) {
    return k->n_marks ? k->marks[k->n_marks - 1] : 0;
}

static pv *pop(pk *k) {
    if (k->sp <= floor_(k)) {
        pk_fail(k, PETL_ERR_FORMAT, "stack underflow");
        return NULL;
    }
    return k->stack[--k->sp];
}

/* Pops a value of the given kind; NULL (with the message) for another. */
static pv *pop_kind(pk *k, vkind kind, const char *role) {
    pv *v = pop(k);
    if (v && v->kind != kind) {
        pk_fail(k, PETL_ERR_FORMAT, "%s is a %s, expected a %s", role, vkind_names[v->kind],
                vkind_names[kind]);
        return NULL;
    }
    return v;
}

/* Pops the values above the innermost MARK and the MARK: *items points at them (still in the
 * stack array, valid until the next push), *n their count. */
static bool pop_mark(pk *k, pv ***items, size_t *n) {
    if (!k->n_marks) {
        pk_fail(k, PETL_ERR_FORMAT, "no MARK to pop to");
        return false;
    }
    size_t m = k->marks[--k->n_marks];
    *items = k->stack ? k->stack + m : NULL; /* no stack yet: a MARK of an empty stack */
    *n = k->sp - m;
    k->sp = m;
    return true;
}

static pv *make_tuple(pk *k, pv **items, size_t n) {
    pv *t = pv_new(k, V_TUPLE);
    if (!t) return NULL;
    t->len = n;
    if (n) {
        if (!(t->items = pk_alloc(k, n * sizeof *t->items))) return NULL;
        memcpy(t->items, items, n * sizeof *items);
    }
    return t;
}

/* ------------------------------------------------------------------------- reading bytes */

static bool take(pk *k, size_t n, const unsigned char **out) {
    if ((size_t)(k->end - k->p) < n) {
        pk_fail(k, PETL_ERR_FORMAT, "the pickle ends inside an opcode: truncated");
        return false;
    }
    *out = k->p;
    k->p += n;
    return true;
}

static bool take_uint(pk *k, size_t n, uint64_t *v) {
    const unsigned char *b;
    if (!take(k, n, &b)) return false;
    *v = 0;
    for (size_t i = n; i-- > 0;)
        *v = *v << 8 | b[i];
    return true;
}

static pv *new_int(pk *k, int64_t i) {
    pv *v = pv_new(k, V_INT);
    if (v) v->i = i;
    return v;
}

static pv *new_str(pk *k, const unsigned char *s, size_t n) {
    pv *v = pv_new(k, V_STR);
    char *c = v ? pk_alloc(k, n + 1) : NULL;
    if (!c) return NULL;
    memcpy(c, s, n);
    c[n] = '\0';
    v->s = c;
    v->len = n;
    return v;
}

/* LONG1: n bytes of little-endian two's complement; petl takes what fits 64 bits. */
static pv *read_long1(pk *k) {
    uint64_t n, u = 0;
    const unsigned char *b;
    if (!take_uint(k, 1, &n) || !take(k, (size_t)n, &b)) return NULL;
    if (n > 8) {
        pk_fail(k, PETL_ERR_UNSUPPORTED, "an integer of %llu bytes", (unsigned long long)n);
        return NULL;
    }
    for (size_t i = n; i-- > 0;)
        u = u << 8 | b[i];
    if (n && n < 8 && (b[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    int64_t i;
    memcpy(&i, &u, sizeof i);
    return new_int(k, i);
}

static pv *read_float(pk *k) {
    uint64_t u = 0;
    const unsigned char *b;
    if (!take(k, 8, &b)) return NULL;
    for (int i = 0; i < 8; i++) /* big-endian */
        u = u << 8 | b[i];
    pv *v = pv_new(k, V_FLOAT);
    if (v) memcpy(&v->f, &u, sizeof v->f);
    return v;
}

/* -------------------------------------------------------------------------------- globals */

static pv *resolve_global(pk *k, const char *mod, size_t mlen, const char *name, size_t nlen) {
    for (size_t g = 0; g < NUM_GLOBALS; g++) {
        if (strlen(globals[g].module) == mlen && !memcmp(globals[g].module, mod, mlen) &&
            strlen(globals[g].name) == nlen && !memcmp(globals[g].name, name, nlen)) {
            pv *v = pv_new(k, V_GLOBAL);
            if (v) v->i = (int64_t)g;
            return v;
        }
    }
    char m[80], n[80];
    printable(m, sizeof m, mod, mlen);
    printable(n, sizeof n, name, nlen);
    bool storage = !strcmp(m, "torch") && nlen > 7 && !strcmp(n + strlen(n) - 7, "Storage");
    if (storage)
        pk_fail(k, PETL_ERR_UNSUPPORTED, "storage type torch.%s is not supported", n);
    else
        pk_fail(k, PETL_ERR_FORMAT,
                "global %s.%s is not allowed (petl reads plain state dicts of tensors, and "
                "imports or calls nothing a file names)",
                m, n);
    return NULL;
}

/* GLOBAL: "module\nname\n". */
static pv *read_global(pk *k) {
    const char *part[2];
    size_t len[2];
    for (int i = 0; i < 2; i++) {
        size_t left = (size_t)(k->end - k->p);
        const unsigned char *nl = memchr(k->p, '\n', left < PK_MAX_IDENT ? left : PK_MAX_IDENT);
        if (!nl) {
            pk_fail(k, PETL_ERR_FORMAT, "GLOBAL: no newline-terminated name");
            return NULL;
        }
        part[i] = (const char *)k->p;
        len[i] = (size_t)(nl - k->p);
        k->p = nl + 1;
    }
    return resolve_global(k, part[0], len[0], part[1], len[1]);
}

static pv *stack_global(pk *k) {
    pv *name = pop_kind(k, V_STR, "STACK_GLOBAL's name");
    pv *mod = name ? pop_kind(k, V_STR, "STACK_GLOBAL's module") : NULL;
    return mod ? resolve_global(k, mod->s, mod->len, name->s, name->len) : NULL;
}

/* -------------------------------------------------------------------------------- storages */

static bool is_int(const pv *v, int64_t min) {
    return v->kind == V_INT && v->i >= min;
}

/* BINPERSID: ('storage', storage type, key, location, numel) -> the storage, its bytes the
 * zip entry ARCHIVE/data/KEY. */
static pv *persistent_load(pk *k) {
    pv *id = pop_kind(k, V_TUPLE, "a persistent id");
    if (!id) return NULL;
    pv **a = id->items;
    if (id->len != 5 || a[0]->kind != V_STR || strcmp(a[0]->s, "storage") ||
        a[1]->kind != V_GLOBAL || globals[a[1]->i].kind != G_STORAGE || a[2]->kind != V_STR ||
        a[3]->kind != V_STR || !is_int(a[4], 0)) {
        pk_fail(k, PETL_ERR_FORMAT,
                "a persistent id must be ('storage', a storage type, key, location, numel)");
        return NULL;
    }
    char key[PK_MAX_IDENT + 2], entry[2 * PK_MAX_IDENT + 16];
    if (a[2]->len == 0 || a[2]->len > PK_MAX_IDENT || strlen(a[2]->s) != a[2]->len) {
        pk_fail(k, PETL_ERR_FORMAT, "storage key '%s' is empty, too long or holds a NUL",
                printable(key, sizeof key, a[2]->s, a[2]->len));
        return NULL;
    }
    snprintf(entry, sizeof entry, "%sdata/%s", k->prefix, a[2]->s);
    const petl_zip_entry *e = petl_zip_find(k->zip, entry, strlen(entry));
    if (!e) {
        pk_fail(k, PETL_ERR_FORMAT, "storage '%s' has no record %s in the archive",
                printable(key, sizeof key, a[2]->s, a[2]->len), entry);
        return NULL;
    }
    int dtype = globals[a[1]->i].dtype;
    int64_t numel = a[4]->i;
    size_t ei = (size_t)(e - k->zip->entries);
    pv *v = pv_new(k, V_STORAGE);
    if (!v) return NULL;
    if (k->storage_of_entry[ei]) { /* seen: the same dtype and size again */
        const pk_storage *s = &k->storages[k->storage_of_entry[ei] - 1];
        if (s->dtype != dtype || s->numel != numel) {
            pk_fail(k, PETL_ERR_FORMAT, "storage '%s' is used with two dtypes or sizes", s->key);
            return NULL;
        }
        v->i = (int64_t)(k->storage_of_entry[ei] - 1);
        return v;
    }
    pk_storage s = {.key = a[2]->s, .dtype = dtype, .numel = numel};
    size_t esize = dtype == DT_UNTYPED ? 1 : petl_dtype_size((petl_dtype)dtype);
    if (petl_zip_data(k->zip, e, k->what, &s.data, &s.offset, k->err) != PETL_OK) return NULL;
    if (__builtin_mul_overflow((uint64_t)numel, (uint64_t)esize, &s.nbytes) ||
        s.nbytes != e->size) {
        pk_fail(k, PETL_ERR_FORMAT, "storage '%s' of %lld elements of %zu bytes, but %s holds %llu",
                s.key, (long long)numel, esize, entry, (unsigned long long)e->size);
        return NULL;
    }
    if (!pk_grow(k, (void **)&k->storages, &k->storages_cap, k->n_storages, sizeof *k->storages,
                 16))
        return NULL;
    k->storages[k->n_storages++] = s;
    k->storage_of_entry[ei] = k->n_storages;
    v->i = (int64_t)(k->n_storages - 1);
    return v;
}

/* --------------------------------------------------------------------------------- tensors */

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks
 * [, metadata]) and _rebuild_tensor_v3(..., backward_hooks, dtype[, metadata]). Records the
 * tensor; whether it is contiguous and inside its storage is checked once its name is known. */
static pv *rebuild_tensor(pk *k, const pv *args, bool v3) {
    pv **a = args->items;
    size_t n = args->len, min = v3 ? 7 : 6;
    if (n < min || n > min + 1 || a[0]->kind != V_STORAGE || !is_int(a[1], 0) ||
        a[2]->kind != V_TUPLE || a[3]->kind != V_TUPLE || a[4]->kind != V_BOOL ||
        a[5]->kind != V_DICT || (v3 && a[6]->kind != V_GLOBAL) ||
        (n == min + 1 && a[min]->kind != V_DICT)) {
        pk_fail(k, PETL_ERR_FORMAT,
                "_rebuild_tensor_v%d takes (storage, offset, size, stride, requires_grad, "
                "hooks%s[, metadata])",
                v3 ? 3 : 2, v3 ? ", dtype" : "");
        return NULL;
    }
    const pk_storage *s = &k->storages[a[0]->i];
    pk_tensor t = {.storage = (size_t)a[0]->i, .offset = a[1]->i, .at = pk_at(k)};
    if (v3) {
        if (globals[a[6]->i].kind != G_DTYPE ||
            (s->dtype != DT_UNTYPED && s->dtype != globals[a[6]->i].dtype)) {
            pk_fail(k, PETL_ERR_FORMAT, "_rebuild_tensor_v3: the dtype does not fit");
            return NULL;
        }
        t.dtype = (petl_dtype)globals[a[6]->i].dtype;
    } else {
        if (s->dtype == DT_UNTYPED) {
            pk_fail(k, PETL_ERR_FORMAT, "_rebuild_tensor_v2 of an untyped storage");
            return NULL;
        }
        t.dtype = (petl_dtype)s->dtype;
    }
    if (a[2]->len > PETL_ST_MAX_RANK) {
        pk_fail(k, PETL_ERR_UNSUPPORTED, "a tensor of rank %zu (petl's limit is %d)", a[2]->len,
                PETL_ST_MAX_RANK);
        return NULL;
    }
    t.rank = (int)a[2]->len;
    bool ok = a[3]->len == a[2]->len;
    for (int d = 0; ok && d < t.rank; d++) {
        ok = is_int(a[2]->items[d], 0) && is_int(a[3]->items[d], 0);
        t.shape[d] = a[2]->items[d]->i;
        t.stride[d] = a[3]->items[d]->i;
    }
    if (!ok) {
        pk_fail(k, PETL_ERR_FORMAT,
                "a tensor's size and stride must be tuples of as many non-negative ints");
        return NULL;
    }
    if (!pk_grow(k, (void **)&k->tensors, &k->tensors_cap, k->n_tensors, sizeof *k->tensors, 64))
        return NULL;
    k->tensors[k->n_tensors++] = t;
    pv *v = pv_new(k, V_TENSOR);
    if (v) v->i = (int64_t)(k->n_tensors - 1);
    return v;
}

/* REDUCE: calls one of the allowed callables with the argument tuple. */
static pv *reduce(pk *k) {
    pv *args = pop_kind(k, V_TUPLE, "REDUCE's arguments");
    pv *fn = args ? pop(k) : NULL;
    if (!fn) return NULL;
    if (fn->kind != V_GLOBAL) {
        pk_fail(k, PETL_ERR_FORMAT, "REDUCE calls a %s: only allowed globals may be called",
                vkind_names[fn->kind]);
        return NULL;
    }
    switch (globals[fn->i].kind) {
    case G_ODICT:
        if (args->len == 0) {
            pv *d = pv_new(k, V_DICT);
            if (d) d->i = 1; /* an OrderedDict, which has attributes for BUILD to set */
            return d;
        }
        break;
    case G_REBUILD_V2: return rebuild_tensor(k, args, false);
    case G_REBUILD_V3: return rebuild_tensor(k, args, true);
    case G_REBUILD_PARAM: /* (tensor, requires_grad, hooks): the tensor itself */
        if (args->len == 3 && args->items[0]->kind == V_TENSOR && args->items[1]->kind == V_BOOL &&
            args->items[2]->kind == V_DICT)
            return args->items[0];
        break;
    case G_STORAGE:
    case G_DTYPE:
        pk_fail(k, PETL_ERR_FORMAT, "REDUCE calls %s.%s, which may not be called",
                globals[fn->i].module, globals[fn->i].name);
        return NULL;
    }
    pk_fail(k, PETL_ERR_FORMAT, "%s.%s called with arguments a state dict never gives it",
            globals[fn->i].module, globals[fn->i].name);
    return NULL;
}

/* ---------------------------------------------------------------------- containers, memo */

/* SETITEM / SETITEMS: pairs[2 n] into the dict below them. */
static bool set_items(pk *k, pv **pairs, size_t n2) {
    if (n2 % 2) {
        pk_fail(k, PETL_ERR_FORMAT, "SETITEMS with an odd number of values");
        return false;
    }
    pv **keep = pk_alloc(k, (n2 + 1) * sizeof *keep); /* pairs may be overwritten by pop */
    if (!keep) return false;
    if (n2) memcpy(keep, pairs, n2 * sizeof *pairs);
    pv *d = pop_kind(k, V_DICT, "SETITEM's target");
    if (!d || !pv_reserve(k, d, 2 * d->len + n2)) return false;
    if (n2) memcpy(d->items + 2 * d->len, keep, n2 * sizeof *keep);
    d->len += n2 / 2;
    return push(k, d);
}

static bool append_items(pk *k, pv **items, size_t n) {
    pv **keep = pk_alloc(k, (n + 1) * sizeof *keep);
    if (!keep) return false;
    if (n) memcpy(keep, items, n * sizeof *items);
    pv *l = pop_kind(k, V_LIST, "APPEND's target");
    if (!l || !pv_reserve(k, l, l->len + n)) return false;
    if (n) memcpy(l->items + l->len, keep, n * sizeof *keep);
    l->len += n;
    return push(k, l);
}

static bool memo_put(pk *k, uint64_t i) {
    if (k->sp <= floor_(k)) {
        pk_fail(k, PETL_ERR_FORMAT, "memo put of an empty stack");
        return false;
    }
    /* every put is an opcode of its own, so a valid pickle never needs more slots than bytes */
    if (i >= (uint64_t)(k->end - k->pkl)) {
        pk_fail(k, PETL_ERR_FORMAT, "memo index %llu is out of range", (unsigned long long)i);
        return false;
    }
    if (!pk_grow(k, (void **)&k->memo, &k->memo_cap, (size_t)i, sizeof *k->memo, 64)) return false;
    if (!k->memo[i]) k->memo_count++;
    k->memo[i] = k->stack[k->sp - 1];
    return true;
}

static bool memo_get(pk *k, uint64_t i) {
    if (i >= k->memo_cap || !k->memo[i]) {
        pk_fail(k, PETL_ERR_FORMAT, "memo index %llu was never set", (unsigned long long)i);
        return false;
    }
    return push(k, k->memo[i]);
}

/* BUILD on the state dict: torch sets its _metadata attribute, which petl does not need. */
static bool build(pk *k) {
    pv *state = pop(k);
    if (!state) return false;
    const pv *obj = k->sp > floor_(k) ? k->stack[k->sp - 1] : NULL;
    if (!obj || obj->kind != V_DICT || !obj->i || state->kind != V_DICT) {
        pk_fail(k, PETL_ERR_FORMAT, "BUILD is allowed only to set an OrderedDict's attributes");
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ the interpreter */

/* Runs one opcode other than STOP; false with the message set on error. */
static bool step(pk *k, unsigned char op) {
    uint64_t u;
    const unsigned char *b;
    pv **items;
    size_t n;
    switch (op) {
    case 0x80: /* PROTO */
        if (!take_uint(k, 1, &u)) return false;
        if (u > 5) return pk_fail(k, PETL_ERR_UNSUPPORTED, "pickle protocol %u", (unsigned)u);
        return true;
    case 0x95: /* FRAME: a length hint */ return take_uint(k, 8, &u);
    case '(': /* MARK */
        if (k->n_marks == PK_MAX_MARKS)
            return pk_fail(k, PETL_ERR_FORMAT, "MARKs nest deeper than %d", PK_MAX_MARKS);
        k->marks[k->n_marks++] = k->sp;
        return true;
    case '}': /* EMPTY_DICT */ return push(k, pv_new(k, V_DICT));
    case ']': /* EMPTY_LIST */ return push(k, pv_new(k, V_LIST));
    case ')': /* EMPTY_TUPLE */ return push(k, make_tuple(k, NULL, 0));
    case 'N': /* NONE */ return push(k, &k->none);
    case 0x88: /* NEWTRUE */ return push(k, &k->yes);
    case 0x89: /* NEWFALSE */ return push(k, &k->no);
    case 'K': /* BININT1 */
    case 'M': /* BININT2 */
        return take_uint(k, op == 'K' ? 1 : 2, &u) && push(k, new_int(k, (int64_t)u));
    case 'J': /* BININT: signed 32 */
        return take_uint(k, 4, &u) && push(k, new_int(k, (int64_t)(int32_t)(uint32_t)u));
    case 0x8a: /* LONG1 */ return push(k, read_long1(k));
    case 'G': /* BINFLOAT */ return push(k, read_float(k));
    case 0x8c: /* SHORT_BINUNICODE */
    case 'X':  /* BINUNICODE */
    case 0x8d: /* BINUNICODE8 */
        if (!take_uint(k, op == 0x8c ? 1 : op == 'X' ? 4 : 8, &u)) return false;
        if (u > (uint64_t)(k->end - k->p))
            return pk_fail(k, PETL_ERR_FORMAT, "a string runs past the pickle's end");
        return take(k, (size_t)u, &b) && push(k, new_str(k, b, (size_t)u));
    case 't': /* TUPLE */ return pop_mark(k, &items, &n) && push(k, make_tuple(k, items, n));
    case 0x85: /* TUPLE1 */
    case 0x86: /* TUPLE2 */
    case 0x87: /* TUPLE3 */
        n = (size_t)(op - 0x84);
        if (k->sp - floor_(k) < n) return pk_fail(k, PETL_ERR_FORMAT, "stack underflow");
        k->sp -= n;
        return push(k, make_tuple(k, k->stack + k->sp, n));
    case 'q': /* BINPUT */
    case 'r': /* LONG_BINPUT */ return take_uint(k, op == 'q' ? 1 : 4, &u) && memo_put(k, u);
    case 0x94: /* MEMOIZE */ return memo_put(k, k->memo_count);
    case 'h': /* BINGET */
    case 'j': /* LONG_BINGET */ return take_uint(k, op == 'h' ? 1 : 4, &u) && memo_get(k, u);
    case 's': /* SETITEM */
        if (k->sp - floor_(k) < 2) return pk_fail(k, PETL_ERR_FORMAT, "stack underflow");
        k->sp -= 2;
        return set_items(k, k->stack + k->sp, 2);
    case 'u': /* SETITEMS */ return pop_mark(k, &items, &n) && set_items(k, items, n);
    case 'a': /* APPEND */
        if (k->sp - floor_(k) < 1) return pk_fail(k, PETL_ERR_FORMAT, "stack underflow");
        k->sp -= 1;
        return append_items(k, k->stack + k->sp, 1);
    case 'e': /* APPENDS */ return pop_mark(k, &items, &n) && append_items(k, items, n);
    case 'c': /* GLOBAL */ return push(k, read_global(k));
    case 0x93: /* STACK_GLOBAL */ return push(k, stack_global(k));
    case 'R': /* REDUCE */ return push(k, reduce(k));
    case 'Q': /* BINPERSID */ return push(k, persistent_load(k));
    case 'b': /* BUILD */ return build(k);
    default:
        return pk_fail(k, PETL_ERR_FORMAT, "opcode 0x%02x ('%c') is not allowed in a state dict",
                       op, op >= 0x20 && op < 0x7f ? op : '?');
    }
}

/* Runs data.pkl to its STOP; *out gets the object it built. */
static petl_status run(pk *k, pv **out) {
    while (k->p < k->end) {
        k->op = pk_at(k);
        unsigned char op = *k->p++;
        if (op != '.') { /* STOP */
            if (!step(k, op)) return k->err->code;
            continue;
        }
        if (k->sp != 1 || k->n_marks) {
            pk_fail(k, PETL_ERR_FORMAT, "STOP with %zu values and %d MARKs left", k->sp,
                    k->n_marks);
            return k->err->code;
        }
        if (k->p != k->end) {
            pk_fail(k, PETL_ERR_FORMAT, "%zu bytes after STOP", (size_t)(k->end - k->p));
            return k->err->code;
        }
        *out = k->stack[0];
        return PETL_OK;
    }
    pk_fail(k, PETL_ERR_FORMAT, "no STOP: the pickle is truncated");
    return k->err->code;
}

/* ---------------------------------------------------------------------- the state dict */

static void dims_str(char *buf, size_t cap, int rank, const int64_t *v) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < rank && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", d ? ", " : "", (long long)v[d]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* Tensor t under `name`: contiguous (row-major strides, those of size-1 dimensions aside, as
 * torch's is_contiguous) and inside its storage. Fills out. */
static petl_status place_tensor(pk *k, const char *name, const pk_tensor *t, petl_st_tensor *out) {
    const pk_storage *s = &k->storages[t->storage];
    const uint64_t esize = petl_dtype_size(t->dtype);
    int64_t numel = 1;
    for (int d = 0; d < t->rank; d++)
        if (__builtin_mul_overflow(numel, t->shape[d], &numel))
            return petl_fail(k->err, PETL_ERR_FORMAT, "%s: tensor '%s': shape product overflows",
                             k->what, name);
    int64_t want = 1;
    for (int d = t->rank - 1; numel > 0 && d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != want) {
            char shp[96], str[96];
            dims_str(shp, sizeof shp, t->rank, t->shape);
            dims_str(str, sizeof str, t->rank, t->stride);
            return petl_fail(k->err, PETL_ERR_UNSUPPORTED,
                             "%s: tensor '%s' is not contiguous (size %s, stride %s): petl reads "
                             "only contiguous tensors (save tensor.contiguous())",
                             k->what, name, shp, str);
        }
        want *= t->shape[d]; /* no overflow: a partial product of numel */
    }
    uint64_t first, last;
    if (__builtin_mul_overflow((uint64_t)t->offset, esize, &first) ||
        __builtin_mul_overflow((uint64_t)numel, esize, &last) ||
        __builtin_add_overflow(first, last, &last) || last > s->nbytes)
        return petl_fail(k->err, PETL_ERR_FORMAT,
                         "%s: tensor '%s' (%lld elements of %s from element %lld) runs past the "
                         "end of its storage '%s' (%llu bytes)",
                         k->what, name, (long long)numel, petl_dtype_name(t->dtype),
                         (long long)t->offset, s->key, (unsigned long long)s->nbytes);
    out->dtype = t->dtype;
    out->rank = t->rank;
    memcpy(out->shape, t->shape, sizeof out->shape);
    out->numel = numel;
    out->data = s->data + first;
    out->begin = s->offset + first;
    out->end = s->offset + last;
    return PETL_OK;
}

/* The dict data.pkl built, as tensors[n] named in one block names (both malloc'ed). */
static petl_status collect(pk *k, const pv *root, petl_st_tensor **tensors, char **names) {
    if (root->kind != V_DICT)
        return petl_fail(k->err, PETL_ERR_FORMAT,
                         "%s: data.pkl holds a %s, not a state dict (a dict of tensors)", k->what,
                         vkind_names[root->kind]);
    size_t bytes = 1;
    for (size_t i = 0; i < root->len; i++) {
        const pv *key = root->items[2 * i], *val = root->items[2 * i + 1];
        char buf[80];
        if (key->kind != V_STR || strlen(key->s) != key->len)
            return petl_fail(k->err, PETL_ERR_FORMAT, "%s: state dict key %zu is a %s, not a name",
                             k->what, i,
                             key->kind == V_STR ? "str holding a NUL" : vkind_names[key->kind]);
        if (val->kind != V_TENSOR)
            return petl_fail(k->err, PETL_ERR_FORMAT,
                             "%s: state dict entry '%s' is of type %s, not a tensor", k->what,
                             printable(buf, sizeof buf, key->s, key->len), vkind_names[val->kind]);
        bytes += key->len + 1; /* no overflow: the keys are in the arena */
    }
    *tensors = calloc(root->len + 1, sizeof **tensors);
    *names = malloc(bytes);
    if (!*tensors || !*names)
        return petl_fail(k->err, PETL_ERR_NOMEM, "%s: out of memory", k->what);
    char *at = *names;
    for (size_t i = 0; i < root->len; i++) {
        const pv *key = root->items[2 * i], *val = root->items[2 * i + 1];
        memcpy(at, key->s, key->len + 1);
        (*tensors)[i].name = at;
        at += key->len + 1;
        petl_status s = place_tensor(k, key->s, &k->tensors[val->i], &(*tensors)[i]);
        if (s != PETL_OK) return s;
    }
    return PETL_OK;
}

/* ------------------------------------------------------------------------------ archive */

/* ARCHIVE/byteorder, when present, must say little: petl does not swap bytes. */
static petl_status check_byteorder(const petl_zip *z, const char *prefix, const char *what,
                                   petl_error *err) {
    char name[PK_MAX_IDENT + 16];
    snprintf(name, sizeof name, "%sbyteorder", prefix);
    const petl_zip_entry *e = petl_zip_find(z, name, strlen(name));
    if (!e) return PETL_OK; /* files before torch 1.12 have none: little-endian */
    const unsigned char *d;
    uint64_t off;
    petl_status s = petl_zip_data(z, e, what, &d, &off, err);
    if (s != PETL_OK) return s;
    if (e->size == 6 && !memcmp(d, "little", 6)) return PETL_OK;
    if (e->size == 3 && !memcmp(d, "big", 3))
        return petl_fail(err, PETL_ERR_UNSUPPORTED,
                         "%s: a big-endian checkpoint (%s says big): petl reads little-endian ones",
                         what, name);
    return petl_fail(err, PETL_ERR_FORMAT, "%s: %s is neither little nor big", what, name);
}

/* The archive's folder: torch's reader takes it from the first entry, "ARCHIVE/...". */
static petl_status find_prefix(const petl_zip *z, const char *what, char *prefix, size_t cap,
                               petl_error *err) {
    const petl_zip_entry *first = NULL;
    for (size_t i = 0; i < z->n && !first; i++)
        if (z->entries[i].order == 0) first = &z->entries[i];
    if (!first) return petl_fail(err, PETL_ERR_FORMAT, "%s: an empty zip archive", what);
    const char *slash = memchr(first->name, '/', first->name_len);
    size_t n = slash ? (size_t)(slash - first->name) : 0;
    if (!slash || n == 0 || n + 2 > cap || memchr(first->name, '\0', n))
        return petl_fail(err, PETL_ERR_FORMAT,
                         "%s: the first zip entry '%.*s' is not in a folder: not torch.save's "
                         "layout",
                         what, (int)first->name_len, first->name);
    memcpy(prefix, first->name, n + 1);
    prefix[n + 1] = '\0';
    return PETL_OK;
}

static void pk_free(pk *k) {
    while (k->arena) {
        arena_block *b = k->arena;
        k->arena = b->next;
        free(b);
    }
    free(k->stack);
    free(k->memo);
    free(k->storages);
    free(k->storage_of_entry);
    free(k->tensors);
}

/* Runs data.pkl of archive z and makes the tensors of its state dict. */
static petl_status read_state_dict(const petl_zip *z, const char *prefix, const char *what,
                                   petl_st_tensor **tensors, size_t *n, char **names,
                                   petl_error *err) {
    char name[PK_MAX_IDENT + 16];
    snprintf(name, sizeof name, "%sdata.pkl", prefix);
    const petl_zip_entry *e = petl_zip_find(z, name, strlen(name));
    if (!e) return petl_fail(err, PETL_ERR_FORMAT, "%s: no %s in the archive", what, name);
    const unsigned char *pkl;
    uint64_t off;
    petl_status s = petl_zip_data(z, e, what, &pkl, &off, err);
    if (s != PETL_OK) return s;
    if (e->size > PK_MAX_PICKLE)
        return petl_fail(err, PETL_ERR_UNSUPPORTED,
                         "%s: %s of %llu bytes is over petl's limit of %u", what, name,
                         (unsigned long long)e->size, PK_MAX_PICKLE);
    pk k = {.what = what,
            .err = err,
            .pkl = pkl,
            .p = pkl,
            .end = pkl + e->size,
            .zip = z,
            .prefix = prefix};
    k.none.kind = V_NONE;
    k.yes.kind = k.no.kind = V_BOOL;
    k.yes.i = 1;
    /* a pickle allocates a few dozen bytes per byte of it at most (a value per opcode) */
    k.arena_limit = 64 * (size_t)e->size + (1u << 20);
    k.storage_of_entry = calloc(z->n + 1, sizeof *k.storage_of_entry);
    if (!k.storage_of_entry) return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    pv *root = NULL;
    s = run(&k, &root);
    if (s == PETL_OK) {
        s = collect(&k, root, tensors, names);
        *n = root->len;
    }
    pk_free(&k);
    return s;
}

/* Parses buf[len]; on success the object takes map (NULL: buf is borrowed). */
static petl_status torch_parse(const unsigned char *buf, size_t len, const char *what, void *map,
                               petl_safetensors **out, petl_error *err) {
    if (len >= 4 && buf[0] == 0x80 && buf[2] == 0x8a && buf[3] == 0x0a)
        return petl_fail(err, PETL_ERR_UNSUPPORTED,
                         "%s: torch's legacy format (before PyTorch 1.6, or "
                         "_use_new_zipfile_serialization=False): re-save it with torch.save, or "
                         "convert it to safetensors",
                         what);
    petl_zip z;
    char prefix[PK_MAX_IDENT + 2];
    petl_st_tensor *tensors = NULL;
    char *names = NULL;
    size_t n = 0;
    petl_status s = petl_zip_read(&z, buf, len, what, err);
    if (s == PETL_OK) s = find_prefix(&z, what, prefix, sizeof prefix, err);
    if (s == PETL_OK) s = check_byteorder(&z, prefix, what, err);
    if (s == PETL_OK) s = read_state_dict(&z, prefix, what, &tensors, &n, &names, err);
    petl_zip_free(&z);
    if (s != PETL_OK) {
        free(tensors);
        free(names);
        return s;
    }
    return petl_st_adopt(what, tensors, n, names, map, map ? len : 0, out, err);
}

petl_status petl_torch_parse(const void *buf, size_t len, const char *what, petl_safetensors **out,
                             petl_error *err) {
    if (!out || (!buf && len))
        return petl_fail(err, PETL_ERR_ARG, "petl_torch_parse: NULL buffer or output");
    *out = NULL;
    petl_error local;
    petl_status s = torch_parse(buf, len, what ? what : "<buffer>", NULL, out, &local);
    if (s != PETL_OK && err) *err = local;
    return s;
}

petl_status petl_torch_open(const char *path, petl_safetensors **out, petl_error *err) {
    if (!path || !out) return petl_fail(err, PETL_ERR_ARG, "petl_torch_open: NULL path or output");
    *out = NULL;
    void *map;
    size_t len;
    petl_error local;
    petl_status s = petl_map_file(path, &map, &len, &local);
    if (s == PETL_OK) s = torch_parse(map, len, path, map, out, &local);
    if (s != PETL_OK) {
        if (map) munmap(map, len);
        if (err) *err = local;
    }
    return s;
}
