/* The MPI side of the shim: a world of ranks for data-parallel training and preprocessing. A process that
   mpirun did not start never calls MPI and is rank 0 of 1, so the same binary runs alone on a machine whose
   MPI runtime is not started. */
#define _GNU_SOURCE
#include "CLongCrawl.h"
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int world_active = 0;

static void world_finalize(void) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
}

int lc_world_start(int *rank, int *size) {
    *rank = 0;
    *size = 1;
    /* Open MPI's launcher sets OMPI_COMM_WORLD_SIZE; PMIx launchers set PMIX_RANK. */
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK")) return 0;
    /* For MPI_Iallreduce on few ranks libnbc (Open MPI's nonblocking collectives) picks a binomial tree: measured
       here about twice the time of the blocking MPI_Allreduce for 52 MB over 2 ranks (0.06-0.14 s against 0.03-0.08 s),
       which would make the buckets overlapped with backward slower than one blocking sum. Its ring matches the
       blocking sum. A value given to mpirun (--mca) or in the environment wins. */
    setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return -1;
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    world_active = 1;
    atexit(world_finalize);
    return 1;
}

int lc_world_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    return CPU_COUNT(&set);
}

void lc_world_abort(int code) {
    if (world_active) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

void lc_world_barrier(void) {
    if (world_active) MPI_Barrier(MPI_COMM_WORLD);
}

/* MPI counts are int: large buffers go in slices. */
static const long slice = 1L << 28;

void lc_world_sum_float(float *buffer, long count) {
    if (!world_active) return;
    for (long i = 0; i < count; i += slice) {
        int n = (int)(count - i < slice ? count - i : slice);
        MPI_Allreduce(MPI_IN_PLACE, buffer + i, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
}

/* The nonblocking sums started and not yet waited for. MPI_THREAD_FUNNELED: only the main thread calls MPI, so
   one list for the process is enough. */
static MPI_Request *pending = NULL;
static int pending_count = 0, pending_capacity = 0;

void lc_world_start_sum_float(float *buffer, long count) {
    if (!world_active) return;
    for (long i = 0; i < count; i += slice) {
        int n = (int)(count - i < slice ? count - i : slice);
        if (pending_count == pending_capacity) {
            pending_capacity = pending_capacity ? 2 * pending_capacity : 64;
            pending = realloc(pending, sizeof(MPI_Request) * pending_capacity);
            if (!pending) { fprintf(stderr, "error: world.c: out of memory for MPI requests\n"); lc_world_abort(1); }
        }
        MPI_Iallreduce(MPI_IN_PLACE, buffer + i, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &pending[pending_count++]);
    }
}

int lc_world_test_sums(void) {
    if (!world_active || pending_count == 0) return 1;
    int done = 0;
    MPI_Testall(pending_count, pending, &done, MPI_STATUSES_IGNORE);
    return done;
}

void lc_world_wait_sums(void) {
    if (!world_active || pending_count == 0) return;
    MPI_Waitall(pending_count, pending, MPI_STATUSES_IGNORE);
    pending_count = 0;
}

void lc_world_sum_double(double *buffer, long count) {
    if (!world_active) return;
    for (long i = 0; i < count; i += slice) {
        int n = (int)(count - i < slice ? count - i : slice);
        MPI_Allreduce(MPI_IN_PLACE, buffer + i, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    }
}

void lc_world_max_int64(int64_t *buffer, int count) {
    if (world_active) MPI_Allreduce(MPI_IN_PLACE, buffer, count, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
}

void lc_world_exchange_sizes(const long *send, long *recv) {
    if (!world_active) { recv[0] = send[0]; return; }
    MPI_Alltoall(send, 1, MPI_LONG, recv, 1, MPI_LONG, MPI_COMM_WORLD);
}

void lc_world_exchange_round(const void *send, const int *send_counts, const int *send_offsets,
                             void *recv, const int *recv_counts, const int *recv_offsets) {
    if (!world_active) { memcpy(recv, send, (size_t)send_counts[0]); return; }
    MPI_Alltoallv(send, send_counts, send_offsets, MPI_BYTE, recv, recv_counts, recv_offsets, MPI_BYTE, MPI_COMM_WORLD);
}

const char *lc_mpi_library_version(void) {
    static char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    if (MPI_Get_library_version(version, &length) != MPI_SUCCESS) return "unknown";
    version[strcspn(version, "\n")] = 0;
    return version;
}
