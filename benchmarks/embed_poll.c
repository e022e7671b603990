/* The cost of ksdk_poll with nothing pending, from C (issue 11: at most 1 us, no GIL, no
 * Python), next to a call that does enter Python, for scale.
 *
 *     benchmarks/embed_poll [CALLS]        # builds this file and runs it (default 1000000)
 *
 * Prints one line per measurement: the name, the calls, ns per call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <kernelsdk.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void report(const char *what, long calls, double seconds) {
    printf("%-36s %9ld calls %9.1f ns/call\n", what, calls, seconds / (double)calls * 1e9);
}

int main(int argc, char **argv) {
    long calls = argc > 1 ? atol(argv[1]) : 1000000;
    if (calls < 1) calls = 1;
    double value = 0;
    int k = ksdk_create("bench", "python");
    if (k < 0 || ksdk_set_option(k, "safe_points", "1") < 0 ||
        ksdk_expose_scalar(k, "value", &value, "float64", KSDK_WRITABLE) < 0 || ksdk_start(k) < 0) {
        fprintf(stderr, "embed_poll: %s\n", ksdk_last_error());
        return 1;
    }
    int ran = 0;
    double start = now();
    for (long i = 0; i < calls; i++) ran += ksdk_poll(k, 0.0);
    report("ksdk_poll, nothing pending", calls, now() - start);

    long slow = calls / 100 > 0 ? calls / 100 : 1; /* a Python entry is ~1000x dearer */
    start = now();
    for (long i = 0; i < slow; i++) ran += ksdk_shutdown_requested(k);
    report("ksdk_shutdown_requested (Python)", slow, now() - start);

    if (ran != 0) fprintf(stderr, "embed_poll: %d cells ran meanwhile\n", ran);
    return ksdk_stop(k) < 0;
}
