/* replay.c - runs a fuzz target's LLVMFuzzerTestOneInput on every file of the
 * corpus directories (or files) given on the command line, without libFuzzer, as
 * sqlite's fuzzcheck does: ctest replays the corpora in the release and the
 * sanitizer builds.  Each input is read into a block of exactly its size, so that
 * AddressSanitizer sees a read past its end.  A target aborts on a failed check;
 * the name of the input being run is printed first (stdout, flushed).  Exit
 * status 0 when every input passed, 2 on a usage or I/O error. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_file(const char *path, int verbose)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    size_t cap = 4096, len = 0, n;
    uint8_t *buf = malloc(cap);
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            uint8_t *q = realloc(buf, cap *= 2);
            if (!q) free(buf);
            buf = q;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        fprintf(stderr, "replay: cannot read %s\n", path);
        return -1;
    }
    uint8_t *exact = malloc(len ? len : 1); /* no slack after the input */
    if (!exact) {
        free(buf);
        return -1;
    }
    if (len) memcpy(exact, buf, len);
    free(buf);
    if (verbose) {
        printf("replay: %s (%zu bytes)\n", path, len);
        fflush(stdout);
    }
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

int main(int argc, char **argv)
{
    size_t total = 0;
    int verbose = getenv("REPLAY_QUIET") == NULL;
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    for (int a = 1; a < argc; a++) {
        struct stat st;
        if (stat(argv[a], &st)) {
            fprintf(stderr, "replay: no such file or directory: %s\n", argv[a]);
            return 2;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[a], verbose)) return 2;
            total++;
            continue;
        }
        DIR *d = opendir(argv[a]);
        if (!d) {
            fprintf(stderr, "replay: cannot open %s\n", argv[a]);
            return 2;
        }
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue; /* ., .., hidden files */
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                char **q = realloc(names, cap * sizeof *q);
                if (!q) return 2;
                names = q;
            }
            size_t len = strlen(argv[a]) + strlen(e->d_name) + 2;
            names[n] = malloc(len);
            if (!names[n]) return 2;
            snprintf(names[n], len, "%s/%s", argv[a], e->d_name);
            n++;
        }
        closedir(d);
        qsort(names, n, sizeof *names, by_name); /* the same order everywhere */
        for (size_t i = 0; i < n; i++) {
            if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
                if (run_file(names[i], verbose)) return 2;
                total++;
            }
            free(names[i]);
        }
        free(names);
        if (n == 0) {
            fprintf(stderr, "replay: %s is empty\n", argv[a]);
            return 2;
        }
    }
    printf("replay: %zu inputs passed\n", total);
    return 0;
}
