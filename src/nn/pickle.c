/* pickle.c - restricted pickle reader (see pickle.h). */
#include "nn/pickle.h"

#include "clmr/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ---------------------------------------------------------------------------------- */

typedef struct block {
    struct block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} block_t;

struct clmr_pk_arena {
    block_t *head;
    size_t total;
};

static void *arena_alloc(clmr_pk_arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > ((size_t)1 << 20) ? n : ((size_t)1 << 20);
        if (a->total + cap > CLMR_PK_MAX_ARENA) return NULL;
        block_t *b = malloc(sizeof(block_t) + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        a->total += cap;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

static void arena_free(clmr_pk_arena_t *a)
{
    if (!a) return;
    for (block_t *b = a->head, *nx; b; b = nx) {
        nx = b->next;
        free(b);
    }
    free(a);
}

/* ---- parser state --------------------------------------------------------------------------- */

typedef struct {
    const unsigned char *p, *end, *start;
    clmr_pk_arena_t *a;
    clmr_pk_result_t *r;
    clmr_pk_value_t **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t n_marks, marks_cap;
    clmr_pk_value_t **memo;
    size_t memo_cap, memo_count;
    size_t n_values;
    char **errmsg;
    int op;
    size_t op_off;
    int err; /* the first failure */
} pk_t;

static int fail(pk_t *k, const char *why)
{
    if (!k->err)
        k->err = clmr_set_err(k->errmsg, CLMR_ECHECKPOINT, "pickle: opcode 0x%02x at byte %zu: %s",
                              k->op, k->op_off, why);
    return k->err;
}

static int nomem(pk_t *k)
{
    if (!k->err)
        k->err = clmr_set_err(k->errmsg, CLMR_ENOMEM,
                              "pickle: out of memory (or over "
                              "the %zu MiB bound)",
                              CLMR_PK_MAX_ARENA >> 20);
    return k->err;
}

static clmr_pk_value_t *new_value(pk_t *k, clmr_pk_kind_t kind)
{
    if (++k->n_values > CLMR_PK_MAX_VALUES) {
        fail(k, "too many values");
        return NULL;
    }
    clmr_pk_value_t *v = arena_alloc(k->a, sizeof(*v));
    if (!v) {
        nomem(k);
        return NULL;
    }
    v->kind = kind;
    return v;
}

static char *arena_strdup(pk_t *k, const void *s, size_t n)
{
    char *c = arena_alloc(k->a, n + 1);
    if (!c) {
        nomem(k);
        return NULL;
    }
    memcpy(c, s, n);
    c[n] = 0;
    return c;
}

static int push(pk_t *k, clmr_pk_value_t *v)
{
    if (!v) return k->err ? k->err : nomem(k);
    if (k->sp == k->stack_cap) {
        size_t cap = k->stack_cap ? 2 * k->stack_cap : 256;
        if (cap > CLMR_PK_MAX_VALUES) return fail(k, "stack too deep");
        clmr_pk_value_t **s = realloc(k->stack, cap * sizeof(*s));
        if (!s) return nomem(k);
        k->stack = s;
        k->stack_cap = cap;
    }
    k->stack[k->sp++] = v;
    return 0;
}

static clmr_pk_value_t *pop(pk_t *k)
{
    size_t floor = k->n_marks ? k->marks[k->n_marks - 1] : 0;
    if (k->sp <= floor) {
        fail(k, "stack underflow");
        return NULL;
    }
    return k->stack[--k->sp];
}

static clmr_pk_value_t *top(pk_t *k)
{
    size_t floor = k->n_marks ? k->marks[k->n_marks - 1] : 0;
    if (k->sp <= floor) {
        fail(k, "stack underflow");
        return NULL;
    }
    return k->stack[k->sp - 1];
}

/* Pops everything down to the last MARK: *first = stack index of the first item, *n = count. */
static int pop_mark(pk_t *k, size_t *first, size_t *n)
{
    if (!k->n_marks) return fail(k, "no MARK on the stack");
    size_t m = k->marks[--k->n_marks];
    *first = m;
    *n = k->sp - m;
    k->sp = m;
    return 0;
}

static int items_append(pk_t *k, clmr_pk_value_t *c, clmr_pk_value_t *v)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 8;
        if (cap > 2 * (size_t)CLMR_PK_MAX_VALUES) return fail(k, "container too large");
        clmr_pk_value_t **it = arena_alloc(k->a, cap * sizeof(*it));
        if (!it) return nomem(k);
        if (c->n) memcpy(it, c->items, c->n * sizeof(*it));
        c->items = it;
        c->cap = cap;
    }
    c->items[c->n++] = v;
    return 0;
}

