/*
 * lib/file.c: bounded reads and all-or-nothing writes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iomt/file.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/iomt-file-XXXXXX");
    return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int entries(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n;
}

static void test_read_caps_size(void **state)
{
    struct iomt_err err = {0};
    char path[128];
    uint8_t *buf = NULL;
    size_t len = 0;

    (void)state;
    snprintf(path, sizeof(path), "%s/f", dir);
    assert_int_equal(iomt_file_write_atomic(path, "hello", 5, 0644, &err),
                     IOMT_OK);
    assert_int_equal(iomt_file_read(path, 5, &buf, &len, &err), IOMT_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 6); /* NUL after the data */
    free(buf);
    assert_int_equal(iomt_file_read(path, 4, &buf, &len, &err), IOMT_E_INPUT);
    assert_null(buf);
    assert_non_null(strstr(err.msg, "larger than 4 bytes"));
    snprintf(path, sizeof(path), "%s/none", dir);
    assert_int_equal(iomt_file_read(path, 4, &buf, &len, &err), IOMT_E_IO);
}

static void test_write_sets_mode_whatever_umask(void **state)
{
    struct iomt_err err = {0};
    struct stat st;
    char path[128];
    mode_t old = umask(0);

    (void)state;
    snprintf(path, sizeof(path), "%s/key.pem", dir);
    assert_int_equal(iomt_file_write_atomic(path, "k", 1, 0600, &err), IOMT_OK);
    umask(old);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_failed_write_keeps_old_file(void **state)
{
    struct iomt_err err = {0};
    char path[128], sub[160];
    uint8_t *buf = NULL;
    size_t len = 0;

    (void)state;
    snprintf(path, sizeof(path), "%s/record", dir);
    assert_int_equal(iomt_file_write_atomic(path, "old", 3, 0644, &err),
                     IOMT_OK);
    /* A directory in the way makes the rename fail after the write. */
    snprintf(sub, sizeof(sub), "%s/d", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(sub, sizeof(sub), "%s/d/x", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(sub, sizeof(sub), "%s/d", dir);
    assert_int_equal(iomt_file_write_atomic(sub, "new", 3, 0644, &err),
                     IOMT_E_IO);
    assert_int_equal(entries(), 2); /* record and d: no temp file left */
    assert_int_equal(iomt_file_read(path, 16, &buf, &len, &err), IOMT_OK);
    assert_memory_equal(buf, "old", 3);
    free(buf);
    assert_int_equal(iomt_file_write_atomic("", "x", 1, 0644, &err),
                     IOMT_E_INPUT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_caps_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_sets_mode_whatever_umask,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_keeps_old_file, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
