/*
 * Unit tests for the CBOR reader and writer against RFC 8949 Appendix A
 * (encoding examples) and ill-formed inputs in the spirit of Appendix F.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "iomt/cbor.h"
#include "iomt/crypto.h"

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    long n = iomt_unhex(hex, strlen(hex), out, cap);

    assert_true(n >= 0);
    return (size_t)n;
}

static void expect_bytes(const struct iomt_cbor_writer *w, const char *hex)
{
    uint8_t want[128];
    size_t n = unhex(hex, want, sizeof(want)), len = 0;

    assert_int_equal(iomt_cbor_writer_done(w, &len, NULL), IOMT_OK);
    assert_int_equal(len, n);
    assert_memory_equal(w->buf, want, n);
}

struct int_vector {
    int64_t value;
    const char *hex;
};

/* RFC 8949 Appendix A, integers. */
static const struct int_vector int_vectors[] = {
    {0, "00"},
    {1, "01"},
    {10, "0a"},
    {23, "17"},
    {24, "1818"},
    {25, "1819"},
    {100, "1864"},
    {1000, "1903e8"},
    {1000000, "1a000f4240"},
    {1000000000000, "1b000000e8d4a51000"},
    {-1, "20"},
    {-10, "29"},
    {-100, "3863"},
    {-1000, "3903e7"},
};

static void test_write_integers(void **state)
{
    uint8_t buf[16];
    struct iomt_cbor_writer w;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(int_vectors) / sizeof(int_vectors[0]); i++) {
        iomt_cbor_writer_init(&w, buf, sizeof(buf));
        iomt_cbor_put_int(&w, int_vectors[i].value);
        expect_bytes(&w, int_vectors[i].hex);
    }
    iomt_cbor_writer_init(&w, buf, sizeof(buf));
    iomt_cbor_put_uint(&w, UINT64_MAX);
    expect_bytes(&w, "1bffffffffffffffff");
}

static void test_read_integers(void **state)
{
    uint8_t buf[16];
    struct iomt_cbor_reader r;
    uint64_t u;
    int64_t v;
    size_t i, n;

    (void)state;
    for (i = 0; i < sizeof(int_vectors) / sizeof(int_vectors[0]); i++) {
        n = unhex(int_vectors[i].hex, buf, sizeof(buf));
        iomt_cbor_reader_init(&r, buf, n, NULL);
        assert_int_equal(iomt_cbor_get_int(&r, &v, "int"), IOMT_OK);
        assert_true(v == int_vectors[i].value);
        assert_true(iomt_cbor_at_end(&r));
    }
    n = unhex("1bffffffffffffffff", buf, sizeof(buf));
    iomt_cbor_reader_init(&r, buf, n, NULL);
    assert_int_equal(iomt_cbor_get_uint(&r, &u, "uint"), IOMT_OK);
    assert_true(u == UINT64_MAX);
    /* 18446744073709551615 does not fit an int64_t; -2^64 neither. */
    iomt_cbor_reader_init(&r, buf, n, NULL);
    assert_int_equal(iomt_cbor_get_int(&r, &v, "int"), IOMT_E_INPUT);
    n = unhex("3bffffffffffffffff", buf, sizeof(buf));
    iomt_cbor_reader_init(&r, buf, n, NULL);
    assert_int_equal(iomt_cbor_get_int(&r, &v, "int"), IOMT_E_INPUT);
}

