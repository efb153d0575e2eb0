/* main.c - lossd: the server, or lossd eval. */
#include "srv.h"

#include <jansson.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    /* jansson's hash seed before any thread exists (its threadsafety notes). */
    json_object_seed(0);
    /* Request data of 64 KiB and more comes from mem.c; the rest (and the
     * core's scratch) from malloc.  glibc would mmap fresh pages for each block
     * above 128 KiB, raising that threshold only as such blocks are freed: the
     * first requests of a size paid a page fault per 4 KiB (a 100k-element
     * request took 4 ms to parse instead of 0.2).  A fixed threshold and a
     * freed-memory margin keep such blocks in the heap. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 16 << 20);
    if (argc > 1 && !strcmp(argv[1], "eval")) return srv_eval_main(argc - 1, argv + 1);
    srv_config cfg;
    int rc = srv_config_parse(&cfg, argc, argv);
    if (rc) {
        srv_config_free(&cfg);
        return rc > 0 ? 0 : 2;
    }
    srv_log_init(cfg.log_json);
    /* The pool size is read once, at the first uv_queue_work: set it first.
     * --threads for the work of large requests, and one thread per I/O loop for
     * its small requests (server.c). */
    char threads[24];
    snprintf(threads, sizeof threads, "%lu", cfg.threads + cfg.io_threads);
    setenv("UV_THREADPOOL_SIZE", threads, 1);
    signal(SIGPIPE, SIG_IGN); /* MHD is told the application handles SIGPIPE */
    rc = srv_server_run(&cfg);
    srv_config_free(&cfg);
    return rc;
}
