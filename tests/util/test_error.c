/* Every error code has a distinct machine name and a message. */
#include "clmr/error.h"
#include "harness.h"

#include <string.h>

static void test_names_distinct(void)
{
    static const int codes[] = {
#define X(name, val, slug, msg) val,
        CLMR_ERROR_LIST(X)
#undef X
    };
    size_t n = sizeof(codes) / sizeof(codes[0]);
    for (size_t i = 0; i < n; i++) {
        CHECK(strcmp(clmr_err_name(codes[i]), "unknown_error") != 0);
        CHECK(strlen(clmr_strerror(codes[i])) > 5);
        for (size_t j = i + 1; j < n; j++) {
            CHECK(codes[i] != codes[j]);
            CHECK(strcmp(clmr_err_name(codes[i]), clmr_err_name(codes[j])) != 0);
        }
    }
    CHECK(strcmp(clmr_err_name(12345), "unknown_error") == 0);
}

static void test_set_err(void)
{
    char *msg = NULL;
    CHECK(clmr_set_err(&msg, CLMR_EIO, "x=%d", 3) == CLMR_EIO);
    CHECK(msg && strcmp(msg, "x=3") == 0);
    CHECK(clmr_set_err(&msg, CLMR_EINVAL, "again") == CLMR_EINVAL);
    CHECK(msg && strcmp(msg, "again") == 0);
    free(msg);
    CHECK(clmr_set_err(NULL, CLMR_EIO, "ignored") == CLMR_EIO);
}

int main(void)
{
    RUN_TEST(test_names_distinct);
    RUN_TEST(test_set_err);
    return TEST_END();
}
