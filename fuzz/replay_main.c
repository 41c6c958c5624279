/* replay_main.c - runs a fuzz target's LLVMFuzzerTestOneInput on saved inputs, without libFuzzer.
 *
 * DESIGN: linked with one fuzz/fuzz_*.c by any compiler (gcc in the normal build), so every seed
 * and every regression input in fuzz/corpus/<target>/ and fuzz/regressions/<target>/ is replayed
 * on every test run; with the ASan/UBSan build it catches the same memory errors the fuzzer did.
 * A contract violation in the target traps and the test fails with the file named on the line
 * before. Arguments: files or directories (read one level deep, sorted). Prints TAP, one case
 * per argument. An empty or missing directory is an error: a replay of nothing proves nothing,
 * except that regressions/ dirs may be empty (name them with a leading '?').
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    /* exact-size heap copy, so ASan sees reads past the end as the fuzzer does */
    uint8_t *b = malloc(n ? n : 1);
    if (!b || fread(b, 1, n, f) != n) {
        free(b);
        fclose(f);
        return -1;
    }
    fclose(f);
    printf("# %s (%zu bytes)\n", path, n);
    fflush(stdout);
    LLVMFuzzerTestOneInput(b, n);
    free(b);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays every regular file in dir; returns the count or -1. */
static int replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) break;
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, by_name);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (names[i] && replay_file(path) == 0) count++;
        free(names[i]);
    }
    free(names);
    return count;
}

int main(int argc, char **argv)
{
    int failed = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int may_be_empty = arg[0] == '?';
        if (may_be_empty) arg++;
        struct stat st;
        int count;
        if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode))
            count = replay_dir(arg);
        else if (stat(arg, &st) != 0 && may_be_empty)
            count = 0;
        else
            count = replay_file(arg) == 0 ? 1 : -1;
        int ok = count > 0 || (count == 0 && may_be_empty);
        printf("%s %d - %s: %d inputs replayed\n", ok ? "ok" : "not ok", i, arg, count);
        failed += !ok;
    }
    printf("1..%d\n", argc - 1);
    return failed ? 1 : 0;
}
