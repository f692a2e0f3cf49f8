/*
 * The A/B slot state machine: provisioning, a full update, rollback and
 * forgery rejection with nothing written, trial reverts, and a power cut
 * at every durable write of a whole update.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iomt/slot.h"
#include "iomt/suit.h"

#define VENDOR "Example Medical Test Vendor"
#define CLASS  "infusion-pump-test"

struct fixture {
    char root[64];
    char img_v1[128], img_v2[128], img_v3[128], img_bad[128];
    struct iomt_key *key, *other_key;
    uint8_t *env_v1, *env_v2, *env_v3, *env_v3_other_key, *env_wrong_class;
    size_t env_v1_len, env_v2_len, env_v3_good_len, env_v3_len,
        env_wrong_class_len;
    uint8_t digest_v1[IOMT_SHA256_LEN], digest_v2[IOMT_SHA256_LEN],
        digest_v3[IOMT_SHA256_LEN];
    int dirs;
};

static void write_file(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *make_image(size_t n, uint8_t salt)
{
    uint8_t *p = malloc(n);

    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 31u) ^ (i >> 8) ^ salt);
    return p;
}

static void sign_release(const struct iomt_key *key, const char *cls,
                         uint64_t seq, const char *version, const uint8_t *img,
                         size_t n, uint8_t **env, size_t *env_len)
{
    struct iomt_suit_params p;
    struct iomt_err err = {0};

    memset(&p, 0, sizeof(p));
    p.seq = seq;
    p.vendor = VENDOR;
    p.class = cls;
    p.version = version;
    iomt_sha256(img, n, p.image_digest);
    p.image_size = n;
    assert_int_equal(iomt_suit_sign(&p, key, env, env_len, &err), IOMT_OK);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct iomt_err err = {0};
    size_t n1 = 200 * 1024 + 17, n2 = 150 * 1024 + 3;
    size_t n3 = 90 * 1024 + 5;
    uint8_t *v1 = make_image(n1, 1), *v2 = make_image(n2, 2);
    uint8_t *v3 = make_image(n3, 3);

    assert_non_null(f);
    snprintf(f->root, sizeof(f->root), "/tmp/iomt-test-slot-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    snprintf(f->img_v1, sizeof(f->img_v1), "%s/v1.img", f->root);
    snprintf(f->img_v2, sizeof(f->img_v2), "%s/v2.img", f->root);
    snprintf(f->img_v3, sizeof(f->img_v3), "%s/v3.img", f->root);
    snprintf(f->img_bad, sizeof(f->img_bad), "%s/bad.img", f->root);
    write_file(f->img_v3, v3, n3);
    iomt_sha256(v3, n3, f->digest_v3);
    write_file(f->img_v1, v1, n1);
    write_file(f->img_v2, v2, n2);
    iomt_sha256(v1, n1, f->digest_v1);
    iomt_sha256(v2, n2, f->digest_v2);
    v2[n2 / 2] ^= 0x01; /* one flipped bit after signing */
    write_file(f->img_bad, v2, n2);
    v2[n2 / 2] ^= 0x01;

    assert_int_equal(iomt_key_generate(IOMT_ALG_ES256, &f->key, &err), 0);
    assert_int_equal(iomt_key_generate(IOMT_ALG_ES256, &f->other_key, &err), 0);
    sign_release(f->key, CLASS, 1, "1.0.0", v1, n1, &f->env_v1, &f->env_v1_len);
    sign_release(f->key, CLASS, 2, "2.0.0", v2, n2, &f->env_v2, &f->env_v2_len);
    sign_release(f->other_key, CLASS, 3, "3.0.0", v2, n2, &f->env_v3_other_key,
                 &f->env_v3_len);
    sign_release(f->key, "patient-monitor-test", 3, "3.0.0", v2, n2,
                 &f->env_wrong_class, &f->env_wrong_class_len);
    sign_release(f->key, CLASS, 3, "3.0.0", v3, n3, &f->env_v3,
                 &f->env_v3_good_len);
    free(v1);
    free(v2);
    free(v3);
    *state = f;
    return 0;
}

