/* heat: 2-D heat diffusion on N MPI ranks, with a Jupyter kernel inside.
 *
 * The grid (NX columns, NY rows, zero temperature held on its border) is cut into strips of
 * rows, one per rank; each step exchanges one halo row with each neighbour (MPI_Sendrecv),
 * takes an explicit diffusion step and adds a Gaussian heat source at the centre of the plate,
 * scaled by `source`. Then every rank calls ksdk_poll: the kernel's safe point. In MPI mode the
 * poll is collective: the cells a notebook sent since the last one run now, on every rank, at
 * this same step, so a cell may use MPI collectives (a gather of T to rank 0) safely.
 *
 * What the cells see (kernelsdk's Python kind, sharing this program's memory):
 *   T       this rank's strip, float64 [rows, NX]     (writable)
 *   step    steps done so far, int64                  (read only)
 *   source  strength of the heat source, float64      (writable: steers the run)
 *   nsteps  the step at which the run ends, int64     (writable; rank 0's value counts)
 * and from kernelsdk: comm (an mpi4py communicator of every rank), rank, size.
 *
 *   heat [--nx N] [--ny N] [--steps N] [--sleep-ms MS] [--name NAME] [--no-kernel] [--report K]
 *
 * At the end (and every K steps with --report K) rank 0 prints the mean time of a step
 * (exchange + update + poll, without the sleep) and of the poll alone, the slowest rank's, for
 * benchmarks/insitu.py.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "kernelsdk.h"

typedef struct {
    int nx, ny;
    int64_t steps, report;
    double sleep_ms;
    const char *name;
    int kernel;
} Options;

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--nx N] [--ny N] [--steps N] [--sleep-ms MS] [--name NAME] [--no-kernel] "
            "[--report K]\n",
            argv0);
}

/* Parse the command line; 0 on success. Every rank parses the same arguments. */
static int parse(int argc, char **argv, Options *o) {
    o->nx = 128;
    o->ny = 128;
    o->steps = 1000000;
    o->sleep_ms = 10.0;
    o->name = "heat";
    o->kernel = 1;
    o->report = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        errno = 0;
        if (strcmp(a, "--no-kernel") == 0) {
            o->kernel = 0;
            continue;
        }
        if (v == NULL) {
            usage(argv[0]);
            return -1;
        }
        i++;
        if (strcmp(a, "--nx") == 0) {
            o->nx = (int)strtol(v, &end, 10);
        } else if (strcmp(a, "--ny") == 0) {
            o->ny = (int)strtol(v, &end, 10);
        } else if (strcmp(a, "--steps") == 0) {
            o->steps = strtoll(v, &end, 10);
        } else if (strcmp(a, "--report") == 0) {
            o->report = strtoll(v, &end, 10);
        } else if (strcmp(a, "--sleep-ms") == 0) {
            o->sleep_ms = strtod(v, &end);
        } else if (strcmp(a, "--name") == 0) {
            o->name = v;
            continue;
        } else {
            usage(argv[0]);
            return -1;
        }
        if (errno != 0 || end == v || *end != '\0') {
            fprintf(stderr, "heat: bad value for %s: '%s'\n", a, v);
            return -1;
        }
    }
    if (o->nx < 3 || o->ny < 3 || o->steps < 0 || o->report < 0 || o->sleep_ms < 0) {
        fprintf(stderr, "heat: need nx, ny >= 3, steps, report, sleep-ms >= 0\n");
        return -1;
    }
    return 0;
}