static int need(pk_t *k, size_t n)
{
    if ((size_t)(k->end - k->p) < n) return fail(k, "truncated argument");
    return 0;
}

static uint64_t rd_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* A text argument up to '\n' (protocol 0 opcodes); *len excludes the newline. */
static const unsigned char *read_line(pk_t *k, size_t *len)
{
    size_t room = (size_t)(k->end - k->p);
    if (room > 65536) room = 65536;
    const unsigned char *nl = memchr(k->p, '\n', room);
    if (!nl) {
        fail(k, "unterminated or over-long text argument");
        return NULL;
    }
    const unsigned char *s = k->p;
    *len = (size_t)(nl - s);
    k->p = nl + 1;
    return s;
}

static clmr_pk_value_t *make_int(pk_t *k, int64_t i)
{
    clmr_pk_value_t *v = new_value(k, CLMR_PK_INT);
    if (v) v->i = i;
    return v;
}

static clmr_pk_value_t *make_str(pk_t *k, clmr_pk_kind_t kind, const void *s, size_t n)
{
    if (n > CLMR_PK_MAX_STRING) {
        fail(k, "string longer than the bound");
        return NULL;
    }
    clmr_pk_value_t *v = new_value(k, kind);
    if (!v) return NULL;
    if (!(v->s = arena_strdup(k, s, n))) return NULL;
    v->len = n;
    return v;
}

