/* A C host embedding a python kernel with safe points: a time-step loop that polls.
 *
 *   pyhost NAME [GO_FILE]
 *
 * Exposes `field` (float64 2x3, read-only, field[i][j] = 10 i + j + step), `step` (int64,
 * read-only), `gain` (float64, writable) and `stop` (int32, writable). Prints
 * "connection_file PATH", then "gain G" each time a cell changes gain, and "stopped STEP"
 * once a cell sets stop. With GO_FILE it first spins in C, without polling, until that file
 * exists (printing "spinning" before), then prints "polling". */
#include <stdio.h>
#include <sys/stat.h>

#include <kernelsdk.h>

static int fail(const char *what) {
    fprintf(stderr, "pyhost: %s: %s\n", what, ksdk_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    double field[2][3];
    int64_t shape[2] = {2, 3};
    int64_t step = 0;
    double gain = 1.0, seen = 1.0;
    int32_t stop = 0;
    int k = ksdk_create(argv[1], "python");
    if (k < 0) return fail("create");
    if (ksdk_set_option(k, "safe_points", "1") < 0) return fail("safe_points");
    if (ksdk_expose_array(k, "field", field, "float64", 2, shape, 0) < 0 ||
        ksdk_expose_scalar(k, "step", &step, "int64", 0) < 0 ||
        ksdk_expose_scalar(k, "gain", &gain, "double", KSDK_WRITABLE) < 0 ||
        ksdk_expose_scalar(k, "stop", &stop, "int32", KSDK_WRITABLE) < 0)
        return fail("expose");
    if (ksdk_start(k) < 0) return fail("start");
    printf("connection_file %s\n", ksdk_connection_file(k));
    fflush(stdout);
    if (argc > 2) {
        struct stat st;
        printf("spinning\n");
        fflush(stdout);
        volatile unsigned long spins = 0;
        while (stat(argv[2], &st) != 0) /* C work, no poll: the kernel thread serves alone */
            for (int i = 0; i < 100000; i++) spins++;
        printf("polling\n");
        fflush(stdout);
    }
    while (!stop) {
        step++;
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++) field[i][j] = 10 * i + j + (double)step;
        if (ksdk_poll(k, 0.01) < 0) return fail("poll");
        if (gain != seen) {
            seen = gain;
            printf("gain %g\n", gain);
            fflush(stdout);
        }
    }
    printf("stopped %lld\n", (long long)step);
    fflush(stdout);
    if (ksdk_stop(k) < 0) return fail("stop");
    return 0;
}
