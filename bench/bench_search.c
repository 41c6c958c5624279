/* bench_search.c - similarity search at catalogue scale: synthetic 512-d embeddings inserted
 * THROUGH THE STORE (SQLite, synchronous=FULL, bulk transactions), loaded into the index the way
 * the daemon does at start-up, then k=10 searches timed one by one (p50/p99), with the AVX-512
 * and scalar kernels measured side by side in the same run.
 *
 * Usage: bench_search [--queries Q] [--batch B] [--dir DIR] [--default-only] [N...]
 *        (default N: 10000 100000; with --dir, a database already holding N tracks is reused)
 * Prints one block per N. DIR defaults to a temp directory that is removed afterwards.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clmr/error.h"
#include "index/index.h"
#include "store/store.h"

#define DIM 512
#define MODEL "bench-model"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x1234567887654321ull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static void make_id(char out[65], uint64_t n)
{
    uint64_t x = n * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < 4; i++) {
        x ^= x >> 31;
        x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 29;
        snprintf(out + 16 * i, 17, "%016llx", (unsigned long long)(x + (uint64_t)i));
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

static int rm_cb(const char *p, const struct stat *sb, int fl, struct FTW *ftw)
{
    (void)sb;
    (void)fl;
    (void)ftw;
    return remove(p);
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Wall-clock p50/p99/mean per search, and the thread's CPU time per search (mean): on a shared,
 * oversubscribed machine the CPU time shows the cost without the waiting for a core. */
static void time_searches(clmr_index_t *x, const float *queries, int nq, const char *kernel,
                          int prefilter, double *p50, double *p99, double *mean, double *cpu_mean)
{
    clmr_index_set_kernel(kernel);
    clmr_index_set_prefilter(prefilter);
    double *t = malloc(sizeof *t * (size_t)nq), sum = 0;
    clmr_index_hit_t hits[10];
    int nh;
    clmr_index_search(x, queries, 10, NULL, hits, &nh); /* warm-up */
    double c0 = cpu_s();
    for (int i = 0; i < nq; i++) {
        double t0 = now_s();
        if (clmr_index_search(x, queries + (size_t)i * DIM, 10, NULL, hits, &nh) || nh != 10)
            fprintf(stderr, "search failed\n");
        t[i] = (now_s() - t0) * 1e3;
        sum += t[i];
    }
    *cpu_mean = (cpu_s() - c0) * 1e3 / nq;
    qsort(t, (size_t)nq, sizeof *t, cmp_d);
    *p50 = t[nq / 2];
    *p99 = t[(nq * 99) / 100 < nq ? (nq * 99) / 100 : nq - 1];
    *mean = sum / nq;
    free(t);
    clmr_index_set_kernel("auto");
    clmr_index_set_prefilter(1);
}

static int default_only; /* --default-only: time just the kernel/prefilter the daemon uses */