static void remove_tree(const char *dir)
{
    static const char *names[] = {
        "slot_a.img", "slot_a.suit", "slot_b.img", "slot_b.suit", "state.0",
        "state.1",    "v1.img",      "v2.img",     "v3.img",      "bad.img"};
    char path[256];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char dir[128];

    for (int i = 0; i < f->dirs; i++) {
        snprintf(dir, sizeof(dir), "%s/dev%d", f->root, i);
        remove_tree(dir);
    }
    remove_tree(f->root);
    iomt_key_free(f->key);
    iomt_key_free(f->other_key);
    free(f->env_v1);
    free(f->env_v2);
    free(f->env_v3);
    free(f->env_v3_other_key);
    free(f->env_wrong_class);
    free(f);
    return 0;
}

/* A freshly provisioned device directory running v1 from slot A. */
static void new_device(struct fixture *f, char *dir, size_t cap)
{
    struct iomt_err err = {0};
    int rc;

    snprintf(dir, cap, "%s/dev%d", f->root, f->dirs++);
    rc = iomt_slots_create(dir, VENDOR, CLASS, f->img_v1, f->env_v1,
                           f->env_v1_len, f->key, &err);
    if (rc != IOMT_OK)
        fail_msg("create: %s", err.msg);
}

static void file_digest(const char *dir, int slot, uint8_t out[32])
{
    char path[256];
    uint64_t size;
    struct iomt_err err = {0};

    snprintf(path, sizeof(path), "%s/slot_%c.img", dir, slot ? 'b' : 'a');
    assert_int_equal(iomt_sha256_file(path, UINT64_MAX, out, &size, &err),
                     IOMT_OK);
}

/* Digest over every file of a device directory: "nothing written". */
static void dir_digest(const char *dir, uint8_t out[32])
{
    static const char *names[] = {"slot_a.img",  "slot_a.suit", "slot_b.img",
                                  "slot_b.suit", "state.0",     "state.1"};
    struct iomt_sha256 *h = iomt_sha256_new();
    char path[256];

    for (size_t i = 0; i < 6; i++) {
        uint8_t d[32];
        uint64_t size = 0;

        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        memset(d, 0, sizeof(d));
        iomt_sha256_file(path, UINT64_MAX, d, &size, NULL);
        iomt_sha256_update(h, d, sizeof(d));
    }
    iomt_sha256_final(h, out);
    iomt_sha256_free(h);
}

static struct iomt_slots *open_dev(const char *dir)
{
    struct iomt_slots *s = NULL;
    struct iomt_err err = {0};

    if (iomt_slots_open(dir, &s, &err) != IOMT_OK)
        fail_msg("open: %s", err.msg);
    return s;
}

static int boot_dev(struct iomt_slots *s, const struct iomt_key *key)
{
    struct iomt_err err = {0};
    int booted = IOMT_SLOT_NONE;

    if (iomt_slots_boot(s, key, &booted, &err) != IOMT_OK)
        fail_msg("boot: %s", err.msg);
    return booted;
}

/* Stage, trial-boot and confirm a release; returns the first failing rc. */
static int run_update_to(struct fixture *f, const char *dir, const uint8_t *env,
                         size_t env_len, const char *img, uint64_t *max_rb)
{
    struct iomt_slots *s = NULL;
    struct iomt_err err = {0};
    int booted = IOMT_SLOT_NONE;
    int rc = iomt_slots_open(dir, &s, &err);

    if (rc != IOMT_OK)
        return rc;
    rc = iomt_slots_boot(s, f->key, &booted, &err);
    if (rc == IOMT_OK)
        rc = iomt_slots_stage(s, env, env_len, img, f->key, &err);
    if (rc == IOMT_OK)
        rc = iomt_slots_mark_trial(s, &err);
    if (rc == IOMT_OK) {
        iomt_slots_close(s);
        /* The reboot into the new image. */
        rc = iomt_slots_open(dir, &s, &err);
        if (rc != IOMT_OK)
            return rc;
        rc = iomt_slots_boot(s, f->key, &booted, &err);
    }
    if (rc == IOMT_OK)
        rc = iomt_slots_confirm(s, &err);
    if (iomt_slots_state(s)->rollback_seq > *max_rb)
        *max_rb = iomt_slots_state(s)->rollback_seq;
    iomt_slots_close(s);
    return rc;
}

static int run_update(struct fixture *f, const char *dir, uint64_t *max_rb)
{
    return run_update_to(f, dir, f->env_v2, f->env_v2_len, f->img_v2, max_rb);
}