/* LONG1/LONG4 little-endian two's complement. */
static clmr_pk_value_t *make_long(pk_t *k, const unsigned char *b, size_t n)
{
    if (n <= 8) {
        uint64_t u = n ? rd_le(b, (int)n) : 0;
        if (n && n < 8 && (b[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        return make_int(k, (int64_t)u);
    }
    clmr_pk_value_t *v = make_str(k, CLMR_PK_INT, b, n);
    if (v) v->i = 0;
    return v;
}

/* ---- globals -------------------------------------------------------------------------------- */

/* Modules and builtins that a real unpickler would let a file use to run code or touch the
 * system. Only recorded: this reader calls nothing. */
static int is_unsafe_global(const char *mod, const char *name)
{
    static const char *const mods[] = {"os",         "posix",      "nt",
                                       "subprocess", "sys",        "shutil",
                                       "socket",     "importlib",  "runpy",
                                       "pty",        "code",       "codeop",
                                       "ctypes",     "marshal",    "pickle",
                                       "_pickle",    "dill",       "webbrowser",
                                       "commands",   "platform",   "multiprocessing",
                                       "tempfile",   "asyncio",    "signal",
                                       "threading",  "_thread",    "popen2",
                                       "pip",        "setuptools", "torch.hub",
                                       "torch._C",   "torch.ops",  "torch.jit",
                                       "timeit",     "pdb",        "bdb",
                                       "imp",        "types",      "inspect",
                                       "urllib",     "http",       "ftplib",
                                       "smtplib"};
    static const char *const builtins[] = {
        "eval",    "exec",     "compile", "open",   "__import__", "getattr",    "setattr",
        "delattr", "globals",  "locals",  "vars",   "input",      "breakpoint", "exit",
        "quit",    "execfile", "file",    "reload", "memoryview", "help",       "apply"};
    size_t ml = strlen(mod);
    for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++) {
        size_t l = strlen(mods[i]);
        if (ml >= l && strncmp(mod, mods[i], l) == 0 && (mod[l] == 0 || mod[l] == '.')) return 1;
    }
    if (strcmp(mod, "builtins") == 0 || strcmp(mod, "__builtin__") == 0 ||
        strcmp(mod, "__builtins__") == 0)
        for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
            if (strcmp(name, builtins[i]) == 0) return 1;
    if (strcmp(mod, "operator") == 0 &&
        (strcmp(name, "attrgetter") == 0 || strcmp(name, "methodcaller") == 0))
        return 1;
    if (strcmp(mod, "functools") == 0 && strcmp(name, "partial") == 0) return 1;
    return 0;
}

static const struct {
    const char *name;
    clmr_dtype_t dt;
} storage_types[] = {
    {"torch.FloatStorage", CLMR_DT_F32},
    {"torch.HalfStorage", CLMR_DT_F16},
    {"torch.BFloat16Storage", CLMR_DT_BF16},
    {"torch.DoubleStorage", CLMR_DT_F64},
    {"torch.LongStorage", CLMR_DT_I64},
    {"torch.IntStorage", CLMR_DT_I32},
    {"torch.ShortStorage", CLMR_DT_I16},
    {"torch.CharStorage", CLMR_DT_I8},
    {"torch.ByteStorage", CLMR_DT_U8},
    {"torch.BoolStorage", CLMR_DT_BOOL},
    {"torch.cuda.FloatStorage", CLMR_DT_F32},
    {"torch.cuda.HalfStorage", CLMR_DT_F16},
    {"torch.cuda.BFloat16Storage", CLMR_DT_BF16},
    {"torch.cuda.DoubleStorage", CLMR_DT_F64},
    {"torch.cuda.LongStorage", CLMR_DT_I64},
};

static const char *const dtype_names[CLMR_DT_COUNT] = {"float32", "float16", "bfloat16", "float64",
                                                       "int64",   "int32",   "int16",    "int8",
                                                       "uint8",   "bool"};
static const int dtype_sizes[CLMR_DT_COUNT] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};

int clmr_dtype_size(clmr_dtype_t t)
{
    return t >= 0 && t < CLMR_DT_COUNT ? dtype_sizes[t] : 0;
}
const char *clmr_dtype_name(clmr_dtype_t t)
{
    return t >= 0 && t < CLMR_DT_COUNT ? dtype_names[t] : "unknown";
}

static clmr_pk_value_t *make_global(pk_t *k, const char *mod, size_t ml, const char *name,
                                    size_t nl)
{
    if (ml == 0 || nl == 0 || ml > 200 || nl > 200 || memchr(mod, 0, ml) || memchr(name, 0, nl)) {
        fail(k, "bad global name");
        return NULL;
    }
    char full[402], m[201], n[201];
    memcpy(m, mod, ml), m[ml] = 0;
    memcpy(n, name, nl), n[nl] = 0;
    snprintf(full, sizeof(full), "%s.%s", m, n);
    if (is_unsafe_global(m, n)) {
        clmr_pk_result_t *r = k->r;
        int seen = 0;
        for (int i = 0; i < r->n_unsafe; i++)
            seen |= strcmp(r->unsafe[i], full) == 0;
        if (!seen) {
            r->n_unsafe_total++;
            if (r->n_unsafe < CLMR_PK_MAX_UNSAFE) {
                size_t l = strlen(full);
                if (l >= sizeof(r->unsafe[0])) l = sizeof(r->unsafe[0]) - 1;
                memcpy(r->unsafe[r->n_unsafe], full, l);
                r->unsafe[r->n_unsafe++][l] = 0;
            }
        }
    }
    return make_str(k, CLMR_PK_GLOBAL, full, strlen(full));
}

static int is_global(const clmr_pk_value_t *v, const char *name)
{
    return v && v->kind == CLMR_PK_GLOBAL && strcmp(v->s, name) == 0;
}

static clmr_pk_value_t *make_object(pk_t *k, const clmr_pk_value_t *callable)
{
    const char *name =
        callable && (callable->kind == CLMR_PK_GLOBAL || callable->kind == CLMR_PK_OBJECT)
            ? callable->s
            : "?";
    return make_str(k, CLMR_PK_OBJECT, name, strlen(name));
}

static int get_int(const clmr_pk_value_t *v, int64_t *out)
{
    if (!v || (v->kind != CLMR_PK_INT && v->kind != CLMR_PK_BOOL) || v->len > 8) return 0;
    *out = v->i;
    return 1;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, ...) */
static clmr_pk_value_t *rebuild_tensor(pk_t *k, const clmr_pk_value_t *args)
{
    if (!args || args->kind != CLMR_PK_TUPLE || args->n < 4) {
        fail(k, "_rebuild_tensor: expected (storage, offset, size, stride, ...)");
        return NULL;
    }
    const clmr_pk_value_t *st = args->items[0], *sz = args->items[2], *sd = args->items[3];
    int64_t off;
    if (!st || st->kind != CLMR_PK_STORAGE || !get_int(args->items[1], &off) || off < 0 || !sz ||
        sz->kind != CLMR_PK_TUPLE || !sd || sd->kind != CLMR_PK_TUPLE || sz->n != sd->n ||
        sz->n > CLMR_PK_MAX_DIMS) {
        fail(k, "_rebuild_tensor: bad storage, offset, size or stride");
        return NULL;
    }
    clmr_pk_value_t *v = new_value(k, CLMR_PK_TENSOR);
    if (!v) return NULL;
    clmr_pk_tensor_t *t = arena_alloc(k->a, sizeof(*t));
    if (!t) {
        nomem(k);
        return NULL;
    }
    v->t = t;
    t->storage = (clmr_pk_value_t *)st;
    t->offset = off;
    t->ndim = (int)sz->n;
    for (int d = 0; d < t->ndim; d++)
        if (!get_int(sz->items[d], &t->shape[d]) || !get_int(sd->items[d], &t->stride[d]) ||
            t->shape[d] < 0 || t->stride[d] < 0) {
            fail(k, "_rebuild_tensor: size and stride must be non-negative integers");
            return NULL;
        }
    v->dtype = st->dtype;
    return v;
}

/* REDUCE / NEWOBJ of callable with args: interprets the few callables a state dict needs. */
static clmr_pk_value_t *call(pk_t *k, clmr_pk_value_t *callable, clmr_pk_value_t *args)
{
    if (is_global(callable, "collections.OrderedDict") && args && args->kind == CLMR_PK_TUPLE &&
        args->n == 0)
        return new_value(k, CLMR_PK_DICT);
    if (is_global(callable, "torch._utils._rebuild_tensor_v2") ||
        is_global(callable, "torch._utils._rebuild_tensor"))
        return rebuild_tensor(k, args);
    if ((is_global(callable, "torch._utils._rebuild_parameter") ||
         is_global(callable, "torch._utils._rebuild_parameter_with_state")) &&
        args && args->kind == CLMR_PK_TUPLE && args->n >= 1 &&
        args->items[0]->kind == CLMR_PK_TENSOR)
        return args->items[0];
    /* anything else: an inert object that remembers what it would have called; its arguments
     * are kept (items[0]) so a caller could look at, e.g., torch.storage._load_from_bytes */
    clmr_pk_value_t *o = make_object(k, callable);
    if (o && args && items_append(k, o, args)) return NULL;
    return o;
}

/* persistent_load(pid): ('storage', <StorageType>, key, location, numel[, view_metadata]). */
static clmr_pk_value_t *persistent(pk_t *k, const clmr_pk_value_t *pid)
{
    if (!pid || pid->kind != CLMR_PK_TUPLE || pid->n < 5 || pid->items[0]->kind != CLMR_PK_STR ||
        strcmp(pid->items[0]->s, "storage") != 0) {
        fail(k, "persistent id is not a ('storage', type, key, location, numel) tuple");
        return NULL;
    }
    const clmr_pk_value_t *type = pid->items[1], *key = pid->items[2];
    int64_t numel;
    if (!type || type->kind != CLMR_PK_GLOBAL || !key ||
        (key->kind != CLMR_PK_STR && key->kind != CLMR_PK_INT) || !get_int(pid->items[4], &numel) ||
        numel < 0) {
        fail(k, "storage persistent id: bad type, key or size");
        return NULL;
    }
    int dt = -1;
    for (size_t i = 0; i < sizeof(storage_types) / sizeof(storage_types[0]); i++)
        if (strcmp(type->s, storage_types[i].name) == 0) dt = (int)storage_types[i].dt;
    if (dt < 0) {
        char why[300];
        snprintf(why, sizeof(why), "unsupported storage type %.200s", type->s);
        fail(k, why);
        return NULL;
    }
    clmr_pk_value_t *v = new_value(k, CLMR_PK_STORAGE);
    if (!v) return NULL;
    if (key->kind == CLMR_PK_STR) {
        if (key->len > 200 || memchr(key->s, '/', key->len) || memchr(key->s, 0, key->len)) {
            fail(k, "storage key too long or contains '/'");
            return NULL;
        }
        v->s = key->s;
    } else {
        char buf[32];
        snprintf(buf, sizeof(buf), "%lld", (long long)key->i);
        if (!(v->s = arena_strdup(k, buf, strlen(buf)))) return NULL;
    }
    v->dtype = (clmr_dtype_t)dt;
    v->i = numel;
    clmr_pk_result_t *r = k->r;
    if (r->n_storages == r->storages_cap) {
        size_t cap = r->storages_cap ? 2 * r->storages_cap : 64;
        clmr_pk_value_t **a = realloc(r->storages, cap * sizeof(*a));
        if (!a) {
            nomem(k);
            return NULL;
        }
        r->storages = a;
        r->storages_cap = cap;
    }
    r->storages[r->n_storages++] = v;
    const clmr_pk_value_t *view = pid->n >= 6 ? pid->items[5] : NULL;
    if (view && view->kind == CLMR_PK_TUPLE) { /* legacy: (view_key, offset, view_size) */
        int64_t off, vsize;
        if (view->n != 3 || !get_int(view->items[1], &off) || !get_int(view->items[2], &vsize) ||
            off < 0 || vsize < 0 || off > numel || vsize > numel - off) {
            fail(k, "storage view metadata out of range");
            return NULL;
        }
        clmr_pk_tensor_t *t = arena_alloc(k->a, sizeof(*t));
        if (!t) {
            nomem(k);
            return NULL;
        }
        t->offset = off;
        v->t = t;
        v->i = vsize;
    }
    return v;
}

/* ---- memo ----------------------------------------------------------------------------------- */

static int memo_put(pk_t *k, uint64_t idx)
{
    clmr_pk_value_t *v = top(k);
    if (!v) return k->err;
    if (idx >= CLMR_PK_MAX_VALUES) return fail(k, "memo index out of bounds");
    if (idx >= k->memo_cap) {
        size_t cap = k->memo_cap ? k->memo_cap : 64;
        while (cap <= idx)
            cap *= 2;
        clmr_pk_value_t **m = realloc(k->memo, cap * sizeof(*m));
        if (!m) return nomem(k);
        memset(m + k->memo_cap, 0, (cap - k->memo_cap) * sizeof(*m));
        k->memo = m;
        k->memo_cap = cap;
    }
    if (!k->memo[idx]) k->memo_count++;
    k->memo[idx] = v;
    return 0;
}

static int memo_get(pk_t *k, uint64_t idx)
{
    if (idx >= k->memo_cap || !k->memo[idx]) return fail(k, "memo key not set");
    return push(k, k->memo[idx]);
}

static int parse_dec(pk_t *k, const unsigned char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 18) return fail(k, "bad decimal argument");
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return fail(k, "bad decimal argument");
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* ---- the machine ---------------------------------------------------------------------------- */

static int step(pk_t *k, int *stop)
{
    k->op_off = (size_t)(k->p - k->start);
    if (k->p >= k->end) return fail(k, "pickle ends without STOP");
    int op = k->op = *k->p++;
    size_t first = 0, n = 0, len = 0;
    const unsigned char *s;
    clmr_pk_value_t *v, *a, *b;
    uint64_t u;
    switch (op) {
    case 0x80: /* PROTO */
        if (need(k, 1)) return k->err;
        if (*k->p > 5) return fail(k, "unsupported pickle protocol");
        k->p++;
        return 0;
    case 0x95: /* FRAME: a length hint */
        if (need(k, 8)) return k->err;
        k->p += 8;
        return 0;
    case '.':
        *stop = 1;
        return 0;
    case '(':
        if (k->n_marks == k->marks_cap) {
            size_t cap = k->marks_cap ? 2 * k->marks_cap : 32;
            if (cap > CLMR_PK_MAX_VALUES) return fail(k, "too many MARKs");
            size_t *m = realloc(k->marks, cap * sizeof(*m));
            if (!m) return nomem(k);
            k->marks = m;
            k->marks_cap = cap;
        }
        k->marks[k->n_marks++] = k->sp;
        return 0;
    case '0':                                                  /* POP */
        if (k->n_marks && k->marks[k->n_marks - 1] == k->sp) { /* pops a MARK */
            k->n_marks--;
            return 0;
        }
        return pop(k) ? 0 : k->err;
    case '1': /* POP_MARK */
        return pop_mark(k, &first, &n);
    case '2': /* DUP */
        return (v = top(k)) ? push(k, v) : k->err;
    case 'N':
        return push(k, new_value(k, CLMR_PK_NONE));
    case 0x88:
    case 0x89:
        if (!(v = new_value(k, CLMR_PK_BOOL))) return k->err;
        v->i = op == 0x88;
        return push(k, v);
    case 'J':
        if (need(k, 4)) return k->err;
        v = make_int(k, (int32_t)(uint32_t)rd_le(k->p, 4));
        k->p += 4;
        return push(k, v);
    case 'K':
        if (need(k, 1)) return k->err;
        return push(k, make_int(k, *k->p++));
    case 'M':
        if (need(k, 2)) return k->err;
        v = make_int(k, (int64_t)rd_le(k->p, 2));
        k->p += 2;
        return push(k, v);
    case 0x8a: /* LONG1 */
        if (need(k, 1)) return k->err;
        n = *k->p++;
        if (need(k, n)) return k->err;
        v = make_long(k, k->p, n);
        k->p += n;
        return push(k, v);
    case 0x8b: /* LONG4 */
        if (need(k, 4)) return k->err;
        n = (size_t)rd_le(k->p, 4);
        k->p += 4;
        if (n > 1024) return fail(k, "LONG4 wider than 1024 bytes");
        if (need(k, n)) return k->err;
        v = make_long(k, k->p, n);
        k->p += n;
        return push(k, v);
    case 'I': /* INT (text); "00"/"01" are False/True */
    case 'L': /* LONG (text, optional trailing L) */
        if (!(s = read_line(k, &len))) return k->err;
        if (op == 'L' && len && s[len - 1] == 'L') len--;
        {
            int neg = len && s[0] == '-';
            if (parse_dec(k, s + neg, len - neg, &u)) return k->err;
            if (op == 'I' && len == 2 && s[0] == '0') {
                if (!(v = new_value(k, CLMR_PK_BOOL))) return k->err;
                v->i = (int64_t)u;
                return push(k, v);
            }
            return push(k, make_int(k, neg ? -(int64_t)u : (int64_t)u));
        }
    case 'G': /* BINFLOAT, big-endian */
        if (need(k, 8)) return k->err;
        {
            uint64_t bits = 0;
            for (int i = 0; i < 8; i++)
                bits = bits << 8 | k->p[i];
            k->p += 8;
            double d;
            memcpy(&d, &bits, 8);
            if (!(v = new_value(k, CLMR_PK_FLOAT))) return k->err;
            v->f = d;
            return push(k, v);
        }
    case 'F': /* FLOAT (text) */
        if (!(s = read_line(k, &len))) return k->err;
        {
            char buf[64];
            if (len >= sizeof(buf)) return fail(k, "FLOAT text too long");
            memcpy(buf, s, len);
            buf[len] = 0;
            char *e;
            double d = strtod(buf, &e);
            if (e == buf || *e) return fail(k, "bad FLOAT text");
            if (!(v = new_value(k, CLMR_PK_FLOAT))) return k->err;
            v->f = d;
            return push(k, v);
        }
    case 0x8c: /* SHORT_BINUNICODE */
    case 'U':  /* SHORT_BINSTRING */
    case 'C':  /* SHORT_BINBYTES */
        if (need(k, 1)) return k->err;
        n = *k->p++;
        goto counted;
    case 'X': /* BINUNICODE */
    case 'T': /* BINSTRING */
    case 'B': /* BINBYTES */
        if (need(k, 4)) return k->err;
        n = (size_t)rd_le(k->p, 4);
        k->p += 4;
        goto counted;
    case 0x8d: /* BINUNICODE8 */
    case 0x8e: /* BINBYTES8 */
    case 0x96: /* BYTEARRAY8 */
        if (need(k, 8)) return k->err;
        u = rd_le(k->p, 8);
        k->p += 8;
        if (u > CLMR_PK_MAX_STRING) return fail(k, "string longer than the bound");
        n = (size_t)u;
    counted:
        if (n > CLMR_PK_MAX_STRING) return fail(k, "string longer than the bound");
        if (need(k, n)) return k->err;
        v = make_str(
            k, (op == 'C' || op == 'B' || op == 0x8e || op == 0x96) ? CLMR_PK_BYTES : CLMR_PK_STR,
            k->p, n);
        k->p += n;
        return push(k, v);
    case 'S': /* STRING (text, quoted repr; escapes kept as written) */
    case 'V': /* UNICODE (text, raw-unicode-escape kept as written) */
        if (!(s = read_line(k, &len))) return k->err;
        if (op == 'S') {
            if (len < 2 || (s[0] != '\'' && s[0] != '"') || s[len - 1] != s[0])
                return fail(k, "bad STRING quoting");
            s++, len -= 2;
        }
        return push(k, make_str(k, CLMR_PK_STR, s, len));
    case ')':
        return push(k, new_value(k, CLMR_PK_TUPLE));
    case ']':
        return push(k, new_value(k, CLMR_PK_LIST));
    case '}':
        return push(k, new_value(k, CLMR_PK_DICT));
    case 0x8f:
        return push(k, new_value(k, CLMR_PK_SET));
    case 't':  /* TUPLE */
    case 'l':  /* LIST */
    case 0x91: /* FROZENSET */
        if (pop_mark(k, &first, &n)) return k->err;
        if (!(v = new_value(k, op == 't' ? CLMR_PK_TUPLE : op == 'l' ? CLMR_PK_LIST : CLMR_PK_SET)))
            return k->err;
        for (size_t i = 0; i < n; i++)
            if (items_append(k, v, k->stack[first + i])) return k->err;
        return push(k, v);
    case 'd': /* DICT */
        if (pop_mark(k, &first, &n)) return k->err;
        if (n % 2) return fail(k, "DICT with an odd number of items");
        if (!(v = new_value(k, CLMR_PK_DICT))) return k->err;
        for (size_t i = 0; i < n; i++)
            if (items_append(k, v, k->stack[first + i])) return k->err;
        return push(k, v);
    case 0x85: /* TUPLE1..3 */
    case 0x86:
    case 0x87: {
        int cnt = op - 0x84;
        clmr_pk_value_t *it[3];
        for (int i = cnt - 1; i >= 0; i--)
            if (!(it[i] = pop(k))) return k->err;
        if (!(v = new_value(k, CLMR_PK_TUPLE))) return k->err;
        for (int i = 0; i < cnt; i++)
            if (items_append(k, v, it[i])) return k->err;
        return push(k, v);
    }
    case 'a': /* APPEND */
        if (!(b = pop(k)) || !(a = top(k))) return k->err;
        if (a->kind == CLMR_PK_LIST || a->kind == CLMR_PK_OBJECT) return items_append(k, a, b);
        return fail(k, "APPEND to a non-list");
    case 'e':  /* APPENDS */
    case 0x90: /* ADDITEMS */
        if (pop_mark(k, &first, &n)) return k->err;
        if (!(a = top(k))) return k->err;
        if (a->kind != CLMR_PK_LIST && a->kind != CLMR_PK_SET && a->kind != CLMR_PK_OBJECT)
            return fail(k, "APPENDS/ADDITEMS to a non-list");
        for (size_t i = 0; i < n; i++)
            if (items_append(k, a, k->stack[first + i])) return k->err;
        return 0;
    case 's': /* SETITEM */
        if (!(b = pop(k)) || !(v = pop(k)) || !(a = top(k))) return k->err;
        if (a->kind == CLMR_PK_OBJECT) return 0; /* e.g. a dict subclass: contents unused */
        if (a->kind != CLMR_PK_DICT) return fail(k, "SETITEM on a non-dict");
        return items_append(k, a, v) ? k->err : items_append(k, a, b);
    case 'u': /* SETITEMS */
        if (pop_mark(k, &first, &n)) return k->err;
        if (n % 2) return fail(k, "SETITEMS with an odd number of items");
        if (!(a = top(k))) return k->err;
        if (a->kind == CLMR_PK_OBJECT) return 0;
        if (a->kind != CLMR_PK_DICT) return fail(k, "SETITEMS on a non-dict");
        for (size_t i = 0; i < n; i++)
            if (items_append(k, a, k->stack[first + i])) return k->err;
        return 0;
    case 'c': /* GLOBAL module\nname\n */
    case 'i': /* INST module\nname\n (then MARK args): an inert object */
    {
        const unsigned char *m, *nm;
        size_t ml, nl;
        if (!(m = read_line(k, &ml)) || !(nm = read_line(k, &nl))) return k->err;
        if (!(v = make_global(k, (const char *)m, ml, (const char *)nm, nl))) return k->err;
        if (op == 'c') return push(k, v);
        if (pop_mark(k, &first, &n)) return k->err;
        return push(k, make_object(k, v));
    }
    case 0x93: /* STACK_GLOBAL */
        if (!(b = pop(k)) || !(a = pop(k))) return k->err;
        if (a->kind != CLMR_PK_STR || b->kind != CLMR_PK_STR)
            return fail(k, "STACK_GLOBAL needs two strings");
        return push(k, make_global(k, a->s, a->len, b->s, b->len));
    case 'o': /* OBJ: MARK cls args... */
        if (pop_mark(k, &first, &n)) return k->err;
        if (n < 1) return fail(k, "OBJ without a class");
        return push(k, make_object(k, k->stack[first]));
    case 'R':  /* REDUCE */
    case 0x81: /* NEWOBJ */
        if (!(b = pop(k)) || !(a = pop(k))) return k->err;
        if (op == 0x81) return push(k, make_object(k, a));
        return push(k, call(k, a, b));
    case 0x92: /* NEWOBJ_EX */
        if (!pop(k) || !pop(k) || !(a = pop(k))) return k->err;
        return push(k, make_object(k, a));
    case 'b': /* BUILD: only objects keep their state (for reports); dicts ignore it */
        if (!(b = pop(k)) || !(a = top(k))) return k->err;
        if (a->kind == CLMR_PK_OBJECT) return items_append(k, a, b);
        return 0;
    case 'Q': /* BINPERSID */
        if (!(a = pop(k))) return k->err;
        return push(k, persistent(k, a));
    case 'P': /* PERSID (text): not used by torch */
        return fail(k, "text persistent ids are not supported");
    case 'q':
        if (need(k, 1)) return k->err;
        return memo_put(k, *k->p++);
    case 'r':
        if (need(k, 4)) return k->err;
        u = rd_le(k->p, 4);
        k->p += 4;
        return memo_put(k, u);
    case 0x94: /* MEMOIZE: the next index is the memo's size */
        return memo_put(k, k->memo_count);
    case 'p':
        if (!(s = read_line(k, &len)) || parse_dec(k, s, len, &u)) return k->err;
        return memo_put(k, u);
    case 'h':
        if (need(k, 1)) return k->err;
        return memo_get(k, *k->p++);
    case 'j':
        if (need(k, 4)) return k->err;
        u = rd_le(k->p, 4);
        k->p += 4;
        return memo_get(k, u);
    case 'g':
        if (!(s = read_line(k, &len)) || parse_dec(k, s, len, &u)) return k->err;
        return memo_get(k, u);
    default:
        return fail(k, "opcode not supported in a checkpoint (extension, buffer or unknown)");
    }
}

int clmr_pk_parse(clmr_pk_result_t *r, const void *buf, size_t size, char **errmsg)
{
    memset(r, 0, sizeof(*r));
    pk_t k;
    memset(&k, 0, sizeof(k));
    k.start = k.p = buf;
    k.end = k.p + size;
    k.r = r;
    k.errmsg = errmsg;
    if (!(r->arena = calloc(1, sizeof(*r->arena)))) return CLMR_ENOMEM;
    k.a = r->arena;
    int stop = 0;
    while (!stop && !k.err)
        step(&k, &stop);
    if (!k.err) {
        if (k.sp != 1 || k.n_marks) {
            k.op = '.';
            fail(&k, "STOP with other than exactly one value on the stack");
        } else {
            r->root = k.stack[0];
            r->consumed = (size_t)(k.p - k.start);
        }
    }
    free(k.stack);
    free(k.marks);
    free(k.memo);
    if (k.err) {
        clmr_pk_free(r);
        return k.err;
    }
    return 0;
}

void clmr_pk_free(clmr_pk_result_t *r)
{
    if (!r) return;
    arena_free(r->arena);
    free(r->storages);
    memset(r, 0, sizeof(*r));
}

clmr_pk_value_t *clmr_pk_dict_get(const clmr_pk_value_t *d, const char *key)
{
    if (!d || d->kind != CLMR_PK_DICT) return NULL;
    for (size_t i = d->n; i >= 2; i -= 2) {
        const clmr_pk_value_t *kv = d->items[i - 2];
        if (kv->kind == CLMR_PK_STR && strcmp(kv->s, key) == 0) return d->items[i - 1];
    }
    return NULL;
}
