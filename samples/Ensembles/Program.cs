// Ensembles of small MLPs on MNIST (issue 19): a bag and two boosted ensembles (SAMME, SAMME.R) of N members
// 784-64-10 (ReLU, Adam 1e-3, batch 128, --epochs each), against one such member alone and against one
// 784-H-10 network with the ensemble's total parameter count (H = 64 N), trained for --epochs and for
// N x --epochs epochs (the ensemble's number of passes over the data).
//   dotnet run --project samples/Ensembles -c Release -- [--members N] [--epochs E] [--limit M] [--devices cpu,opencl:0]
//                                                       [--boost-rate R]
// --limit M trains on the first M training images and tests on the first min(M, 10000) test images (quick runs);
// --devices spreads the bag's members over several devices at once (boosting trains its members in turn);
// --boost-rate is boosting's learning rate (shrinkage, default 1). Each boosting algorithm runs twice: members
// trained with the sample weights in the loss, and members trained on N samples drawn by weight.
// Prints a table of test accuracy and training time; the data is fetched once into ~/.cache/kernels/mnist.
using System.Diagnostics;
using System.Globalization;
using Kernels;
using Kernels.Nn;

int members = 5, epochs = 1, limit = 0;
double boostRate = 1;
var devices = new List<Device> { Device.Cpu };
for (int i = 0; i < args.Length; i += 2)
{
    string value = i + 1 < args.Length ? args[i + 1] : "";
    switch (args[i])
    {
        case "--members": members = int.Parse(value, CultureInfo.InvariantCulture); break;
        case "--epochs": epochs = int.Parse(value, CultureInfo.InvariantCulture); break;
        case "--limit": limit = int.Parse(value, CultureInfo.InvariantCulture); break;
        case "--devices": devices = value.Split(',').Select(Device.Get).ToList(); break;
        case "--boost-rate": boostRate = double.Parse(value, CultureInfo.InvariantCulture); break;
        default:
            Console.Error.WriteLine($"unknown option {args[i]}; usage: [--members N] [--epochs E] [--limit M] [--devices cpu,opencl:0] [--boost-rate R]");
            return 2;
    }
}
if (members < 1 || epochs < 1 || limit < 0)
{
    Console.Error.WriteLine($"--members ({members}) and --epochs ({epochs}) must be at least 1, --limit ({limit}) at least 0");
    return 2;
}
const int batch = 128;
var device = devices[0];
Dataset train, test;
var (fullTrain, fullTest) = Mnist.Load(log: Console.Out);
train = limit > 0 ? fullTrain.Subset(Enumerable.Range(0, Math.Min(limit, fullTrain.Count)).ToArray()) : fullTrain;
test = limit > 0 ? fullTest.Subset(Enumerable.Range(0, Math.Min(limit, fullTest.Count)).ToArray()) : fullTest;
Console.WriteLine($"MNIST: {train.Count} training and {test.Count} test images; {members} members, {epochs} epoch(s) each; " +
                  $"devices {string.Join(", ", devices.Select(d => d.Name))}; {Environment.ProcessorCount} logical CPUs");

Sequential Mlp(Device on, int hidden, int seed) => new(
    new Dense(784, hidden, weightInit: Initializer.HeUniform, seed: 2 * seed + 1, device: on),
    Activation.Relu(),
    new Dense(hidden, 10, seed: 2 * seed + 2, device: on));
MemberTrainer Members() => new NetworkMemberTrainer((on, seed) => Mlp(on, 64, seed), m => new Adam(m.Parameters(), learningRate: 1e-3f), epochs, batch);

var rows = new List<(string Name, long Parameters, double Accuracy, double Seconds, string Note)>();

// Test accuracy of a member or an ensemble (a Model would own, and dispose, the network it wraps).
double Accuracy(Module network)
{
    var accuracy = new Accuracy();
    new Trainer().Test(network, Losses.SparseCategoricalCrossEntropy, new DataLoader(test, 512, shuffle: false, device: device), new Metric[] { accuracy });
    return accuracy.Result();
}

// One network trained with Model.Fit (the member alone, and the wide one).
void Single(string name, int hidden, int epochCount)
{
    var network = Mlp(device, hidden, seed: 100);
    using var model = new Model(network, device);
    model.Compile(new Adam(network.Parameters(), learningRate: 1e-3f), "sparse_categorical_crossentropy", "accuracy");
    var watch = Stopwatch.StartNew();
    model.Fit(train, epochs: epochCount, batchSize: batch, verbose: 0, seed: 100);
    double seconds = watch.Elapsed.TotalSeconds;
    rows.Add((name, network.ParameterCount, model.Evaluate(test)["accuracy"], seconds, $"{epochCount} epoch(s)"));
    Console.WriteLine($"  {name}: done");
}

void Report(string name, Ensemble ensemble, double seconds, string note)
{
    var accuracies = ensemble.Members.Select(Accuracy).ToArray();
    rows.Add((name, ensemble.ParameterCount, Accuracy(ensemble), seconds,
              $"{ensemble.Members.Count} members, each {accuracies.Min() * 100:F2}-{accuracies.Max() * 100:F2}%{note}"));
    Console.WriteLine($"  {name}: done");
}

Single("one member 784-64-10", 64, epochs);
{
    using var bag = new Bagging(Members(), members, seed: 1);
    var watch = Stopwatch.StartNew();
    bag.Fit(train, devices, parallel: true);
    Report("bagging (bootstrap, mean probabilities)", bag, watch.Elapsed.TotalSeconds, $"; out-of-bag accuracy {bag.OutOfBagAccuracy * 100:F2}%");
}
foreach (var sampling in new[] { BoostingSampling.WeightedLoss, BoostingSampling.Resampling })
foreach (var algorithm in new[] { BoostingAlgorithm.Samme, BoostingAlgorithm.SammeR })
{
    using var booster = new Boosting(Members(), members, algorithm, learningRate: boostRate, sampling: sampling, seed: 1);
    var watch = Stopwatch.StartNew();
    booster.Fit(train, devices);
    string weights = string.Join(" ", booster.MemberWeights.Select(w => w.ToString("F2", CultureInfo.InvariantCulture)));
    Report($"boosting {(algorithm == BoostingAlgorithm.Samme ? "SAMME" : "SAMME.R")} ({(sampling == BoostingSampling.WeightedLoss ? "weighted loss" : "resampling")}, rate {boostRate})", booster, watch.Elapsed.TotalSeconds,
           $"; member weights {weights}; stopped: {booster.StoppedBecause}");
}
Single($"one network 784-{64 * members}-10", 64 * members, epochs);
if (members > 1) Single($"one network 784-{64 * members}-10", 64 * members, epochs * members);

Console.WriteLine();
Console.WriteLine($"| model | parameters | test accuracy | training time (s) | notes |");
Console.WriteLine($"|---|---:|---:|---:|---|");
foreach (var r in rows)
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {r.Name} | {r.Parameters:N0} | {r.Accuracy * 100:F2}% | {r.Seconds:F1} | {r.Note} |"));
return 0;
