/* cmd_keys.c - `clmrd keys create|list|revoke`: API keys of a data directory (issue 12).
 *
 * DESIGN: works on the daemon's SQLite catalogue directly (WAL: safe while the daemon runs; the
 * daemon reloads its key table every few seconds). The data directory comes from --data-dir, else
 * CLMRD_DATA_DIR, else ./data, as for `clmrd serve`. A new key is printed once on stdout (and
 * nowhere else); list shows ids, names, scopes and the key prefixes, never hashes or keys. Exit 0
 * on success, 1 on a store error or unknown key, 2 on usage errors.
 */
#include "cli/cli.h"
#include "clmr/error.h"
#include "store/store.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int clmr_cli_keys(int argc, char **argv);

static void keys_usage(FILE *f)
{
    fprintf(
        f,
        "Usage: clmrd keys create --scope read|write|admin --name NAME [--data-dir DIR] [--json]\n"
        "       clmrd keys list [--all] [--data-dir DIR] [--json]\n"
        "       clmrd keys revoke ID [--data-dir DIR]\n\n"
        "API keys for the HTTP service, sent as 'Authorization: Bearer KEY'. read: tagging,\n"
        "search and listing; write: also ingest and delete; admin: also /v1/admin. A new key\n"
        "is printed once and only its sha256 is stored. DIR defaults to $CLMRD_DATA_DIR or\n"
        "./data (the service's data-dir). A running service picks changes up within a few\n"
        "seconds.\n");
}

static void fmt_time(int64_t ms, char *buf, size_t cap)
{
    if (!ms) {
        snprintf(buf, cap, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *key_json(const clmr_store_key_t *k)
{
    json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:I}", "id", (json_int_t)k->id, "name",
                          k->name ? k->name : "", "scope", clmr_key_scope_name(k->scope), "prefix",
                          k->prefix, "created_at", (json_int_t)k->created_at);
    json_object_set_new(o, "revoked_at", k->revoked_at ? json_integer(k->revoked_at) : json_null());
    return o;
}

int clmr_cli_keys(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        keys_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *verb = argv[1], *scope = NULL, *name = NULL, *id = NULL;
    const char *dir = getenv("CLMRD_DATA_DIR");
    int all = 0, as_json = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--all")) {
            all = 1;
        } else if (!strcmp(a, "--json")) {
            as_json = 1;
        } else if ((!strcmp(a, "--scope") || !strcmp(a, "--name") || !strcmp(a, "--data-dir")) &&
                   i + 1 < argc) {
            const char **dst = a[2] == 's' ? &scope : a[2] == 'n' ? &name : &dir;
            *dst = argv[++i];
        } else if (a[0] != '-' && !id) {
            id = a;
        } else {
            fprintf(stderr, "clmrd keys: unexpected argument '%s'\n", a);
            keys_usage(stderr);
            return 2;
        }
    }
    if (!dir || !*dir) dir = "./data";
    int create = !strcmp(verb, "create"), list = !strcmp(verb, "list"),
        revoke = !strcmp(verb, "revoke");
    if (!create && !list && !revoke) {
        fprintf(stderr, "clmrd keys: unknown sub-command '%s' (create, list, revoke)\n", verb);
        return 2;
    }
    int sc = scope ? clmr_key_scope_parse(scope) : -1;
    if (create && (sc < 0 || !name || !*name)) {
        fprintf(stderr,
                "clmrd keys create: --scope read|write|admin and --name NAME are required\n");
        return 2;
    }
    char *end = NULL;
    long long kid = id ? strtoll(id, &end, 10) : 0;
    if (revoke && (!id || *end || kid < 1)) {
        fprintf(stderr, "clmrd keys revoke: give the key's id (see 'clmrd keys list')\n");
        return 2;
    }
    clmr_store_params_t p = clmr_store_default_params();
    p.data_dir = dir;
    p.readers = 1;
    p.quick_check = 0;
    clmr_store_t *s = NULL;
    char *msg = NULL;
    int rc = clmr_store_open(&s, &p, &msg);
    if (rc) {
        fprintf(stderr, "clmrd keys: cannot open the catalogue in '%s': %s\n", dir,
                msg ? msg : clmr_strerror(rc));
        free(msg);
        return 1;
    }
    int status = 0;
    if (create) {
        char key[CLMR_KEY_TEXT_MAX];
        clmr_store_key_t k;
        rc = clmr_store_key_create(s, name, (clmr_key_scope_t)sc, key, &k, &msg);
        if (!rc) {
            if (as_json) {
                json_t *o = key_json(&k);
                json_object_set_new(o, "key", json_string(key));
                char *t = json_dumps(o, JSON_COMPACT);
                printf("%s\n", t ? t : "{}");
                free(t);
                json_decref(o);
            } else {
                printf("%s\n", key);
                fprintf(stderr,
                        "clmrd keys: key %lld '%s' (scope %s) created; it is shown only once\n",
                        (long long)k.id, k.name, clmr_key_scope_name(k.scope));
            }
            memset(key, 0, sizeof key);
            clmr_store_key_clear(&k);
        }
    } else if (list) {
        clmr_store_key_t *items = NULL;
        size_t n = 0;
        rc = clmr_store_key_list(s, all, &items, &n, &msg);
        if (!rc && as_json) {
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, key_json(&items[i]));
            char *t = json_dumps(arr, JSON_COMPACT);
            printf("%s\n", t ? t : "[]");
            free(t);
            json_decref(arr);
        } else if (!rc) {
            printf("%-5s %-6s %-13s %-21s %-21s %s\n", "ID", "SCOPE", "PREFIX", "CREATED",
                   "REVOKED", "NAME");
            for (size_t i = 0; i < n; i++) {
                char c[32], r[32];
                fmt_time(items[i].created_at, c, sizeof c);
                fmt_time(items[i].revoked_at, r, sizeof r);
                printf("%-5lld %-6s %-13s %-21s %-21s %s\n", (long long)items[i].id,
                       clmr_key_scope_name(items[i].scope), items[i].prefix, c, r,
                       items[i].name ? items[i].name : "");
            }
        }
        clmr_store_key_list_free(items, n);
    } else {
        clmr_store_key_t k;
        rc = clmr_store_key_revoke(s, kid, &k, &msg);
        if (!rc) {
            fprintf(stderr, "clmrd keys: key %lld '%s' revoked\n", (long long)k.id,
                    k.name ? k.name : "");
            clmr_store_key_clear(&k);
        }
    }
    if (rc) {
        fprintf(stderr, "clmrd keys %s: %s\n", verb, msg ? msg : clmr_strerror(rc));
        status = 1;
    }
    free(msg);
    clmr_store_close(&s);
    return status;
}
