namespace Kernels.Distributed;

/// <summary>An MPI call failed, or the MPI library found cannot be used.</summary>
public class MpiException : Exception
{
    /// <summary>An MPI error with its message.</summary>
    public MpiException(string message) : base(message) { }
}

/// <summary>The process was started by an MPI launcher (mpirun) but no MPI shared library could be opened.</summary>
public sealed class MpiNotFoundException : MpiException
{
    /// <summary>The library names tried, in order.</summary>
    public IReadOnlyList<string> Tried { get; }

    /// <summary>No library among <paramref name="tried"/> could be opened.</summary>
    public MpiNotFoundException(IReadOnlyList<string> tried, string reasons)
        : base($"no MPI library could be opened (tried {string.Join(", ", tried)}: {reasons}); install Open MPI " +
               "(Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev) or MPICH (apt-get install mpich libmpich12), " +
               "or set KERNELS_MPI_LIBRARY to the path of libmpi.so.40 or libmpich.so.12")
        => Tried = tried;
}

/// <summary>
/// A collective did not complete within <see cref="Mpi.Timeout"/>: a rank died, hangs, or took
/// another path through the program. Before throwing, the waiting rank asks every other rank whether it is
/// inside a collective (a liveness query that ranks answer while they wait); <see cref="MissingRanks"/> are
/// those that did not answer. Unhandled, it ends the whole job (MPI_Abort) so no rank waits forever.
/// Catch it only to log and end the job: the collective is still pending in MPI, which may yet write into
/// its buffer, and the ranks no longer agree on which collective comes next.
/// </summary>
public sealed class CollectiveTimeoutException : MpiException
{
    /// <summary>The collective that timed out ("all-reduce of gradient bucket 0 (step 3)", ...).</summary>
    public string Operation { get; }
    /// <summary>The rank that waited.</summary>
    public int Rank { get; }
    /// <summary>The ranks that did not arrive: those that answered no liveness query (every other rank when the
    /// query itself failed); empty when every rank answered from inside some collective (different paths).</summary>
    public IReadOnlyList<int> MissingRanks { get; }

    /// <summary>Rank <paramref name="rank"/> waited <paramref name="waited"/> for <paramref name="operation"/>;
    /// <paramref name="detail"/> says who did not arrive and how that is known.</summary>
    public CollectiveTimeoutException(string operation, int rank, IReadOnlyList<int> missingRanks, TimeSpan waited, string detail)
        : base($"rank {rank}: {operation} did not complete within {waited.TotalSeconds:0.#} s: {detail}; Mpi.Timeout sets the limit")
        => (Operation, Rank, MissingRanks) = (operation, rank, missingRanks);
}
