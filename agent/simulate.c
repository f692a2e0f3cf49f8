/*
 * A fleet of simulated devices, each a full device (own key, certificate,
 * slots and state directory), run in a bounded number of threads.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent.h"

#define FLEET_MAX_BYTES (16 * 1024 * 1024)
#define FLEET_COLUMNS   6

struct fleet_dev {
    char *col[FLEET_COLUMNS]; /* id, vendor, class, token, image, env */
    struct cycle_outcome outcome;
};

struct fleet {
    const struct sim_opts *o;
    const struct iomt_key *anchor;
    struct fleet_dev *dev;
    size_t count;
    size_t next;
    pthread_mutex_t lock;
};

/* Splits the file in place; lines are "a\tb\tc\td\te\tf", # comments. */
static int parse_fleet(char *text, struct fleet *f, unsigned want)
{
    size_t cap = 0;
    char *line = text;
    unsigned lineno = 0;

    while (line != NULL && *line != '\0') {
        char *nl = strchr(line, '\n');
        char *p = line;
        struct fleet_dev *d;

        lineno++;
        if (nl != NULL)
            *nl = '\0';
        if (*line == '#' || *line == '\0' || *line == '\r') {
            line = nl ? nl + 1 : NULL;
            continue;
        }
        if (want != 0 && f->count == want)
            break;
        if (f->count == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            struct fleet_dev *nd = realloc(f->dev, ncap * sizeof(*nd));
            if (nd == NULL)
                return -1;
            f->dev = nd;
            cap = ncap;
        }
        d = &f->dev[f->count];
        memset(d, 0, sizeof(*d));
        for (int i = 0; i < FLEET_COLUMNS; i++) {
            char *tab = strchr(p, '\t');

            if (tab == NULL && i != FLEET_COLUMNS - 1) {
                fprintf(stderr,
                        "iomt-agent: fleet line %u: want %d "
                        "tab-separated columns\n",
                        lineno, FLEET_COLUMNS);
                return -1;
            }
            if (tab != NULL)
                *tab = '\0';
            d->col[i] = p;
            p = tab ? tab + 1 : p + strlen(p);
        }
        d->col[5][strcspn(d->col[5], "\r")] = '\0';
        f->count++;
        line = nl ? nl + 1 : NULL;
    }
    return 0;
}

static void run_device(struct fleet *f, struct fleet_dev *d)
{
    const struct sim_opts *o = f->o;
    struct device_opts dopts;
    struct enrol_opts e;
    struct cycle_outcome step;
    char dir[PATH_MAX];
    int n = snprintf(dir, sizeof(dir), "%s/%s", o->dir, d->col[0]);
    int malformed = 0;

    memset(&d->outcome, 0, sizeof(d->outcome));
    d->outcome.result = CYCLE_ERROR;
    /* IDs become directory names under --dir: ".." must not escape it. */
    if (n < 0 || (size_t)n >= sizeof(dir) || !device_id_ok(d->col[0])) {
        snprintf(d->outcome.reason, sizeof(d->outcome.reason),
                 "device-id: want 1..%d of [A-Za-z0-9._-], not starting "
                 "with '.' or '-'",
                 IOMT_NAME_MAX);
        return;
    }
    memset(&dopts, 0, sizeof(dopts));
    dopts.state_dir = dir;
    dopts.hub_url = o->hub_url;
    dopts.ca_path = o->ca_path;
    dopts.trust_anchor = f->anchor;
    dopts.quiet = o->quiet;
    /* A directory with an identity is never enrolled over; a broken slot
     * state in it is the boot verifier's to report. */
    if (device_missing(dir, &malformed) != NULL) {
        /* Enrolling over a damaged identity would fail on the directory
         * anyway; say what is wrong with it instead. */
        if (malformed) {
            snprintf(d->outcome.reason, sizeof(d->outcome.reason), "state: %s",
                     device_missing(dir, NULL));
            return;
        }
        e.device_id = d->col[0];
        e.vendor = d->col[1];
        e.class_name = d->col[2];
        e.token = d->col[3];
        e.factory_image = d->col[4];
        e.factory_envelope = d->col[5];
        if (device_enrol(&dopts, &e, d->outcome.reason,
                         sizeof(d->outcome.reason)) != 0) {
            agent_log(o->quiet, d->col[0], "event=enrol-failed reason=\"%s\"",
                      d->outcome.reason);
            return;
        }
    }
    /* The token is spent (or useless) now; do not keep it in memory. */
    iomt_wipe(d->col[3], strlen(d->col[3]));

    for (unsigned c = 0; c < o->cycles; c++) {
        device_cycle(&dopts, &step);
        if (c == 0) {
            d->outcome = step;
        } else if (step.result != CYCLE_NO_UPDATE) {
            d->outcome.result = step.result;
            memcpy(d->outcome.reason, step.reason, sizeof(step.reason));
        }
        memcpy(d->outcome.new_version, step.new_version,
               sizeof(step.new_version));
        d->outcome.new_seq = step.new_seq;
        if (step.result == CYCLE_NO_UPDATE || step.result == CYCLE_ERROR)
            break;
    }
}

static void *worker(void *arg)
{
    struct fleet *f = arg;

    for (;;) {
        size_t i;

        pthread_mutex_lock(&f->lock);
        i = f->next++;
        pthread_mutex_unlock(&f->lock);
        if (i >= f->count)
            break;
        run_device(f, &f->dev[i]);
    }
    return NULL;
}

static void tsv_field(FILE *out, const char *s, int last)
{
    for (; *s; s++)
        fputc(*s == '\t' || *s == '\n' ? ' ' : *s, out);
    fputc(last ? '\n' : '\t', out);
}

