/* The string builder: appends, formatting past the small stack buffer, JSON escaping, the cap
 * and its sticky error. */
#include "common/error.h"
#include "common/strbuf.h"

#include <criterion/criterion.h>
#include <string.h>

TestSuite(strbuf, .timeout = 10);

Test(strbuf, appends_and_formats)
{
    mg_strbuf sb;
    mg_strbuf_init(&sb, 0);
    cr_assert_str_eq(mg_strbuf_str(&sb), "");
    mg_strbuf_puts(&sb, "a");
    mg_strbuf_printf(&sb, "-%d-%s", 42, "x");
    cr_assert_str_eq(mg_strbuf_str(&sb), "a-42-x");
    char big[1000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    mg_strbuf_printf(&sb, "[%s]", big); /* longer than the formatting buffer on the stack */
    cr_assert_eq(sb.len, 6 + 2 + 999);
    cr_assert_eq(mg_strbuf_str(&sb)[7 + 998], 'z');
    cr_assert_eq(mg_strbuf_str(&sb)[sb.len - 1], ']');
    cr_assert_eq(mg_strbuf_status(&sb), MG_OK);
    size_t len = 0;
    char *s = mg_strbuf_take(&sb, &len);
    cr_assert_eq(len, 1007);
    cr_assert_eq(strlen(s), 1007);
    free(s);
    cr_assert_str_eq(mg_strbuf_str(&sb), "");
    mg_strbuf_free(&sb);
}

Test(strbuf, json_strings_are_escaped)
{
    mg_strbuf sb;
    mg_strbuf_init(&sb, 0);
    mg_strbuf_json_string(&sb, "a\"b\\c\n\x01");
    cr_assert_str_eq(mg_strbuf_str(&sb), "\"a\\\"b\\\\c\\u000a\\u0001\"");
    mg_strbuf_free(&sb);
}

Test(strbuf, cap_is_a_sticky_error)
{
    mg_strbuf sb;
    mg_strbuf_init(&sb, 16);
    mg_strbuf_puts(&sb, "0123456789");
    cr_assert_eq(mg_strbuf_status(&sb), MG_OK);
    mg_strbuf_puts(&sb, "0123456789");
    cr_assert_eq(mg_strbuf_status(&sb), MG_ELIMIT);
    mg_strbuf_puts(&sb, "x");
    cr_assert_str_eq(mg_strbuf_str(&sb), "0123456789", "nothing appended after the error");
    cr_assert_eq(mg_strbuf_status(&sb), MG_ELIMIT);
    mg_strbuf_free(&sb);
}