static void test_create_and_boot(void **state)
{
    struct fixture *f = *state;
    struct iomt_err err = {0};
    char dir[128];
    struct iomt_slots *s;
    const struct iomt_slot_state *st;

    new_device(f, dir, sizeof(dir));
    s = open_dev(dir);
    st = iomt_slots_state(s);
    assert_int_equal(st->active, 0);
    assert_int_equal(st->trial, IOMT_SLOT_NONE);
    assert_int_equal(st->rollback_seq, 1);
    assert_true(st->slot[0].valid);
    assert_false(st->slot[1].valid);
    assert_string_equal(st->slot[0].version, "1.0.0");
    assert_int_equal(boot_dev(s, f->key), 0);
    assert_string_equal(iomt_slots_state_name(s), "confirmed");
    iomt_slots_close(s);

    /* Provisioning twice, or with a foreign factory image, is refused. */
    assert_int_equal(iomt_slots_create(dir, VENDOR, CLASS, f->img_v1, f->env_v1,
                                       f->env_v1_len, f->key, &err),
                     IOMT_E_STATE);
    snprintf(dir, sizeof(dir), "%s/dev%d", f->root, f->dirs++);
    assert_int_equal(iomt_slots_create(dir, VENDOR, CLASS, f->img_v1, f->env_v1,
                                       f->env_v1_len, f->other_key, &err),
                     IOMT_E_VERIFY);
    assert_int_equal(iomt_slots_open(dir, &s, &err), IOMT_E_STATE);
}

static void test_full_update(void **state)
{
    struct fixture *f = *state;
    char dir[128];
    uint8_t d[32];
    uint64_t max_rb = 0;
    struct iomt_slots *s;

    new_device(f, dir, sizeof(dir));
    assert_int_equal(run_update(f, dir, &max_rb), IOMT_OK);
    s = open_dev(dir);
    assert_int_equal(iomt_slots_state(s)->active, 1);
    assert_int_equal(iomt_slots_state(s)->rollback_seq, 2);
    assert_string_equal(iomt_slots_state(s)->slot[1].version, "2.0.0");
    assert_int_equal(boot_dev(s, f->key), 1);
    file_digest(dir, 1, d);
    assert_memory_equal(d, f->digest_v2, 32);
    iomt_slots_close(s);
}

/* Each bad release is rejected by the named check with no write at all. */
static void expect_reject(struct fixture *f, const char *dir,
                          const uint8_t *env, size_t env_len, const char *image,
                          int want_rc, const char *want)
{
    struct iomt_slots *s = open_dev(dir);
    struct iomt_err err = {0};
    uint8_t before[32], after[32];

    dir_digest(dir, before);
    iomt_slot_inject_fault(0);
    assert_int_equal(iomt_slots_stage(s, env, env_len, image, f->key, &err),
                     want_rc);
    assert_int_equal(iomt_slot_io_count(), 0);
    if (strstr(err.msg, want) != err.msg)
        fail_msg("want '%s', got '%s'", want, err.msg);
    dir_digest(dir, after);
    assert_memory_equal(before, after, 32);
    iomt_slots_close(s);
}

