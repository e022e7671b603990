/* The collective ksdk_poll of an mpi kernel with nothing to run, from C, on every rank, next
 * to the 8-byte MPI_Bcast it makes (its floor): issue 11's in-situ case.
 *
 *     mpicc -O2 insitu_poll.c $(python -m kernelsdk config --cflags --ldflags) -o insitu_poll
 *     mpiexec -n 2 ./insitu_poll [CALLS] [ROUNDS]
 *
 * benchmarks/insitu.py builds and runs it. ROUNDS times (default 7), alternately: CALLS
 * (default 100000) polls, then CALLS broadcasts on a communicator of their own; rank 0 prints
 * the minimum and the median over the rounds of the time per call (the slowest rank's),
 * in ns.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

#include "kernelsdk.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int provided = 0, rank = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    long calls = argc > 1 ? atol(argv[1]) : 100000;
    int rounds = argc > 2 ? atoi(argv[2]) : 7;
    if (calls < 1 || rounds < 1 || rounds > 1000 || provided < MPI_THREAD_MULTIPLE) {
        if (rank == 0) fprintf(stderr, "usage: insitu_poll [CALLS] [ROUNDS]; MPI_THREAD_MULTIPLE\n");
        MPI_Finalize();
        return 2;
    }
    int64_t step = 0;
    int k = ksdk_create("insitu-poll", "python");
    if (k < 0 || ksdk_set_option(k, "mpi", "1") < 0 ||
        ksdk_expose_scalar(k, "step", &step, "int64", 0) < 0 || ksdk_start(k) < 0) {
        fprintf(stderr, "insitu_poll: rank %d: %s\n", rank, ksdk_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Comm comm;
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    double *poll = calloc((size_t)rounds, sizeof(double));
    double *bcast = calloc((size_t)rounds, sizeof(double));
    if (poll == NULL || bcast == NULL) MPI_Abort(MPI_COMM_WORLD, 1);
    for (int r = 0; r < rounds; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        for (long i = 0; i < calls; i++) {
            if (ksdk_poll(k, 0.0) < 0) {
                fprintf(stderr, "insitu_poll: rank %d: %s\n", rank, ksdk_last_error());
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            step++;
        }
        double t1 = MPI_Wtime();
        MPI_Barrier(MPI_COMM_WORLD);
        double t2 = MPI_Wtime();
        for (long i = 0; i < calls; i++) {
            int64_t count = step;
            MPI_Bcast(&count, 1, MPI_INT64_T, 0, comm);
        }
        double t3 = MPI_Wtime();
        double mine[2] = {(t1 - t0) / (double)calls, (t3 - t2) / (double)calls}, worst[2];
        MPI_Reduce(mine, worst, 2, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
        poll[r] = worst[0];
        bcast[r] = worst[1];
    }
    if (rank == 0) {
        qsort(poll, (size_t)rounds, sizeof(double), cmp);
        qsort(bcast, (size_t)rounds, sizeof(double), cmp);
        printf("ksdk_poll (mpi, nothing to run) %ld calls x %d: min %.1f ns, median %.1f ns\n",
               calls, rounds, 1e9 * poll[0], 1e9 * poll[rounds / 2]);
        printf("MPI_Bcast of 8 bytes            %ld calls x %d: min %.1f ns, median %.1f ns\n",
               calls, rounds, 1e9 * bcast[0], 1e9 * bcast[rounds / 2]);
        fflush(stdout);
    }
    free(poll);
    free(bcast);
    MPI_Comm_free(&comm);
    if (ksdk_stop(k) < 0) {
        fprintf(stderr, "insitu_poll: rank %d: %s\n", rank, ksdk_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Finalize();
    return 0;
}
