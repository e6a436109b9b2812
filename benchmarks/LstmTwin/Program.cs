// Kernels' side of the LSTM benchmarks against PyTorch: the twin of benchmarks/torch/lstm_twin.py, the
// same two workloads with the same shapes, optimizer and clipping, timed the same way (wall clock,
// median of the measured repeats after warm-up), so scripts/bench-lstm-vs-torch.sh can print a ratio.
//   step   input [64, 100, 128], LSTM(128 -> 128) every step, loss mean(output^2), backward,
//          global-norm clipping at 1, Adam: seconds per step.
//   mnist  the SequentialMnist sample's step through Trainer.Train: [64, 28, 28] -> LSTM(28 -> 128)
//          -> Dense(10), cross-entropy, clipping at 1, Adam; scaled to a 938-batch epoch.
// Threads: KN_NUM_THREADS, read by libkernels at start (the script sets it).
//   dotnet run -c Release --project benchmarks/LstmTwin -- --mode step|mnist [--warmup N] [--repeats N]
// Prints one line: `kernels <mode> threads=N seconds_per_step=S cpu_seconds_per_step=C` (wall clock and
// process CPU time, medians; with one thread the CPU time leaves out waiting for a core).
using System.Diagnostics;
using System.Globalization;
using Kernels;
using Kernels.Nn;

string mode = "";
int warmup = 2, repeats = 10;
for (int i = 0; i + 1 < args.Length; i += 2)
{
    switch (args[i])
    {
        case "--mode": mode = args[i + 1]; break;
        case "--warmup": warmup = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        case "--repeats": repeats = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
    }
}
string threads = Environment.GetEnvironmentVariable("KN_NUM_THREADS") is { Length: > 0 } n ? n : Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture);
var device = Device.Cpu;
switch (mode)
{
    case "step":
    {
        using var lstm = new LSTM(128, 128, returnSequences: true, seed: 1, device: device);
        using var x = Tensor.Uniform(new long[] { 64, 100, 128 }, -1f, 1f, 2, device);
        using var optimizer = new Adam(lstm.Parameters(), learningRate: 1e-3f);
        var (wall, cpu) = MedianSeconds(() =>
        {
            using var scope = new DisposeScope();
            optimizer.ZeroGrad();
            var loss = lstm.Forward(x).Square().Mean();
            loss.Backward();
            _ = loss.Item();   // the Trainer reads the loss once per step; so does the twin
            GradientClipping.ByGlobalNorm(lstm.Parameters(), 1f);
            optimizer.Step();
        }, warmup, repeats);
        Console.WriteLine(FormattableString.Invariant($"kernels step threads={threads} seconds_per_step={wall:F6} cpu_seconds_per_step={cpu:F6}"));
        break;
    }
    case "mnist":
    {
        var network = new Sequential(new LSTM(28, 128, seed: 1, device: device), new Dense(128, 10, seed: 2, device: device));
        using var _ = network;
        var random = new Random(1);
        int batches = warmup + repeats;
        var pixels = new float[batches * 64 * 28 * 28];
        for (int i = 0; i < pixels.Length; i++) pixels[i] = (float)random.NextDouble();
        var labels = Enumerable.Range(0, batches * 64).Select(_ => (long)random.Next(10)).ToArray();
        var loader = new DataLoader(new ArrayDataset(pixels, new long[] { 28, 28 }, labels), 64, shuffle: false, device: device);
        using var optimizer = new Adam(network.Parameters(), learningRate: 1e-3f);
        var trainer = new Trainer { BeforeUpdate = m => GradientClipping.ByGlobalNorm(m.Parameters(), 1f) };
        var walls = new List<double>();
        var cpus = new List<double>();
        var watch = new Stopwatch();
        TimeSpan cpuStart = default;
        // One Trainer step per batch, exactly as Model.Fit runs the sample (the batch assembly runs
        // ahead on a background thread there too, and is counted in the CPU time).
        trainer.OnSample += _ => { watch.Restart(); cpuStart = Process.GetCurrentProcess().TotalProcessorTime; };
        trainer.OnUpdate += s =>
        {
            if (s.BatchIndex < warmup) return;
            walls.Add(watch.Elapsed.TotalSeconds);
            cpus.Add((Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalSeconds);
        };
        trainer.Train(network, Losses.SparseCategoricalCrossEntropy, loader, optimizer, epochs: 1);
        Console.WriteLine(FormattableString.Invariant($"kernels mnist threads={threads} seconds_per_step={Median(walls):F6} cpu_seconds_per_step={Median(cpus):F6}"));
        break;
    }
    default:
        Console.Error.WriteLine("give --mode step or --mode mnist");
        return 2;
}
return 0;

static (double Wall, double Cpu) MedianSeconds(Action step, int warmup, int repeats)
{
    for (int i = 0; i < warmup; i++) step();
    var walls = new List<double>();
    var cpus = new List<double>();
    for (int i = 0; i < repeats; i++)
    {
        var cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
        var watch = Stopwatch.StartNew();
        step();
        walls.Add(watch.Elapsed.TotalSeconds);
        cpus.Add((Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalSeconds);
    }
    return (Median(walls), Median(cpus));
}

static double Median(List<double> values)
{
    var sorted = values.Order().ToList();
    return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
}