static void test_rejects_write_nothing(void **state)
{
    struct fixture *f = *state;
    char dir[128];
    uint8_t *env = malloc(f->env_v2_len);
    uint64_t max_rb = 0;

    assert_non_null(env);
    new_device(f, dir, sizeof(dir));
    expect_reject(f, dir, f->env_v3_other_key, f->env_v3_len, f->img_v2,
                  IOMT_E_VERIFY, "signature:");
    expect_reject(f, dir, f->env_wrong_class, f->env_wrong_class_len, f->img_v2,
                  IOMT_E_VERIFY, "class-id:");
    expect_reject(f, dir, f->env_v2, f->env_v2_len, f->img_bad, IOMT_E_VERIFY,
                  "image-digest:");
    expect_reject(f, dir, f->env_v2, f->env_v2_len / 2, f->img_v2, IOMT_E_INPUT,
                  "signature:");
    expect_reject(f, dir, (const uint8_t *)"garbage", 7, f->img_v2,
                  IOMT_E_INPUT, "signature:");
    expect_reject(f, dir, f->env_v1, f->env_v1_len, f->img_v1, IOMT_E_ROLLBACK,
                  "rollback:");

    /* A flipped bit anywhere in the envelope is refused. */
    for (size_t i = 0; i < f->env_v2_len; i += 7) {
        struct iomt_slots *s = open_dev(dir);
        struct iomt_err err = {0};

        memcpy(env, f->env_v2, f->env_v2_len);
        env[i] ^= 0x10;
        iomt_slot_inject_fault(0);
        assert_int_not_equal(
            iomt_slots_stage(s, env, f->env_v2_len, f->img_v2, f->key, &err),
            IOMT_OK);
        assert_int_equal(iomt_slot_io_count(), 0);
        iomt_slots_close(s);
    }
    free(env);

    /* After v2 installs, v1 (authentic, older) is a replay. */
    assert_int_equal(run_update(f, dir, &max_rb), IOMT_OK);
    expect_reject(f, dir, f->env_v1, f->env_v1_len, f->img_v1, IOMT_E_ROLLBACK,
                  "rollback:");
    expect_reject(f, dir, f->env_v2, f->env_v2_len, f->img_v2, IOMT_E_ROLLBACK,
                  "rollback:");
}

