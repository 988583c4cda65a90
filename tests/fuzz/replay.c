/*
 * A plain driver for the fuzz targets: replays files through LLVMFuzzerTestOneInput without
 * libFuzzer, so the committed corpora run as unit tests in every build (gcc, ASan), in seconds.
 *
 *   fuzz_<target>_replay CORPUS_DIR [MORE_DIR ...]
 *
 * Every regular file of each directory is read whole and passed once, in name order. The first
 * directory must hold at least one file (an empty corpus would make the test pass without
 * testing anything); the others may be missing or empty (regress/<target>/ exists only once a
 * crash was found). A crash, an assertion or a sanitizer report fails the test; the name of the
 * input being replayed is printed first so it can be found. Exit status 0 when all were replayed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Corpus inputs are small (libFuzzer's -max_len is 4096 by default); a larger file is a
 * mistake in the corpus, refused rather than read. */
#define REPLAY_FILE_BYTES_MAX (1024 * 1024)
/* Bounds the files of one directory (the committed corpora hold a few dozen). */
#define REPLAY_FILES_MAX      100000

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int replay_file(const char *path, size_t *count)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *buf = malloc(REPLAY_FILE_BYTES_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        fprintf(stderr, "replay: out of memory for %s\n", path);
        return -1;
    }
    size_t n = fread(buf, 1, REPLAY_FILE_BYTES_MAX + 1, f);
    int err = ferror(f);
    fclose(f);
    if (err || n > REPLAY_FILE_BYTES_MAX) {
        fprintf(stderr, "replay: %s: %s\n", path,
                err ? "read error" : "larger than REPLAY_FILE_BYTES_MAX (1 MiB)");
        free(buf);
        return -1;
    }
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
    /* An exact-size copy, so ASan sees a read past the input as an overflow. */
    uint8_t *exact = malloc(n > 0 ? n : 1);
    if (exact == NULL) {
        free(buf);
        fprintf(stderr, "replay: out of memory for %s\n", path);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    (*count)++;
    return 0;
}

static int replay_dir(const char *dir, bool required, size_t *count)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (!required && errno == ENOENT)
            return 0;
        fprintf(stderr, "replay: cannot open directory %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == REPLAY_FILES_MAX) {
            fprintf(stderr, "replay: %s has more than %d files\n", dir, REPLAY_FILES_MAX);
            rc = -1;
            break;
        }
        if (n == cap) {
            cap = cap > 0 ? cap * 2 : 64;
            char **grown = realloc(names, cap * sizeof(*names));
            if (grown == NULL) {
                rc = -1;
                break;
            }
            names = grown;
        }
        names[n] = strdup(e->d_name);
        if (names[n] == NULL) {
            rc = -1;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == 0)
        qsort(names, n, sizeof(*names), cmp_names);
    size_t done = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        rc = replay_file(path, &done);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (rc == 0 && required && done == 0) {
        fprintf(stderr, "replay: %s holds no input: an empty corpus tests nothing\n", dir);
        rc = -1;
    }
    *count += done;
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR [MORE_DIR ...]\n", argv[0]);
        return 2;
    }
    size_t count = 0;
    for (int i = 1; i < argc; i++) {
        if (replay_dir(argv[i], i == 1, &count) != 0)
            return 1;
    }
    printf("replay: %zu inputs replayed without a crash\n", count);
    return 0;
}