static void sleep_ms(double ms) {
    if (ms <= 0) {
        return;
    }
    struct timespec ts = {(time_t)(ms / 1000.0), (long)(fmod(ms, 1000.0) * 1e6)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A failed kernelsdk call: say why, and end the whole job (the other ranks would wait for
 * this one in the next collective forever). */
static void fail(const char *what, int rank) {
    fprintf(stderr, "heat: rank %d: %s failed: %s\n", rank, what, ksdk_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* Rank 0 prints the mean step and poll times of the last n steps, the slowest rank's. */
static void report(const char *what, int64_t n, double t_step, double t_poll, int rank) {
    double local[2] = {t_step, t_poll}, slowest[2] = {0, 0};
    MPI_Reduce(local, slowest, 2, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        double d = n > 0 ? (double)n : 1.0;
        printf("heat: %s %lld steps; step %.2f us, poll %.3f us (mean, slowest rank)\n", what,
               (long long)n, 1e6 * slowest[0] / d, 1e6 * slowest[1] / d);
        fflush(stdout);
    }
}

int main(int argc, char **argv) {
    int provided = 0;
    /* The kernel's thread makes MPI calls (rank 0 relays cells and output) while this thread
     * computes: MPI must allow calls from several threads at once. */
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    Options o;
    if (parse(argc, argv, &o) != 0) {
        MPI_Finalize();
        return 2;
    }
    if (o.kernel && provided < MPI_THREAD_MULTIPLE) {
        if (rank == 0) {
            fprintf(stderr, "heat: this MPI library does not provide MPI_THREAD_MULTIPLE, which "
                            "the kernel needs (run with --no-kernel, or use MPICH or Open MPI "
                            "built with thread support)\n");
        }
        MPI_Finalize();
        return 2;
    }
    if (o.ny < size) {
        if (rank == 0) {
            fprintf(stderr, "heat: %d rows cannot be shared by %d ranks\n", o.ny, size);
        }
        MPI_Finalize();
        return 2;
    }

    /* This rank's strip: rows [first, first + rows) of the grid, with a halo row above and
     * below (rows 0 and rows + 1 of u). */
    const int nx = o.nx;
    const int rows = o.ny / size + (rank < o.ny % size ? 1 : 0);
    const int first = rank * (o.ny / size) + (rank < o.ny % size ? rank : o.ny % size);
    const int up = rank > 0 ? rank - 1 : MPI_PROC_NULL;
    const int down = rank < size - 1 ? rank + 1 : MPI_PROC_NULL;
    double *u = calloc((size_t)(rows + 2) * (size_t)nx, sizeof(double));
    double *next = calloc((size_t)(rows + 2) * (size_t)nx, sizeof(double));
    double *heater = calloc((size_t)rows * (size_t)nx, sizeof(double));
    if (u == NULL || next == NULL || heater == NULL) {
        fprintf(stderr, "heat: rank %d: out of memory\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    const double width = 0.08 * (o.nx < o.ny ? o.nx : o.ny);
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < nx; j++) {
            double dy = (first + i) - 0.5 * (o.ny - 1), dx = j - 0.5 * (nx - 1);
            heater[(size_t)i * nx + j] = exp(-(dx * dx + dy * dy) / (2 * width * width));
        }
    }
    const double alpha = 0.2; /* diffusion number: stable below 0.25 */
    double source = 1.0;
    int64_t step = 0, nsteps = o.steps;

    int k = 0;
    if (o.kernel) {
        k = ksdk_create(o.name, "python");
        if (k < 0) {
            fail("ksdk_create", rank);
        }
        if (ksdk_set_option(k, "mpi", "1") < 0) {
            fail("ksdk_set_option(mpi)", rank);
        }
        /* T is the strip without its halo rows: contiguous, shared with the cells. */
        const int64_t shape[2] = {rows, nx};
        if (ksdk_expose_array(k, "T", u + nx, "float64", 2, shape, 1) < 0 ||
            ksdk_expose_scalar(k, "step", &step, "int64", 0) < 0 ||
            ksdk_expose_scalar(k, "source", &source, "float64", 1) < 0 ||
            ksdk_expose_scalar(k, "nsteps", &nsteps, "int64", 1) < 0) {
            fail("ksdk_expose", rank);
        }
        if (ksdk_start(k) < 0) { /* collective */
            fail("ksdk_start", rank);
        }
        if (rank == 0) {
            printf("heat: %d ranks, %d x %d grid; kernel '%s', connection file:\n%s\n", size, nx,
                   o.ny, o.name, ksdk_connection_file(k));
            fflush(stdout);
        }
    }

    double t_step = 0, t_poll = 0, t_step_all = 0, t_poll_all = 0;
    int64_t since = 0;
    while (step < nsteps) {
        double t0 = MPI_Wtime();
        MPI_Sendrecv(u + nx, nx, MPI_DOUBLE, up, 0, u + (size_t)(rows + 1) * nx, nx, MPI_DOUBLE,
                     down, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Sendrecv(u + (size_t)rows * nx, nx, MPI_DOUBLE, down, 1, u, nx, MPI_DOUBLE, up, 1,
                     MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        for (int i = 1; i <= rows; i++) {
            const int g = first + i - 1;
            double *row = next + (size_t)i * nx;
            const double *c = u + (size_t)i * nx, *n = c - nx, *s = c + nx;
            const double *h = heater + (size_t)(i - 1) * nx;
            if (g == 0 || g == o.ny - 1) {
                memset(row, 0, (size_t)nx * sizeof(double));
                continue;
            }
            row[0] = row[nx - 1] = 0.0;
            for (int j = 1; j < nx - 1; j++) {
                row[j] = c[j] + alpha * (n[j] + s[j] + c[j - 1] + c[j + 1] - 4 * c[j]) +
                         0.01 * source * h[j];
            }
        }
        /* Copied back, not swapped: the cells' T points at u. */
        memcpy(u + nx, next + nx, (size_t)rows * (size_t)nx * sizeof(double));
        step++;
        if (o.kernel) {
            double t1 = MPI_Wtime();
            int ran = ksdk_poll(k, 0.0); /* collective: every rank, every step */
            if (ran < 0) {
                fail("ksdk_poll", rank);
            }
            t_poll += MPI_Wtime() - t1;
            if (ran > 0) {
                /* A cell may have moved the end of the run; rank 0's word is final, so that
                 * every rank leaves the loop at the same step. ran is the same on every rank. */
                MPI_Bcast(&nsteps, 1, MPI_INT64_T, 0, MPI_COMM_WORLD);
            }
        }
        t_step += MPI_Wtime() - t0;
        if (o.report > 0 && ++since == o.report) { /* the same step on every rank */
            report("last", since, t_step, t_poll, rank);
            t_step_all += t_step;
            t_poll_all += t_poll;
            t_step = t_poll = 0;
            since = 0;
        }
        sleep_ms(o.sleep_ms);
    }

    if (o.kernel && ksdk_stop(k) < 0) { /* collective: the clients see the kernel go */
        fail("ksdk_stop", rank);
    }
    report("done after", step, t_step_all + t_step, t_poll_all + t_poll, rank);
    free(u);
    free(next);
    free(heater);
    MPI_Finalize();
    return 0;
}
