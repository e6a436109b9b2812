#!/usr/bin/env bash
# All-reduce timing on loopback, 2 ranks: the MPI library driven from C (benchmarks/mpi/allreduce_bench.c:
# MPI_Allreduce, and MPI_Iallreduce + MPI_Test polling) against Kernels.Distributed's Mpi.AllReduce
# (the C# function-pointer path, MPI_Iallreduce + MPI_Test polling), 1 K to 16 M floats.
# Needs openmpi-bin libopenmpi-dev (mpicc.openmpi; named, as Debian's alternatives may point mpicc/mpirun at MPICH). Not a CI stage: a measurement; print `uptime` beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/mpi-bench; mkdir -p "$out"
mpicc.openmpi -O2 -o "$out/allreduce_bench" benchmarks/mpi/allreduce_bench.c
dotnet build tests/Kernels.Distributed.Tests -c Release -v q -nologo >/dev/null
mpirun=(mpirun.openmpi -np 2 --oversubscribe); [ "$(id -u)" = 0 ] && mpirun+=(--allow-run-as-root)
uptime
"${mpirun[@]}" "$out/allreduce_bench"
"${mpirun[@]}" dotnet tests/Kernels.Distributed.Tests/bin/Release/net10.0/Kernels.Distributed.Tests.dll bench-allreduce | sed 's/\x1b\[?1h\x1b=//g'
uptime