static int run(long n, int nq, int batch, const char *base)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/bench-%ld", base, n);
    clmr_store_params_t p = clmr_store_default_params();
    p.data_dir = dir;
    clmr_store_t *s = NULL;
    char *err = NULL;
    int rc = clmr_store_open(&s, &p, &err);
    if (rc) {
        fprintf(stderr, "open: %s\n", err ? err : clmr_strerror(rc));
        return 1;
    }
    clmr_store_model_t m = {0};
    snprintf(m.id, sizeof m.id, MODEL);
    m.status = CLMR_MODEL_ACTIVE;
    clmr_store_model_ensure(s, &m, NULL, NULL);

    float *emb = malloc(sizeof(float) * DIM);
    int64_t have = 0;
    clmr_store_track_count(s, &have, NULL);
    long start = have == n ? n : 0; /* --dir with a finished database: skip the insert */
    if (have && have != n) {
        fprintf(stderr, "%s holds %lld tracks, not %ld\n", dir, (long long)have, n);
        return 1;
    }
    double t0 = now_s();
    for (long i = start; i < n && !rc; i++) {
        if (i % batch == 0 && (rc = clmr_store_write_begin(s, &err))) break;
        clmr_track_record_t t = {0};
        make_id(t.id, (uint64_t)i);
        t.duration_s = 30;
        for (int j = 0; j < DIM; j++)
            emb[j] = frand();
        rc = clmr_store_track_ingest(s, &t, MODEL, emb, DIM, NULL, 0, NULL, &err);
        if ((i + 1) % batch == 0 || i + 1 == n) {
            int rc2 = clmr_store_write_end(s, rc == 0, rc ? NULL : &err);
            if (!rc) rc = rc2;
        }
    }
    double t_insert = now_s() - t0;
    if (rc) {
        fprintf(stderr, "insert: %s\n", err ? err : clmr_strerror(rc));
        return 1;
    }
    clmr_store_checkpoint(s, NULL);
    /* Start-up cost the daemon pays: open = pragmas + quick_check + migration check. */
    clmr_store_close(&s);
    t0 = now_s();
    rc = clmr_store_open(&s, &p, &err);
    double t_open = now_s() - t0;
    if (rc) {
        fprintf(stderr, "reopen: %s\n", err ? err : clmr_strerror(rc));
        return 1;
    }
    char dbp[4200];
    snprintf(dbp, sizeof dbp, "%s/clmrd.sqlite", dir);
    struct stat st;
    double db_bytes = stat(dbp, &st) == 0 ? (double)st.st_size : -1;

    long rss0 = rss_kb();
    clmr_index_t *x = NULL;
    clmr_index_create(&x, DIM, 0);
    size_t loaded = 0;
    t0 = now_s();
    rc = clmr_index_load(x, s, MODEL, &loaded, &err);
    double t_load = now_s() - t0;
    long rss1 = rss_kb();
    if (rc || loaded != (size_t)n) {
        fprintf(stderr, "load: %s (%zu)\n", err ? err : clmr_strerror(rc), loaded);
        return 1;
    }
    float *q = malloc(sizeof(float) * DIM * (size_t)nq);
    for (long i = 0; i < (long)DIM * nq; i++)
        q[i] = frand();
    printf("N=%ld dim=%d k=10 queries=%d\n", n, DIM, nq);
    if (start == 0)
        printf("  insert through store: %.2f s (%.0f tracks/s, %d per transaction)\n", t_insert,
               (double)n / t_insert, batch);
    else
        printf("  insert: reused the existing database in %s\n", dir);
    printf("  database: %.0f bytes/track; re-open with quick_check: %.2f s\n", db_bytes / (double)n,
           t_open);
    printf("  index load from store: %.2f s (%.0f rows/s)\n", t_load, (double)n / t_load);
    printf("  index memory: RSS +%.0f bytes/track (allocated incl. 25%% headroom: %.0f "
           "bytes/track)\n",
           (double)(rss1 - rss0) * 1024.0 / (double)n, (double)clmr_index_memory(x) / (double)n);
    /* Every kernel this CPU runs, with and without the int8 prefilter, side by side. */
    const char *kernels[3] = {"avx512", "avx2", "scalar"};
    const char *auto_name = clmr_index_kernel_name();
    double base_cpu = 0;
    for (int kk = 0; kk < 3; kk++) {
        if (clmr_index_set_kernel(kernels[kk]) != 0) continue;
        for (int pf = 1; pf >= 0; pf--) {
            if (kk == 2 && pf) continue; /* scalar has no prefilter */
            if (default_only && (!pf || strcmp(kernels[kk], auto_name) != 0)) continue;
            double p50, p99, mean, cpu;
            time_searches(x, q, nq, kernels[kk], pf, &p50, &p99, &mean, &cpu);
            if (base_cpu == 0) base_cpu = cpu;
            printf("  search %-6s %-14s p50 %8.3f ms  p99 %8.3f ms  mean %8.3f ms  cpu/search "
                   "%7.3f ms (x%.2f)\n",
                   kernels[kk], pf ? "int8+rescore" : "full fp32", p50, p99, mean, cpu,
                   cpu / base_cpu);
        }
    }
    clmr_index_set_kernel("auto");
    fflush(stdout);
    free(q);
    free(emb);
    clmr_index_destroy(&x);
    clmr_store_close(&s);
    return 0;
}

int main(int argc, char **argv)
{
    int nq = 200, batch = 5000;
    const char *dir = NULL;
    long sizes[16];
    int ns = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--queries") && i + 1 < argc)
            nq = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--default-only"))
            default_only = 1;
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (ns < 16 && atol(argv[i]) > 0)
            sizes[ns++] = atol(argv[i]);
        else {
            fprintf(stderr,
                    "usage: %s [--queries Q] [--batch B] [--dir DIR] [--default-only] [N...]\n",
                    argv[0]);
            return 2;
        }
    }
    if (nq < 10 || batch < 1) return 2;
    if (!ns) {
        sizes[ns++] = 10000;
        sizes[ns++] = 100000;
    }
    char tmp[] = "/tmp/clmr-bench-XXXXXX";
    int own = 0;
    if (!dir) {
        if (!mkdtemp(tmp)) return 1;
        dir = tmp;
        own = 1;
    }
    int rc = 0;
    for (int i = 0; i < ns && !rc; i++)
        rc = run(sizes[i], nq, batch, dir);
    if (own) nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
