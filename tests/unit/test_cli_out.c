/*
 * Unit tests of the CLI's record printer (tools/spool_out.c): JSON strings are always valid
 * (quotes, backslashes and control bytes escaped, well-formed UTF-8 kept, other bytes as
 * \u00XX), logfmt values are bare only when they are plain tokens.
 */
#include <stdio.h>

#include "check.h"
#include "spool_out.h"

/* Print one record with a body field and return what was printed (static buffer). */
static const char *render(bool json, const void *body, size_t len)
{
    static char text[512];
    FILE *f = fmemopen(text, sizeof text, "w");
    REQUIRE(f != NULL);
    struct out o = {.f = f, .json = json};
    out_begin(&o);
    out_u64(&o, "id", 18446744073709551615u);
    out_bool(&o, "ok", true);
    out_bytes(&o, "body", body, len);
    out_end(&o);
    fclose(f);
    return text;
}

static void test_json(void)
{
    CHECK(strcmp(render(true, "hi", 2),
                 "{\"id\":18446744073709551615,\"ok\":true,\"body\":\"hi\"}\n") == 0);
    CHECK(strcmp(render(true, "a\"b\\c\nd\te\x01", 10),
                 "{\"id\":18446744073709551615,\"ok\":true,\"body\":\"a\\\"b\\\\c\\nd\\te\\u0001\"}"
                 "\n") == 0);
    /* é (c3 a9) and € (e2 82 ac) pass through; a lone c3, ff and an overlong c0 80 do not. */
    const char *r = render(true, "\xc3\xa9\xe2\x82\xac\xc3", 6);
    CHECK(strstr(r, "\"body\":\"\xc3\xa9\xe2\x82\xac\\u00c3\"") != NULL);
    r = render(true, "\xff\xc0\x80", 3);
    CHECK(strstr(r, "\"body\":\"\\u00ff\\u00c0\\u0080\"") != NULL);
    r = render(true, "\xed\xa0\x80", 3); /* a UTF-16 surrogate encoded in UTF-8 */
    CHECK(strstr(r, "\\u00ed\\u00a0\\u0080") != NULL);
    r = render(true, "", 0);
    CHECK(strstr(r, "\"body\":\"\"}") != NULL);
}

static void test_logfmt(void)
{
    CHECK(strcmp(render(false, "hello", 5), "id=18446744073709551615 ok=true body=hello\n") == 0);
    CHECK(strcmp(render(false, "two words", 9),
                 "id=18446744073709551615 ok=true body=\"two words\"\n") == 0);
    CHECK(strcmp(render(false, "", 0), "id=18446744073709551615 ok=true body=\"\"\n") == 0);
    CHECK(strcmp(render(false, "a=b", 3), "id=18446744073709551615 ok=true body=\"a=b\"\n") == 0);
}

int main(void)
{
    RUN_TEST(test_json);
    RUN_TEST(test_logfmt);
    return check_exit();
}
