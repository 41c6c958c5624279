/* error.c - strings for the error list in include/clmr/error.h. */
#include "clmr/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const char *clmr_strerror(int err)
{
    switch (err) {
    case CLMR_OK:
        return "success";
#define CLMR__ERR_MSG(name, val, slug, msg)                                                        \
    case (val):                                                                                    \
        return msg;
        CLMR_ERROR_LIST(CLMR__ERR_MSG)
#undef CLMR__ERR_MSG
    }
    return "unknown error";
}

const char *clmr_err_name(int err)
{
    switch (err) {
    case CLMR_OK:
        return "ok";
#define CLMR__ERR_SLUG(name, val, slug, msg)                                                       \
    case (val):                                                                                    \
        return slug;
        CLMR_ERROR_LIST(CLMR__ERR_SLUG)
#undef CLMR__ERR_SLUG
    }
    return "unknown_error";
}

int clmr_set_err(char **errmsg, int err, const char *fmt, ...)
{
    if (!errmsg) return err;
    free(*errmsg);
    *errmsg = NULL;
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    *errmsg = s;
    return err;
}
