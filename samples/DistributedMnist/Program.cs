// The MNIST CNN of samples/MnistCnn, trained data-parallel: one process per rank, each on its shard
// of every epoch (per-rank batch --batch), gradients averaged over the ranks before each Adam step.
//   mpirun -np 2 dotnet run --project samples/DistributedMnist -c Release -- [--epochs N] [--batch N] [--train N] [--bucket-mb X] [--in-place]
//   (as root: mpirun --allow-run-as-root ...; without mpirun it trains alone, as a world of one)
// --train N uses the first N training images (timing runs); --bucket-mb the gradient bucket size
// (default 25 MB as PyTorch, the first one 1 MB: the 0.42 M-parameter CNN travels in 2 buckets); --in-place all-reduces
// the gradient buckets in the device's own memory instead of pinned host copies (the default only on CUDA with a
// CUDA-aware MPI; on the CPU the host copies measured faster). Each rank picks its device by local rank
// (CUDA GPU number local rank when there are GPUs, else the CPU). Rank 0 prints the progress, the
// seconds per epoch and the test accuracy.
using System.Diagnostics;
using Kernels;
using Kernels.Distributed;
using Kernels.Nn;

int epochs = 2, batch = 32, trainCount = 0;
double bucketMb = 25;
bool inPlace = false;
for (int i = 0; i < args.Length; i += 2)
{
    if (args[i] == "--in-place") { inPlace = true; i--; continue; }
    if (i + 1 >= args.Length) { Console.Error.WriteLine($"option {args[i]} is unknown or has no value; usage: [--epochs N] [--batch N] [--train N] [--bucket-mb X] [--in-place]"); return 2; }
    switch (args[i])
    {
        case "--epochs": epochs = int.Parse(args[i + 1]); break;
        case "--batch": batch = int.Parse(args[i + 1]); break;
        case "--train": trainCount = int.Parse(args[i + 1]); break;
        case "--bucket-mb": bucketMb = double.Parse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture); break;
        default: Console.Error.WriteLine($"unknown option {args[i]}; usage: [--epochs N] [--batch N] [--train N] [--bucket-mb X] [--in-place]"); return 2;
    }
}

var world = Mpi.Init();
var device = world.DeviceForLocalRank();
TextWriter log = world.IsRoot ? Console.Out : TextWriter.Null;
log.WriteLine($"{world.Size} rank(s), MPI: {world.Library}; CUDA-aware: {world.CudaAware}; rank 0 on {device.Name}");

// Rank 0 fetches the data set once (if it is not cached yet); the others read the cache after it.
(ArrayDataset, ArrayDataset) Load() => Mnist.Load(log: log);
var (train, test) = world.IsRoot ? Load() : default;
world.Barrier("MNIST download by rank 0");
if (!world.IsRoot) (train, test) = Load();
Dataset trainSet = trainCount > 0 ? train!.Subset(Enumerable.Range(0, Math.Min(trainCount, train.Count)).ToArray()) : train!;

var network = MnistNetworks.Cnn(device);
long bucketBytes = (long)(bucketMb * (1 << 20));
using var ddp = new DistributedDataParallel(network, world, bucketBytes, firstBucketBytes: Math.Min(bucketBytes, 1L << 20),
                                            inPlaceOnDevice: inPlace ? true : null);   // rank 0's initial weights everywhere
using var model = new Model(network, device) { DataParallel = ddp };
model.Compile(new Adam(network.Parameters(), learningRate: 1e-3f), "sparse_categorical_crossentropy", "accuracy");
log.WriteLine($"{trainSet.Count} training images, {trainSet.Count / world.Size} per rank per epoch, batch {batch} per rank ({batch * world.Size} in all); {ddp.BucketCount} gradient bucket(s), " +
              (ddp.InPlaceOnDevice ? $"all-reduced in {device.Name} memory" : "staged through pinned host arrays"));

// Wall seconds per epoch, and this process's CPU seconds in it: on a machine shared with other work
// the wall time says little, the CPU time says what each rank spent (waits included: MPI polls).
var watch = Stopwatch.StartNew();
var seconds = new List<double>();
var cpu = new List<double>();
TimeSpan cpuAtStart = default;
var timer = new LambdaCallback
{
    EpochBegin = _ => { watch.Restart(); cpuAtStart = Process.GetCurrentProcess().TotalProcessorTime; },
    EpochEnd = (_, _) =>
    {
        seconds.Add(watch.Elapsed.TotalSeconds);
        cpu.Add((Process.GetCurrentProcess().TotalProcessorTime - cpuAtStart).TotalSeconds);
    },
};
model.Fit(trainSet, epochs: epochs, batchSize: batch, seed: 7, callbacks: new Callback[] { timer });
var cpuMax = cpu.ToArray();
var cpuSum = cpu.ToArray();
world.AllReduce(cpuMax, ReduceOperation.Max);
world.AllReduce(cpuSum);
var result = model.Evaluate(test!);
log.WriteLine($"Seconds per epoch: {string.Join(", ", seconds.Select(s => s.ToString("F1", System.Globalization.CultureInfo.InvariantCulture)))}; " +
              $"buckets started during backward: {ddp.BucketsStartedDuringBackward}");
string F(IEnumerable<double> v) => string.Join(", ", v.Select(x => x.ToString("F1", System.Globalization.CultureInfo.InvariantCulture)));
// Where each rank's data-parallel time went (all epochs), one line per rank.
var tm = ddp.Timings;
if (world.Size > 1)
    Console.WriteLine($"rank {world.Rank}: {tm.Steps} steps; seconds copying gradients to staging {tm.CopyToStaging:F2}, " +
                      $"starting/testing all-reduces {tm.Start:F2}, waiting for them {tm.Wait:F2}, averaging and copying back {tm.CopyBack:F2}");
log.WriteLine($"CPU seconds per epoch: busiest rank {F(cpuMax)}; all ranks together {F(cpuSum)}");
log.WriteLine($"Test accuracy {result["accuracy"] * 100:F2}%  loss {result["loss"]:F4}");
return 0;