static void corrupt_byte(const char *dir, const char *name, off_t at)
{
    char path[256];
    uint8_t b;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x80;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

static void stage_and_mark(struct fixture *f, const char *dir)
{
    struct iomt_slots *s = open_dev(dir);
    struct iomt_err err = {0};

    assert_int_equal(boot_dev(s, f->key), 0);
    if (iomt_slots_stage(s, f->env_v2, f->env_v2_len, f->img_v2, f->key,
                         &err) != IOMT_OK)
        fail_msg("stage: %s", err.msg);
    assert_int_equal(iomt_slots_mark_trial(s, &err), IOMT_OK);
    assert_string_equal(iomt_slots_state_name(s), "pending");
    iomt_slots_close(s);
}

static void test_trial_corrupted_reverts(void **state)
{
    struct fixture *f = *state;
    char dir[128];
    struct iomt_slots *s;

    new_device(f, dir, sizeof(dir));
    stage_and_mark(f, dir);
    /* Flash corruption (or an attacker with disk access) after staging. */
    corrupt_byte(dir, "slot_b.img", 1000);
    s = open_dev(dir);
    assert_int_equal(boot_dev(s, f->key), 0);
    assert_int_equal(iomt_slots_state(s)->trial, IOMT_SLOT_NONE);
    assert_false(iomt_slots_state(s)->slot[1].valid);
    assert_int_equal(iomt_slots_state(s)->rollback_seq, 1);
    assert_int_equal(iomt_slots_confirm(s, NULL), IOMT_E_STATE);
    iomt_slots_close(s);
}

static void copy_over(const char *src, const char *dir, const char *name)
{
    char path[256];
    uint8_t buf[4096];
    size_t n;
    FILE *in = fopen(src, "rb"), *out;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    out = fopen(path, "wb");
    assert_non_null(in);
    assert_non_null(out);
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

static void test_trial_swapped_reverts(void **state)
{
    struct fixture *f = *state;
    char dir[128], env_path[160];
    struct iomt_slots *s;

    new_device(f, dir, sizeof(dir));
    stage_and_mark(f, dir);
    /* Someone with disk access swaps in another authentic release: the
     * slot no longer matches what was verified and recorded at staging. */
    snprintf(env_path, sizeof(env_path), "%s/v3.suit", f->root);
    write_file(env_path, f->env_v3, f->env_v3_good_len);
    copy_over(f->img_v3, dir, "slot_b.img");
    copy_over(env_path, dir, "slot_b.suit");
    unlink(env_path);
    s = open_dev(dir);
    assert_int_equal(boot_dev(s, f->key), 0);
    assert_false(iomt_slots_state(s)->slot[1].valid);
    assert_int_equal(iomt_slots_state(s)->rollback_seq, 1);
    iomt_slots_close(s);
}

static void test_trial_attempts_exhausted(void **state)
{
    struct fixture *f = *state;
    char dir[128];
    struct iomt_slots *s;

    new_device(f, dir, sizeof(dir));
    stage_and_mark(f, dir);
    /* The new image never confirms (it hangs or resets each time). */
    for (int i = 0; i < IOMT_SLOT_MAX_ATTEMPTS; i++) {
        s = open_dev(dir);
        assert_int_equal(boot_dev(s, f->key), 1);
        assert_string_equal(iomt_slots_state_name(s), "trial");
        iomt_slots_close(s);
    }
    s = open_dev(dir);
    assert_int_equal(boot_dev(s, f->key), 0);
    assert_int_equal(iomt_slots_state(s)->rollback_seq, 1);
    assert_false(iomt_slots_state(s)->slot[1].valid);
    iomt_slots_close(s);
}

static void test_torn_record_falls_back(void **state)
{
    struct fixture *f = *state;
    char dir[128];
    struct iomt_slots *s;
    uint64_t gen;

    new_device(f, dir, sizeof(dir));
    stage_and_mark(f, dir);
    s = open_dev(dir);
    gen = iomt_slots_state(s)->generation;
    iomt_slots_close(s);
    /* Damage the newest copy: the previous generation must be used. */
    corrupt_byte(dir, gen % 2 ? "state.1" : "state.0", 40);
    s = open_dev(dir);
    assert_int_equal(iomt_slots_state(s)->generation, gen - 1);
    assert_int_equal(boot_dev(s, f->key), 0);
    iomt_slots_close(s);
}

static void test_active_corrupted_no_rollback(void **state)
{
    struct fixture *f = *state;
    char dir[128];
    uint64_t max_rb = 0;
    struct iomt_slots *s;
    struct iomt_err err = {0};
    int booted;

    new_device(f, dir, sizeof(dir));
    assert_int_equal(run_update(f, dir, &max_rb), IOMT_OK);
    /* Slot A still holds v1, but seq 1 is below the counter: no boot. */
    corrupt_byte(dir, "slot_b.img", 10);
    s = open_dev(dir);
    assert_int_equal(iomt_slots_boot(s, f->key, &booted, &err), IOMT_E_VERIFY);
    assert_int_equal(booted, IOMT_SLOT_NONE);
    assert_int_equal(iomt_slots_state(s)->rollback_seq, 2);
    /* Service staff are told what is wrong with each slot, in order. */
    assert_string_equal(err.msg,
                        "boot: no verified image to boot: slot A: rollback: "
                        "seq 1 below counter 2; slot B: image-digest: image "
                        "digest mismatch");
    iomt_slots_close(s);
}

static void expect_damaged(const char *dir, int slot, int want_rc,
                           const char *want)
{
    struct iomt_slots *s = open_dev(dir);
    struct iomt_err err = {0};

    assert_int_equal(iomt_slots_check_image(s, slot, &err), want_rc);
    if (strcmp(err.msg, want) != 0)
        fail_msg("want '%s', got '%s'", want, err.msg);
    iomt_slots_close(s);
}

/* What status reports: the image on disk against the state record. */
static void test_check_image_damaged(void **state)
{
    struct fixture *f = *state;
    struct iomt_slots *s;
    struct iomt_err err = {0};
    char dir[128], path[256];
    uint8_t *zero = calloc(1, 200 * 1024 + 17);
    int fd;

    assert_non_null(zero);
    new_device(f, dir, sizeof(dir));
    s = open_dev(dir);
    assert_int_equal(iomt_slots_check_image(s, 0, &err), IOMT_OK);
    assert_int_equal(iomt_slots_check_image(s, 2, &err), IOMT_E_INPUT);
    iomt_slots_close(s);
    expect_damaged(dir, 1, IOMT_E_STATE, "holds no image");

    /* Zeroed in place, same size. */
    snprintf(path, sizeof(path), "%s/slot_a.img", dir);
    write_file(path, zero, 200 * 1024 + 17);
    expect_damaged(dir, 0, IOMT_E_VERIFY,
                   "image-digest: image digest mismatch");
    /* Truncated. */
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 4096), 0);
    close(fd);
    expect_damaged(dir, 0, IOMT_E_VERIFY,
                   "image-size: image is 4096 bytes, recorded 204817");
    /* Gone. */
    assert_int_equal(unlink(path), 0);
    expect_damaged(dir, 0, IOMT_E_VERIFY, "image-digest: image missing");
    free(zero);
}

