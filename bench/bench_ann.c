/* bench_ann.c - approximate similarity search (src/index/ann.c on FAISS) against the exact scan
 * (src/index/index.c) on synthetic clustered 512-d unit vectors.
 *
 * Data: C cluster centres (Gaussian, normalised); vector i = normalise(centre[c_i] + sigma * g)
 * with c_i and the Gaussian g drawn from a generator seeded by i alone, so any vector can be
 * regenerated without storing it: the set is produced in batches (memory stays bounded at 10M).
 * Queries are fresh draws from the same distribution (not in the set).
 *
 * Per run: build time, RSS (VmRSS growth over the build and peak VmHWM), p50/p99 latency of
 * single queries on one thread, recall@10 = |ANN top-10 & exact top-10| / 10, and the recall of
 * the clmr_ann_candidates(10) candidates (HNSW 36, IVF-PQ 164) that the daemon re-scores exactly
 * (its served top-10 recall). Ground
 * truth: the exact index (clmr_index_search) over the same vectors, in batches of --gt-batch
 * rows merged per query. With --exact-ref the whole set also goes into one exact index and its
 * latency is measured as the reference (ratio printed); that costs 2.5 KiB per vector.
 *
 * Usage: bench_ann --n N [--kind hnsw|ivfpq] [--queries Q] [--efs 16,32,64] [--nprobes 8,16,32]
 *        [--clusters C] [--sigma S] [--build-threads T] [--exact-ref] [--gt-batch B]
 *        [--hnsw-m M] [--efc E] [--nlist L] [--pq-m P] [--train T] [--index-file F]
 * --index-file: load the index from F when it exists (same --n/--clusters/--sigma: the data is
 * regenerated for the ground truth), else build it and save it there; lets a slow build be
 * measured once and the search knobs swept later.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clmr/error.h"
#include "index/ann.h"
#include "index/index.h"

#define DIM 512
#define K 10

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of this thread: on a loaded shared machine the stable figure (wall time includes
 * waiting for a core). */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl)) v = atol(line + kl + 1);
    if (f) fclose(f);
    return v;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double unif(uint64_t *s)
{
    return ((double)(splitmix(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Box-Muller, two normals per call. */
static void gauss2(uint64_t *s, float *a, float *b)
{
    double r = sqrt(-2.0 * log(unif(s))), t = 6.283185307179586 * unif(s);
    *a = (float)(r * cos(t));
    *b = (float)(r * sin(t));
}

static void normalise(float *v)
{
    double ss = 0;
    for (int i = 0; i < DIM; i++)
        ss += (double)v[i] * v[i];
    float inv = (float)(1.0 / sqrt(ss));
    for (int i = 0; i < DIM; i++)
        v[i] *= inv;
}

typedef struct {
    int clusters;
    float sigma;
    float *centres; /* clusters * DIM */
} gen_t;

static int gen_init(gen_t *g, int clusters, float sigma)
{
    g->clusters = clusters;
    g->sigma = sigma;
    g->centres = malloc((size_t)clusters * DIM * sizeof(float));
    if (!g->centres) return -1;
    uint64_t s = 0xC1A55E5ull;
    for (int c = 0; c < clusters; c++) {
        for (int i = 0; i < DIM; i += 2)
            gauss2(&s, &g->centres[(size_t)c * DIM + i], &g->centres[(size_t)c * DIM + i + 1]);
        normalise(&g->centres[(size_t)c * DIM]);
    }
    return 0;
}

/* Vector number i (stream 0 = the set, stream 1 = queries), written to v (DIM floats). */
static void gen_vec(const gen_t *g, uint64_t stream, uint64_t i, float *v)
{
    uint64_t s = (stream << 48) ^ (i * 0xD1B54A32D192ED03ull) ^ 0x5EEDull;
    const float *c = &g->centres[(size_t)(splitmix(&s) % (uint64_t)g->clusters) * DIM];
    for (int d = 0; d < DIM; d += 2) {
        float a, b;
        gauss2(&s, &a, &b);
        v[d] = c[d] + g->sigma * a;
        v[d + 1] = c[d + 1] + g->sigma * b;
    }
    normalise(v);
}

static void gen_batch(const gen_t *g, uint64_t stream, uint64_t first, size_t n, float *out)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        gen_vec(g, stream, first + i, out + i * DIM);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        out[n++] = atoi(s);
        const char *c = strchr(s, ',');
        if (!c) break;
        s = c + 1;
    }
    return n;
}

/* Ground truth: top-K labels per query by exact scans over batches of the set, merged. */
static int ground_truth(const gen_t *g, size_t n, const float *qs, int nq, size_t batch,
                        int64_t *gt, double *exact_p50_ms, int exact_ref)
{
    float *best = malloc((size_t)nq * K * sizeof(float)),
          *buf = malloc(batch * DIM * sizeof(float));
    clmr_index_hit_t hits[K];
    if (!best || !buf) return CLMR_ENOMEM;
    for (size_t i = 0; i < (size_t)nq * K; i++) {
        best[i] = -2;
        gt[i] = -1;
    }
    double *lat = malloc((size_t)nq * sizeof *lat);
    if (exact_ref) batch = n; /* one index over everything: its latency is the reference */
    for (size_t first = 0; first < n; first += batch) {
        size_t b = n - first < batch ? n - first : batch;
        clmr_index_t *x = NULL;
        int rc = clmr_index_create(&x, DIM, b);
        if (rc) return rc;
        for (size_t done = 0; done < b;) {
            size_t m = b - done < 65536 ? b - done : 65536;
            if (buf == NULL) return CLMR_ENOMEM;
            gen_batch(g, 0, first + done, m, buf);
            for (size_t i = 0; i < m; i++) {
                char id[32];
                snprintf(id, sizeof id, "%zu", first + done + i);
                if ((rc = clmr_index_upsert(x, id, buf + i * DIM))) return rc;
            }
            done += m;
        }
        for (int q = 0; q < nq; q++) {
            int nh = 0;
            double t0 = cpu_s();
            if ((rc = clmr_index_search(x, qs + (size_t)q * DIM, K, NULL, hits, &nh))) return rc;
            lat[q] = (cpu_s() - t0) * 1e3;
            for (int h = 0; h < nh; h++) {
                /* insert into this query's sorted top-K */
                float *bs = best + (size_t)q * K;
                int64_t *gl = gt + (size_t)q * K;
                if (hits[h].score <= bs[K - 1]) break;
                int p = K - 1;
                while (p > 0 && bs[p - 1] < hits[h].score) {
                    bs[p] = bs[p - 1];
                    gl[p] = gl[p - 1];
                    p--;
                }
                bs[p] = hits[h].score;
                gl[p] = atoll(hits[h].id);
            }
        }
        clmr_index_destroy(&x);
        fprintf(stderr, "  ground truth: %zu / %zu rows\n", first + b, n);
    }
    if (exact_ref) {
        qsort(lat, (size_t)nq, sizeof *lat, cmp_d);
        *exact_p50_ms = lat[nq / 2];
    }
    free(lat);
    free(best);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = 100000, gt_batch = 262144, train_n = 0;
    int nq = 300, clusters = 0, build_threads = 2, exact_ref = 0;
    int hnsw_m = 0, efc = 0, nlist = 0, pq_m = 0;
    float sigma = 0.05f;
    const char *kind_s = "hnsw", *index_file = NULL;
    int efforts[16], n_eff = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--n"))
            n = (size_t)atoll(v), i++;
        else if (!strcmp(a, "--kind"))
            kind_s = v, i++;
        else if (!strcmp(a, "--queries"))
            nq = atoi(v), i++;
        else if (!strcmp(a, "--efs") || !strcmp(a, "--nprobes"))
            n_eff = parse_list(v, efforts, 16), i++;
        else if (!strcmp(a, "--clusters"))
            clusters = atoi(v), i++;
        else if (!strcmp(a, "--sigma"))
            sigma = (float)atof(v), i++;
        else if (!strcmp(a, "--build-threads"))
            build_threads = atoi(v), i++;
        else if (!strcmp(a, "--exact-ref"))
            exact_ref = 1;
        else if (!strcmp(a, "--gt-batch"))
            gt_batch = (size_t)atoll(v), i++;
        else if (!strcmp(a, "--hnsw-m"))
            hnsw_m = atoi(v), i++;
        else if (!strcmp(a, "--efc"))
            efc = atoi(v), i++;
        else if (!strcmp(a, "--nlist"))
            nlist = atoi(v), i++;
        else if (!strcmp(a, "--pq-m"))
            pq_m = atoi(v), i++;
        else if (!strcmp(a, "--train"))
            train_n = (size_t)atoll(v), i++;
        else if (!strcmp(a, "--index-file"))
            index_file = v, i++;
        else {
            fprintf(stderr, "bench_ann: unknown argument %s (see the header comment)\n", a);
            return 2;
        }
    }
    clmr_ann_kind_t kind = !strcmp(kind_s, "ivfpq") ? CLMR_ANN_IVFPQ : CLMR_ANN_HNSW;
    if (!clusters) clusters = n / 100 > 100 ? (int)(n / 100) : 100; /* ~100 per cluster */
    if (n < 1000 || nq < 10 || clusters < 1) {
        fprintf(stderr, "bench_ann: --n >= 1000, --queries >= 10, --clusters >= 1\n");
        return 2;
    }
    clmr_ann_params_t p = clmr_ann_default_params(kind, DIM, n);
    p.store_ids = 0;
    if (hnsw_m) p.hnsw_m = hnsw_m;
    if (efc) p.ef_construction = efc;
    if (nlist) p.nlist = nlist;
    if (pq_m) p.pq_m = pq_m;
    if (!n_eff) {
        if (kind == CLMR_ANN_HNSW) {
            int d[] = {16, 32, 64, 128};
            memcpy(efforts, d, sizeof d);
        } else {
            int d[] = {p.nprobe / 2 > 0 ? p.nprobe / 2 : 1, p.nprobe, 2 * p.nprobe, 4 * p.nprobe};
            memcpy(efforts, d, sizeof d);
        }
        n_eff = 4;
    }
    gen_t g;
    if (gen_init(&g, clusters, sigma)) return 1;
    printf("bench_ann: n=%zu dim=%d kind=%s clusters=%d sigma=%.3f queries=%d build_threads=%d\n",
           n, DIM, clmr_ann_kind_name(kind), clusters, sigma, nq, build_threads);
    if (kind == CLMR_ANN_HNSW)
        printf("  params: M=%d efConstruction=%d\n", p.hnsw_m, p.ef_construction);
    else
        printf("  params: nlist=%d pq_m=%d (bytes/vector), HNSW coarse quantizer\n", p.nlist,
               p.pq_m);
    fflush(stdout);

    float *qs = malloc((size_t)nq * DIM * sizeof(float));
    size_t bb = 65536;
    float *buf = malloc(bb * DIM * sizeof(float));
    if (!qs || !buf) return 1;
    /* touched now, so the RSS growth measured over the build is the index's, not this buffer's */
    memset(buf, 0, bb * DIM * sizeof(float));
    gen_batch(&g, 1, 0, (size_t)nq, qs);

    omp_set_num_threads(build_threads);
    long rss0 = status_kb("VmRSS:");
    double t0 = now_s();
    clmr_ann_t *a = NULL;
    char *msg = NULL;
    if (index_file && clmr_ann_load(&a, index_file, NULL) == 0) {
        long rss1 = status_kb("VmRSS:");
        printf("  loaded %s in %.1f s: RSS +%.1f MiB (%.0f bytes/vector)\n", index_file,
               now_s() - t0, (double)(rss1 - rss0) / 1024.0,
               (double)(rss1 - rss0) * 1024.0 / (double)n);
        if (clmr_ann_labels(a) != n) {
            fprintf(stderr, "bench_ann: %s holds %zu vectors, not %zu\n", index_file,
                    clmr_ann_labels(a), n);
            return 1;
        }
        free(buf);
        goto measured;
    }
    if (clmr_ann_open(&a, &p, &msg)) {
        fprintf(stderr, "bench_ann: %s\n", msg ? msg : "open failed");
        return 1;
    }
    double t_train = 0;
    if (clmr_ann_needs_training(a)) {
        size_t nt = train_n ? train_n : (size_t)p.nlist * 40;
        if (nt > n) nt = n;
        float *tr = malloc(nt * DIM * sizeof(float));
        if (!tr) return 1;
        /* a sample spread over the set: vectors i * (n / nt) */
        size_t step = n / nt;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < nt; i++)
            gen_vec(&g, 0, i * step, tr + i * DIM);
        double tt = now_s();
        if (clmr_ann_train(a, nt, tr, &msg)) {
            fprintf(stderr, "bench_ann: train: %s\n", msg ? msg : "failed");
            return 1;
        }
        t_train = now_s() - tt;
        free(tr);
        printf("  trained on %zu vectors in %.1f s\n", nt, t_train);
        fflush(stdout);
    }
    double t_gen = 0;
    for (size_t first = 0; first < n; first += bb) {
        size_t m = n - first < bb ? n - first : bb;
        double tg = now_s();
        gen_batch(&g, 0, first, m, buf);
        t_gen += now_s() - tg;
        if (clmr_ann_add(a, m, buf, NULL, &msg)) {
            fprintf(stderr, "bench_ann: add: %s\n", msg ? msg : "failed");
            return 1;
        }
        if ((first / bb) % 16 == 15) fprintf(stderr, "  added %zu / %zu\n", first + m, n);
    }
    double t_build = now_s() - t0 - t_gen;
    long rss1 = status_kb("VmRSS:");
    free(buf);
    printf("  build: %.1f s (training %.1f s; generating the data, %.1f s, not counted)\n", t_build,
           t_train, t_gen);
    printf("  memory: RSS +%.1f MiB over the build (%.0f bytes/vector), estimate %.1f MiB\n",
           (double)(rss1 - rss0) / 1024.0, (double)(rss1 - rss0) * 1024.0 / (double)n,
           (double)clmr_ann_memory(a) / 1048576.0);
    fflush(stdout);
    if (index_file && clmr_ann_save(a, index_file, &msg)) {
        fprintf(stderr, "bench_ann: save: %s\n", msg ? msg : "failed");
        return 1;
    }
measured:;

    int64_t *gt = malloc((size_t)nq * K * sizeof *gt);
    double exact_p50 = 0;
    if (!gt) return 1;
    double tg0 = now_s();
    int rc = ground_truth(&g, n, qs, nq, gt_batch, gt, &exact_p50, exact_ref);
    if (rc) {
        fprintf(stderr, "bench_ann: ground truth: %s\n", clmr_strerror(rc));
        return 1;
    }
    printf("  ground truth by exact scan: %.1f s", now_s() - tg0);
    if (exact_ref)
        printf("; exact scan CPU p50 %.2f ms per query (kernel %s)", exact_p50,
               clmr_index_kernel_name());
    printf("\n");

    omp_set_num_threads(1);
    const int KC = clmr_ann_candidates(a, K);
    int64_t lab[10 * K + 64];
    float sc[10 * K + 64];
    double *lat = malloc((size_t)nq * sizeof *lat), *latc = malloc((size_t)nq * sizeof *latc),
           *cpu = malloc((size_t)nq * sizeof *cpu);
    printf("  wall-clock latency (p50/p99) and CPU time per query (cpu p50), one thread\n");
    printf("  %-8s %9s %9s %10s %9s %9s %9s %12s\n", kind == CLMR_ANN_HNSW ? "efSearch" : "nprobe",
           "p50 ms", "p99 ms", "recall@10", "p50 ms*", "p99 ms*", "cpu p50*", "recall@10*");
    for (int e = 0; e < n_eff; e++) {
        double rsum = 0, rsumc = 0;
        clmr_ann_set_effort(a, efforts[e]);
        for (int pass = 0; pass < 2; pass++) {
            int kk = pass ? KC : K;
            for (int q = 0; q < nq; q++) {
                int m = 0;
                double t = now_s(), c = cpu_s();
                if (clmr_ann_search(a, qs + (size_t)q * DIM, kk, lab, sc, &m, &msg)) {
                    fprintf(stderr, "bench_ann: search: %s\n", msg ? msg : "failed");
                    return 1;
                }
                (pass ? latc : lat)[q] = (now_s() - t) * 1e3;
                if (pass) cpu[q] = (cpu_s() - c) * 1e3;
                int hit = 0;
                for (int i = 0; i < (pass ? m : (m < K ? m : K)); i++)
                    for (int j = 0; j < K; j++)
                        if (lab[i] == gt[(size_t)q * K + j]) hit++;
                *(pass ? &rsumc : &rsum) += (double)hit / K;
            }
        }
        qsort(lat, (size_t)nq, sizeof *lat, cmp_d);
        qsort(latc, (size_t)nq, sizeof *latc, cmp_d);
        qsort(cpu, (size_t)nq, sizeof *cpu, cmp_d);
        printf("  %-8d %9.3f %9.3f %10.4f %9.3f %9.3f %9.3f %12.4f\n", efforts[e], lat[nq / 2],
               lat[(size_t)(nq * 0.99)], rsum / nq, latc[nq / 2], latc[(size_t)(nq * 0.99)],
               cpu[nq / 2], rsumc / nq);
        if (exact_ref)
            printf("  %-8s exact scan CPU p50 / this CPU p50 (k=%d): %.1fx\n", "", KC,
                   exact_p50 / cpu[nq / 2]);
        fflush(stdout);
    }
    printf(
        "  * = the %d candidates the daemon asks for and re-scores exactly (its top-10 recall)\n",
        KC);
    printf("  peak RSS (VmHWM) %.1f MiB\n", (double)status_kb("VmHWM:") / 1024.0);
    clmr_ann_close(&a);
    free(gt);
    free(lat);
    free(latc);
    free(cpu);
    free(qs);
    free(g.centres);
    free(msg);
    return 0;
}
