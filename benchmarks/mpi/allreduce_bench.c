/* The MPI library's own all-reduce figure, for comparison with Kernels.Distributed's (the
 * "bench-allreduce" case of tests/Kernels.Distributed.Tests): MPI_Allreduce(MPI_IN_PLACE, float, SUM)
 * on MPI_COMM_WORLD, and MPI_Iallreduce + MPI_Test polling (what the C# side does), for the same
 * sizes and repetitions. Prints one line per size: floats, microseconds per call (median of 5
 * batches), and the algorithm bandwidth (bytes / time) in GB/s, as the OSU benchmarks report it.
 * Built and run by scripts/bench-mpi-allreduce.sh. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  for (long n = 1024; n <= (16L << 20); n *= 4) {
    float* x = malloc(n * sizeof(float));
    for (long i = 0; i < n; i++) x[i] = (float)i;
    int reps = n <= 65536 ? 200 : n <= (1L << 20) ? 40 : 8;
    for (int nonblocking = 0; nonblocking < 2; nonblocking++) {
      double t[5];
      for (int b = 0; b < 5; b++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double start = MPI_Wtime();
        for (int r = 0; r < reps; r++) {
          if (!nonblocking) {
            MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
          } else {
            MPI_Request q;
            int done = 0;
            MPI_Iallreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &q);
            while (!done) MPI_Test(&q, &done, MPI_STATUS_IGNORE);
          }
        }
        t[b] = (MPI_Wtime() - start) / reps;
      }
      qsort(t, 5, sizeof t[0], cmp);
      if (rank == 0)
        printf("C %-12s %9ld floats %10.1f us %7.2f GB/s\n", nonblocking ? "Iallreduce" : "Allreduce", n, t[2] * 1e6,
               n * 4.0 / t[2] / 1e9);
    }
    free(x);
  }
  MPI_Finalize();
  return 0;
}
