// The consumer test's program: what a user's first program does with the Kernels.Nn package.
// scripts/ci-pack.sh copies this file into a fresh `dotnet new console` project in a temporary folder
// outside the repository, adds the package with `dotnet add package Kernels.Nn` from a local folder
// feed, and runs it; nothing here may refer to the repository.
//   dotnet run -- [--require cpu|cuda|opencl]... [--expect-absent cuda|opencl]...
// Lists devices and says why each absent backend is absent, then trains the same small network on
// every device for a few steps and checks that (1) the loss falls, (2) every device computes the
// same first-step loss as the CPU (same seed, same data, so only float32 rounding may differ).
// Exit code 0 only when every check held.
using Kernels;
using Kernels.Nn;

var required = new List<DeviceKind>();
var expectedAbsent = new List<DeviceKind>();
for (int i = 0; i < args.Length; i++)
{
    var list = args[i] switch { "--require" => required, "--expect-absent" => expectedAbsent, _ => null };
    if (list is null || i + 1 >= args.Length)
    {
        Console.Error.WriteLine($"usage: [--require cpu|cuda|opencl]... [--expect-absent cuda|opencl]... (got '{args[i]}')");
        return 2;
    }
    list.Add(Enum.Parse<DeviceKind>(args[++i], ignoreCase: true));
}
int failures = 0;
void Fail(string message) { failures++; Console.WriteLine($"FAIL {message}"); }

Console.WriteLine($"Kernels.Nn {typeof(Tensor).Assembly.GetName().Version} on .NET {Environment.Version}, {System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier}");
Console.WriteLine("Backends:");
foreach (var kind in Enum.GetValues<DeviceKind>())
{
    var (available, reason) = Device.BackendInfo(kind);
    Console.WriteLine($"  {kind,-7} {(available ? "available" : "absent")}{(string.IsNullOrEmpty(reason) ? "" : ": " + reason)}");
    if (!available && required.Contains(kind)) Fail($"{kind} is required but absent: {reason}");
    if (available && expectedAbsent.Contains(kind)) Fail($"{kind} was expected to be absent but is available");
    if (!available && string.IsNullOrWhiteSpace(reason)) Fail($"{kind} is absent without a reason");
}
Console.WriteLine("Devices:");
foreach (var device in Device.All)
    Console.WriteLine($"  {device.Name,-10} {device.Description} ({device.TotalMemory / (1 << 20)} MiB)");
foreach (var kind in required)
    if (!Device.All.Any(d => d.Kind == kind)) Fail($"no {kind} device although {kind} is required");

// Bad input is a typed exception whose message names the problem, and the package's symbols (a PDB
// embedded in each DLL) give its stack trace the library's file names and lines.
try
{
    Device.Get("cuda:99");
    Fail("Device.Get(\"cuda:99\") did not throw");
}
catch (DeviceNotFoundException e)
{
    Console.WriteLine($"Device.Get(\"cuda:99\") -> {e.GetType().Name}: {e.Message.Split('\n')[0]}");
    if (e.StackTrace?.Contains("/_/bindings/Device.cs:line ", StringComparison.Ordinal) != true)
        Fail($"the stack trace has no line in /_/bindings/Device.cs (are the package's symbols embedded?):\n{e.StackTrace}");
}

// The data: 512 points in [-1, 1]^2, class 1 where both coordinates have the same sign (XOR-like,
// so a linear model cannot fit it and the hidden layer has to learn).
const int samples = 512, steps = 60;
var random = new Random(1234);
var features = new float[samples * 2];
var labels = new long[samples];
for (int i = 0; i < samples; i++)
{
    features[2 * i] = random.NextSingle() * 2 - 1;
    features[2 * i + 1] = random.NextSingle() * 2 - 1;
    labels[i] = features[2 * i] * features[2 * i + 1] > 0 ? 1 : 0;
}

double? cpuFirstLoss = null;
foreach (var device in Device.All)
{
    // Full-batch Adam on a 2-32-2 tanh network: 60 steps, ~1 ms each on a CPU.
    using var network = new Sequential(new Dense(2, 32, seed: 1, device: device), Activation.Tanh(),
                                       new Dense(32, 2, seed: 2, device: device));
    using var optimizer = new Adam(network.Parameters(), learningRate: 0.05f);
    using var x = Tensor.FromArray(features, new long[] { samples, 2 }, device);
    var losses = new List<double>();
    var watch = System.Diagnostics.Stopwatch.StartNew();
    for (int step = 0; step < steps; step++)
    {
        using var scope = new DisposeScope();   // frees this step's intermediate tensors
        var loss = Losses.SparseCategoricalCrossEntropy(network.Forward(x), labels);
        optimizer.ZeroGrad();
        loss.Backward();
        optimizer.Step();
        losses.Add(loss.Item());
    }
    double accuracy;
    using (Tensor.NoGrad())
    using (var scope = new DisposeScope())
    {
        var logits = network.Forward(x).ToArray();
        accuracy = Enumerable.Range(0, samples).Count(i => (logits[2 * i + 1] > logits[2 * i] ? 1 : 0) == labels[i]) / (double)samples;
    }
    Console.WriteLine($"train {device.Name,-10} loss {losses[0]:F4} -> {losses[^1]:F4} in {steps} steps " +
                      $"({watch.Elapsed.TotalMilliseconds / steps:F2} ms/step), accuracy {accuracy:P1}");

    if (!(losses[^1] < 0.5 * losses[0])) Fail($"{device.Name}: the loss did not halve ({losses[0]:F4} -> {losses[^1]:F4})");
    if (accuracy < 0.9) Fail($"{device.Name}: accuracy {accuracy:P1} after {steps} steps, expected at least 90%");
    // Step 1 is one forward pass from identical weights: devices differ only by float32 rounding
    // order (~1e-7 relative per op, a few dozen ops deep), so 1e-4 relative is generous.
    cpuFirstLoss ??= losses[0];
    double relative = Math.Abs(losses[0] - cpuFirstLoss.Value) / cpuFirstLoss.Value;
    if (relative > 1e-4) Fail($"{device.Name}: first-step loss {losses[0]:F6} differs from the CPU's {cpuFirstLoss:F6} by {relative:E1} (relative)");
}

Console.WriteLine(failures == 0 ? "consumer: OK" : $"consumer: {failures} check(s) failed");
return failures == 0 ? 0 : 1;