/*
 * Cuts power at the nth durable operation of an update from old to new,
 * for every n. With second set, the device first installs v2, so the slot
 * being overwritten holds a valid older image (v1) when the cut lands.
 */
static void sweep(struct fixture *f, int second)
{
    const uint8_t *env = second ? f->env_v3 : f->env_v2;
    size_t env_len = second ? f->env_v3_good_len : f->env_v2_len;
    const char *img = second ? f->img_v3 : f->img_v2;
    const uint8_t *old_digest = second ? f->digest_v2 : f->digest_v1;
    const uint8_t *new_digest = second ? f->digest_v3 : f->digest_v2;
    uint64_t old_seq = second ? 2 : 1;
    char dir[128];
    uint64_t max_rb = 0;
    unsigned long total;

    new_device(f, dir, sizeof(dir));
    if (second)
        assert_int_equal(run_update(f, dir, &max_rb), IOMT_OK);
    iomt_slot_inject_fault(0);
    assert_int_equal(run_update_to(f, dir, env, env_len, img, &max_rb),
                     IOMT_OK);
    total = iomt_slot_io_count();
    assert_true(total >= 8);

    for (unsigned long n = 1; n <= total + 1; n++) {
        struct iomt_slots *s;
        uint8_t d[32];
        int booted;
        int rc;

        new_device(f, dir, sizeof(dir));
        if (second)
            assert_int_equal(run_update(f, dir, &max_rb), IOMT_OK);
        max_rb = old_seq;
        iomt_slot_inject_fault(n);
        rc = run_update_to(f, dir, env, env_len, img, &max_rb);
        iomt_slot_inject_fault(0);
        if (n <= total)
            assert_int_not_equal(rc, IOMT_OK);

        /* Power comes back: the device must boot a verified image. */
        s = open_dev(dir);
        assert_true(iomt_slots_state(s)->rollback_seq >= max_rb);
        /* And no slot is recorded valid over torn bytes. */
        for (int i = 0; i < 2; i++) {
            const struct iomt_slot_info *si = &iomt_slots_state(s)->slot[i];

            file_digest(dir, i, d);
            if (si->valid && memcmp(d, si->image_digest, 32) != 0)
                fail_msg("cut at op %lu: slot %d recorded valid but torn", n,
                         i);
        }
        booted = boot_dev(s, f->key);
        file_digest(dir, booted, d);
        if (memcmp(d, old_digest, 32) != 0 && memcmp(d, new_digest, 32) != 0)
            fail_msg("cut at op %lu: booted an unverified image", n);
        if (memcmp(d, old_digest, 32) == 0)
            assert_int_equal(iomt_slots_state(s)->rollback_seq, old_seq);
        assert_true(iomt_slots_state(s)->rollback_seq >= max_rb);
        if (booted == iomt_slots_state(s)->trial)
            assert_int_equal(iomt_slots_confirm(s, NULL), IOMT_OK);
        max_rb = iomt_slots_state(s)->rollback_seq;
        iomt_slots_close(s);

        /* And it can still finish the update afterwards. */
        if (max_rb <= old_seq)
            assert_int_equal(run_update_to(f, dir, env, env_len, img, &max_rb),
                             IOMT_OK);
        s = open_dev(dir);
        assert_int_equal(iomt_slots_state(s)->rollback_seq, old_seq + 1);
        booted = boot_dev(s, f->key);
        file_digest(dir, booted, d);
        assert_memory_equal(d, new_digest, 32);
        iomt_slots_close(s);
    }
}

static void test_power_cut_every_write(void **state)
{
    sweep(*state, 0);
}

static void test_power_cut_over_valid_slot(void **state)
{
    sweep(*state, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_and_boot),
        cmocka_unit_test(test_full_update),
        cmocka_unit_test(test_rejects_write_nothing),
        cmocka_unit_test(test_trial_corrupted_reverts),
        cmocka_unit_test(test_trial_swapped_reverts),
        cmocka_unit_test(test_trial_attempts_exhausted),
        cmocka_unit_test(test_torn_record_falls_back),
        cmocka_unit_test(test_active_corrupted_no_rollback),
        cmocka_unit_test(test_check_image_damaged),
        cmocka_unit_test(test_power_cut_every_write),
        cmocka_unit_test(test_power_cut_over_valid_slot),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