/* The header line names the columns; one line per device follows. */
static int write_results(const struct fleet *f, FILE *out)
{
    fprintf(out, "device_id\tvendor\tclass\told_version\told_seq\t"
                 "new_version\tnew_seq\tresult\treason\n");
    for (size_t i = 0; i < f->count; i++) {
        const struct fleet_dev *d = &f->dev[i];
        const struct cycle_outcome *r = &d->outcome;

        tsv_field(out, d->col[0], 0);
        tsv_field(out, d->col[1], 0);
        tsv_field(out, d->col[2], 0);
        tsv_field(out, r->old_version, 0);
        fprintf(out, "%llu\t", (unsigned long long)r->old_seq);
        tsv_field(out, r->new_version, 0);
        fprintf(out, "%llu\t", (unsigned long long)r->new_seq);
        tsv_field(out, cycle_result_name(r->result), 0);
        tsv_field(out, r->reason, 1);
    }
    return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}

int simulate_fleet(const struct sim_opts *o)
{
    struct fleet f;
    struct iomt_key *anchor = NULL;
    struct iomt_err err = {0};
    pthread_t *threads = NULL;
    uint8_t *text = NULL;
    unsigned nthreads = 0;
    size_t counts[4] = {0};
    struct stat sb;
    size_t text_len = 0;
    FILE *in, *results = stdout;
    int rc = AGENT_EXIT_INTERNAL;

    memset(&f, 0, sizeof(f));
    f.o = o;
    pthread_mutex_init(&f.lock, NULL);
    if (iomt_key_load(o->anchor_path, &anchor, &err) != IOMT_OK) {
        fprintf(stderr, "iomt-agent: trust anchor: %s\n", err.msg);
        rc = AGENT_EXIT_USAGE;
        goto out_free;
    }
    f.anchor = anchor;
    in = fopen(o->fleet_path, "r");
    if (in == NULL || fstat(fileno(in), &sb) != 0 || sb.st_size < 0 ||
        sb.st_size > FLEET_MAX_BYTES ||
        (text = malloc((size_t)sb.st_size + 1)) == NULL) {
        if (in != NULL)
            fclose(in);
        fprintf(stderr, "iomt-agent: cannot read fleet %s\n", o->fleet_path);
        rc = AGENT_EXIT_USAGE;
        goto out_free;
    }
    text_len = fread(text, 1, (size_t)sb.st_size, in);
    fclose(in);
    text[text_len] = '\0';
    if (parse_fleet((char *)text, &f, o->count) != 0) {
        fprintf(stderr, "iomt-agent: fleet file unusable\n");
        rc = AGENT_EXIT_USAGE;
        goto out_free;
    }
    if (f.count == 0) {
        fprintf(stderr, "iomt-agent: --fleet: no devices in %s\n",
                o->fleet_path);
        rc = AGENT_EXIT_USAGE;
        goto out_free;
    }
    if (o->count != 0 && f.count < o->count) {
        fprintf(stderr, "iomt-agent: %s: the fleet has %zu devices, %u asked\n",
                o->count_option ? o->count_option : "--count", f.count,
                o->count);
        rc = AGENT_EXIT_USAGE;
        goto out_free;
    }
    if (mkdir(o->dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "iomt-agent: --dir: mkdir %s: %s\n", o->dir,
                strerror(errno));
        rc = AGENT_EXIT_USAGE;
        goto out_free;
    }
    /* Opened before any device runs: an unwritable path is bad usage and
     * must not cost the fleet's one-time tokens first. */
    if (o->results_path != NULL &&
        (results = fopen(o->results_path, "w")) == NULL) {
        fprintf(stderr, "iomt-agent: --results: cannot write %s: %s\n",
                o->results_path, strerror(errno));
        rc = AGENT_EXIT_USAGE;
        goto out_free;
    }

    nthreads = o->concurrency < f.count ? o->concurrency : (unsigned)f.count;
    threads = calloc(nthreads ? nthreads : 1, sizeof(*threads));
    if (threads == NULL)
        goto out_free;
    for (unsigned i = 0; i < nthreads; i++)
        if (pthread_create(&threads[i], NULL, worker, &f) != 0) {
            nthreads = i;
            break;
        }
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    if (f.next < f.count)
        worker(&f); /* threads ran out: finish on this one */

    for (size_t i = 0; i < f.count; i++)
        counts[f.dev[i].outcome.result]++;
    if (write_results(&f, results) != 0) {
        fprintf(stderr, "iomt-agent: --results: write failed\n");
        goto out_free;
    }
    fprintf(stderr,
            "iomt-agent: devices=%zu installed=%zu rejected=%zu "
            "no-update=%zu error=%zu\n",
            f.count, counts[CYCLE_INSTALLED], counts[CYCLE_REJECTED],
            counts[CYCLE_NO_UPDATE], counts[CYCLE_ERROR]);
    rc = counts[CYCLE_ERROR] ? AGENT_EXIT_INTERNAL : AGENT_EXIT_OK;
out_free:
    if (results != stdout && results != NULL && fclose(results) != 0 &&
        rc == AGENT_EXIT_OK) {
        fprintf(stderr, "iomt-agent: --results: write failed\n");
        rc = AGENT_EXIT_INTERNAL;
    }
    free(threads);
    free(f.dev);
    if (text != NULL)
        iomt_wipe(text, text_len);
    free(text);
    iomt_key_free(anchor);
    pthread_mutex_destroy(&f.lock);
    return rc;
}