static void test_strings(void **state)
{
    uint8_t buf[32], content[4] = {1, 2, 3, 4};
    struct iomt_cbor_writer w;
    struct iomt_cbor_reader r;
    const uint8_t *p;
    const char *s;
    size_t n, len;

    (void)state;
    iomt_cbor_writer_init(&w, buf, sizeof(buf));
    iomt_cbor_put_bstr(&w, NULL, 0);
    expect_bytes(&w, "40");
    iomt_cbor_writer_init(&w, buf, sizeof(buf));
    iomt_cbor_put_bstr(&w, content, sizeof(content));
    expect_bytes(&w, "4401020304");
    iomt_cbor_writer_init(&w, buf, sizeof(buf));
    iomt_cbor_put_tstr(&w, "IETF", 4);
    expect_bytes(&w, "6449455446");
    iomt_cbor_writer_init(&w, buf, sizeof(buf));
    iomt_cbor_put_tstr(&w, "\"\\", 2);
    expect_bytes(&w, "62225c");
    iomt_cbor_writer_init(&w, buf, sizeof(buf));
    iomt_cbor_put_tstr(&w, "\xc3\xbc", 2);
    expect_bytes(&w, "62c3bc");

    n = unhex("4401020304", buf, sizeof(buf));
    iomt_cbor_reader_init(&r, buf, n, NULL);
    assert_int_equal(iomt_cbor_get_bstr(&r, &p, &len, "b"), IOMT_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(p, content, 4);
    n = unhex("6449455446", buf, sizeof(buf));
    iomt_cbor_reader_init(&r, buf, n, NULL);
    assert_int_equal(iomt_cbor_get_tstr(&r, &s, &len, "t"), IOMT_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(s, "IETF", 4);
    /* Wrong type names the field. */
    struct iomt_err err = {0};
    iomt_cbor_reader_init(&r, buf, n, &err);
    assert_int_equal(iomt_cbor_get_bstr(&r, &p, &len, "image-digest"),
                     IOMT_E_INPUT);
    assert_non_null(strstr(err.msg, "image-digest"));
}

static void test_containers(void **state)
{
    uint8_t buf[64];
    struct iomt_cbor_writer w;
    struct iomt_cbor_reader r;
    size_t count, n, i;
    uint64_t v;

    (void)state;
    iomt_cbor_writer_init(&w, buf, sizeof(buf));
    iomt_cbor_put_array(&w, 3);
    iomt_cbor_put_uint(&w, 1);
    iomt_cbor_put_array(&w, 2);
    iomt_cbor_put_uint(&w, 2);
    iomt_cbor_put_uint(&w, 3);
    iomt_cbor_put_array(&w, 2);
    iomt_cbor_put_uint(&w, 4);
    iomt_cbor_put_uint(&w, 5);
    expect_bytes(&w, "8301820203820405");

    iomt_cbor_writer_init(&w, buf, sizeof(buf));
    iomt_cbor_put_array(&w, 25);
    for (i = 1; i <= 25; i++)
        iomt_cbor_put_uint(&w, i);
    expect_bytes(&w,
                 "98190102030405060708090a0b0c0d0e0f101112131415161718181819");

    iomt_cbor_writer_init(&w, buf, sizeof(buf));
    iomt_cbor_put_map(&w, 2);
    iomt_cbor_put_tstr(&w, "a", 1);
    iomt_cbor_put_uint(&w, 1);
    iomt_cbor_put_tstr(&w, "b", 1);
    iomt_cbor_put_array(&w, 2);
    iomt_cbor_put_uint(&w, 2);
    iomt_cbor_put_uint(&w, 3);
    expect_bytes(&w, "a26161016162820203");

    iomt_cbor_writer_init(&w, buf, sizeof(buf));
    iomt_cbor_put_tag(&w, 1);
    iomt_cbor_put_uint(&w, 1363896240);
    iomt_cbor_put_simple(&w, IOMT_CBOR_FALSE);
    iomt_cbor_put_simple(&w, IOMT_CBOR_TRUE);
    iomt_cbor_put_simple(&w, IOMT_CBOR_NULL);
    iomt_cbor_put_simple(&w, 16);
    iomt_cbor_put_simple(&w, 255);
    expect_bytes(&w, "c11a514b67b0f4f5f6f0f8ff");

    n = unhex("a201020304", buf, sizeof(buf));
    iomt_cbor_reader_init(&r, buf, n, NULL);
    assert_int_equal(iomt_cbor_get_map(&r, &count, "m"), IOMT_OK);
    assert_int_equal(count, 2);
    for (i = 1; i <= 4; i++) {
        assert_int_equal(iomt_cbor_get_uint(&r, &v, "v"), IOMT_OK);
        assert_int_equal(v, i);
    }
    assert_true(iomt_cbor_at_end(&r));
}

/* Every Appendix A example is well-formed: skip must consume it exactly. */
static const char *const appendix_a[] = {
    "00",
    "01",
    "0a",
    "17",
    "1818",
    "1819",
    "1864",
    "1903e8",
    "1a000f4240",
    "1b000000e8d4a51000",
    "1bffffffffffffffff",
    "c249010000000000000000",
    "3bffffffffffffffff",
    "c349010000000000000000",
    "20",
    "29",
    "3863",
    "3903e7",
    "f90000",
    "f98000",
    "f93c00",
    "fb3ff199999999999a",
    "f93e00",
    "f97bff",
    "fa47c35000",
    "fa7f7fffff",
    "fb7e37e43c8800759c",
    "f90001",
    "f90400",
    "f9c400",
    "fbc010666666666666",
    "f97c00",
    "f97e00",
    "f9fc00",
    "fa7f800000",
    "fa7fc00000",
    "faff800000",
    "fb7ff0000000000000",
    "fb7ff8000000000000",
    "fbfff0000000000000",
    "f4",
    "f5",
    "f6",
    "f7",
    "f0",
    "f8ff",
    "c074323031332d30332d32315432303a30343a30305a",
    "c11a514b67b0",
    "c1fb41d452d9ec200000",
    "d74401020304",
    "d818456449455446",
    "d82076687474703a2f2f7777772e6578616d706c652e636f6d",
    "40",
    "4401020304",
    "60",
    "6161",
    "6449455446",
    "62225c",
    "62c3bc",
    "63e6b0b4",
    "64f0908591",
    "80",
    "83010203",
    "8301820203820405",
    "98190102030405060708090a0b0c0d0e0f101112131415161718181819",
    "a0",
    "a201020304",
    "a26161016162820203",
    "826161a161626163",
    "a56161614161626142616361436164614461656145",
    "5f42010243030405ff",
    "7f657374726561646d696e67ff",
    "9fff",
    "9f018202039f0405ffff",
    "9f01820203820405ff",
    "83018202039f0405ff",
    "83019f0203ff820405",
    "9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff",
    "bf61610161629f0203ffff",
    "826161bf61626163ff",
    "bf6346756ef563416d7421ff",
};

static void test_skip_appendix_a(void **state)
{
    uint8_t buf[128];
    struct iomt_cbor_reader r;
    struct iomt_err err = {0};
    size_t i, n;

    (void)state;
    for (i = 0; i < sizeof(appendix_a) / sizeof(appendix_a[0]); i++) {
        n = unhex(appendix_a[i], buf, sizeof(buf));
        iomt_cbor_reader_init(&r, buf, n, &err);
        if (iomt_cbor_skip(&r, "vector", NULL, NULL) != IOMT_OK)
            fail_msg("vector %s: %s", appendix_a[i], err.msg);
        assert_true(iomt_cbor_at_end(&r));
    }
}

/* Ill-formed input: truncated heads, lengths past the end, reserved
 * additional information, stray breaks, nesting and count bombs. */
static const char *const ill_formed[] = {
    "",
    "18",
    "19 01",
    "1a 0102 03",
    "1b 01020304050607",
    "38",
    "58",
    "58 05 0102",
    "44 0102",
    "62 c3",
    "1c",
    "1d",
    "1e",
    "3f",
    "ff",
    "f8 00",
    "f8 1f",
    "5f 41 00",
    "5f 61 00 ff",
    "7f 41 00 ff",
    "9f 01",
    "bf 01",
    "bf 01 ff",
    "81",
    "82 01",
    "a1 01",
    "c1",
    "9b ffffffffffffffff 00",
    "bb ffffffffffffffff 00 00",
    "8181818181818181818181818181818181818100",
};

static void test_ill_formed(void **state)
{
    uint8_t buf[64];
    struct iomt_cbor_reader r;
    struct iomt_err err = {0};
    size_t i, n;

    (void)state;
    for (i = 0; i < sizeof(ill_formed) / sizeof(ill_formed[0]); i++) {
        n = unhex(ill_formed[i], buf, sizeof(buf));
        iomt_cbor_reader_init(&r, buf, n, &err);
        err.msg[0] = '\0';
        if (iomt_cbor_skip(&r, "vector", NULL, NULL) != IOMT_E_INPUT)
            fail_msg("ill-formed %s was accepted", ill_formed[i]);
        assert_non_null(strstr(err.msg, "vector"));
    }
}

static void test_container_counts_bounded(void **state)
{
    uint8_t buf[16];
    struct iomt_cbor_reader r;
    size_t count, n;

    (void)state;
    /* An array claiming 2^32 items in a 6-byte buffer is refused early. */
    n = unhex("9a ffffffff 00", buf, sizeof(buf));
    iomt_cbor_reader_init(&r, buf, n, NULL);
    assert_int_equal(iomt_cbor_get_array(&r, &count, "a"), IOMT_E_INPUT);
    n = unhex("a2 01 02", buf, sizeof(buf));
    iomt_cbor_reader_init(&r, buf, n, NULL);
    assert_int_equal(iomt_cbor_get_map(&r, &count, "m"), IOMT_E_INPUT);
    n = unhex("9f ff", buf, sizeof(buf));
    iomt_cbor_reader_init(&r, buf, n, NULL);
    assert_int_equal(iomt_cbor_get_array(&r, &count, "a"), IOMT_E_INPUT);
}

static void test_writer_overflow(void **state)
{
    uint8_t buf[4];
    struct iomt_cbor_writer w;
    struct iomt_err err = {0};
    size_t len = 99;

    (void)state;
    iomt_cbor_writer_init(&w, buf, sizeof(buf));
    iomt_cbor_put_uint(&w, 1000000);
    assert_int_equal(iomt_cbor_writer_done(&w, &len, &err), IOMT_E_INPUT);
    assert_int_equal(len, 99);
    /* Once overflowed, later small writes do not resume. */
    iomt_cbor_put_uint(&w, 1);
    assert_int_equal(iomt_cbor_writer_done(&w, &len, &err), IOMT_E_INPUT);
}

static void test_skip_span(void **state)
{
    uint8_t buf[32];
    struct iomt_cbor_reader r;
    const uint8_t *span;
    size_t n, span_len;

    (void)state;
    n = unhex("8301820203820405 07", buf, sizeof(buf));
    iomt_cbor_reader_init(&r, buf, n, NULL);
    assert_int_equal(iomt_cbor_skip(&r, "x", &span, &span_len), IOMT_OK);
    assert_ptr_equal(span, buf);
    assert_int_equal(span_len, 8);
    assert_int_equal(iomt_cbor_peek(&r), IOMT_CBOR_UINT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_integers),
        cmocka_unit_test(test_read_integers),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_containers),
        cmocka_unit_test(test_skip_appendix_a),
        cmocka_unit_test(test_ill_formed),
        cmocka_unit_test(test_container_counts_bounded),
        cmocka_unit_test(test_writer_overflow),
        cmocka_unit_test(test_skip_span),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
