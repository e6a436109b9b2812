using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace Kernels.Nn;

// Ensembles over any trainer, as Torch (2002) composed its trainers: Bagging and Boosting wrap a
// MemberTrainer (how to build and train one member) and are Modules themselves, so Model.Predict,
// Model.Evaluate and ModelFile work on them as on any network. Members are classifiers: Forward gives
// logits [N, K] (softmax: probabilities). Everything the ensemble decides (samples drawn, sample and
// member weights, votes) is computed on the host in float64 from the members' outputs, so it does not
// depend on the device that ran a member.

/// <summary>How <see cref="Bagging"/> combines its members.</summary>
public enum EnsembleVote
{
    /// <summary>The mean of the members' softmax probabilities (scikit-learn's BaggingClassifier).</summary>
    AverageProbabilities,
    /// <summary>Each member votes for its arg-max class; the ensemble's probabilities are the vote fractions
    /// (a tie goes to the lowest class index).</summary>
    Majority,
}

/// <summary>The multi-class AdaBoost of <see cref="Boosting"/> (Zhu, Zou, Rosset and Hastie 2009).</summary>
public enum BoostingAlgorithm
{
    /// <summary>Discrete SAMME: member weights from the weighted error of the members' arg-max classes.</summary>
    Samme,
    /// <summary>Real SAMME.R: the members' probabilities themselves update the sample weights and vote.</summary>
    SammeR,
}

/// <summary>How <see cref="Boosting"/> makes a member see the sample weights.</summary>
public enum BoostingSampling
{
    /// <summary>What the member trainer prefers (<see cref="MemberTrainer.PreferredSampling"/>): for network
    /// members weighted resampling, for others a weighted loss when they support one.</summary>
    Auto,
    /// <summary>Every sample once, each with its weight in the loss (<see cref="MemberTrainer.SupportsSampleWeights"/>).</summary>
    WeightedLoss,
    /// <summary>N samples drawn with replacement with probabilities equal to the weights (AdaBoost.M1 by resampling).</summary>
    Resampling,
}

/// <summary>What ended <see cref="Boosting.Fit"/>.</summary>
public enum BoostingStop
{
    /// <summary>The ensemble has the number of members asked for.</summary>
    MaxMembers,
    /// <summary>A member classified every training sample correctly (weighted error 0): it is kept with weight 1 and
    /// boosting stops, as scikit-learn does (the sample weights could not change any more).</summary>
    PerfectMember,
    /// <summary>A SAMME member's weighted error was at least 1 - 1/K, no better than guessing: it was dropped.</summary>
    NoBetterThanChance,
    /// <summary>The sample weights' sum became 0 or not finite.</summary>
    WeightsVanished,
}

/// <summary>The outcome of one AdaBoost step (<see cref="Boosting.SammeStep"/>, <see cref="Boosting.SammeRStep"/>).</summary>
public enum BoostOutcome
{
    /// <summary>The member is kept and boosting goes on with the new sample weights.</summary>
    Continue,
    /// <summary>Weighted error 0: the member is kept with weight 1; boosting stops.</summary>
    Perfect,
    /// <summary>SAMME weighted error &gt;= 1 - 1/K: the member is dropped; boosting stops.</summary>
    NoBetterThanChance,
}

/// <summary>
/// One AdaBoost step: the member's weighted error, its weight in the vote, and the next sample weights
/// (normalised to sum 1; the given ones when the step is the last or the member is perfect; null when it is
/// no better than chance).
/// </summary>
public sealed record BoostStep(BoostOutcome Outcome, double Error, double MemberWeight, double[]? SampleWeights);

/// <summary>One trained member, as the ensemble reports it (<see cref="Ensemble.MemberTrained"/>).</summary>
/// <param name="Index">0-based position in the ensemble.</param>
/// <param name="Device">The device that trained it.</param>
/// <param name="Seed">Its seed (initial weights, shuffling).</param>
/// <param name="Seconds">Training time, without the ensemble's bookkeeping.</param>
/// <param name="TrainingSamples">Samples it was trained on (drawn ones counted with repeats).</param>
/// <param name="Error">Boosting: its weighted training error; bagging: null.</param>
/// <param name="Weight">Boosting: its weight in the vote; bagging: null.</param>
/// <param name="Metrics">"loss" and "accuracy" of the member alone on the validation data given to Fit (empty without).</param>
public sealed record EnsembleMemberReport(int Index, string Device, int Seed, double Seconds, int TrainingSamples,
                                          double? Error, double? Weight, IReadOnlyDictionary<string, double> Metrics);

/// <summary>A member about to be trained: its <see cref="Trainer"/> takes hooks (OnEpochEnd, OnUpdate, ...)
/// before training starts (<see cref="Ensemble.MemberStarting"/>).</summary>
public sealed record MemberTraining(int Index, Device Device, int Seed, Trainer Trainer);

/// <summary>
/// How an ensemble builds and trains one member (Torch's trainer that Bagging and Boosting wrap). A member is a
/// <see cref="Module"/> whose Forward gives logits [N, K] for K classes.
/// </summary>
public abstract class MemberTrainer
{
    /// <summary>A fresh, untrained member on <paramref name="device"/>; <paramref name="seed"/> picks its initial weights.
    /// Two calls with the same arguments must give the same member (the ensemble rebuilds a member trained on
    /// another device on its own device and copies the weights in).</summary>
    public abstract Module Create(Device device, int seed);

    /// <summary>
    /// Trains <paramref name="member"/> on <paramref name="data"/> (class-index targets), on <paramref name="device"/>,
    /// through <paramref name="trainer"/> (whose hooks the caller may have set). <paramref name="sampleWeights"/> is
    /// null (all equal) or one weight per sample with mean 1; only a trainer whose
    /// <see cref="SupportsSampleWeights"/> is true receives weights.
    /// </summary>
    public abstract void Train(Module member, Dataset data, double[]? sampleWeights, Device device, int seed, Trainer trainer);

    /// <summary>Whether <see cref="Train"/> honours sample weights (a weighted loss); otherwise
    /// <see cref="Boosting"/> resamples.</summary>
    public virtual bool SupportsSampleWeights => false;

    /// <summary>How <see cref="BoostingSampling.Auto"/> shows this trainer's members the sample weights: a weighted
    /// loss when <see cref="SupportsSampleWeights"/>, weighted resampling otherwise.</summary>
    public virtual BoostingSampling PreferredSampling => SupportsSampleWeights ? BoostingSampling.WeightedLoss : BoostingSampling.Resampling;
}

/// <summary>
/// Members that are networks trained by gradient descent: <paramref name="network"/> builds one (device, seed),
/// <paramref name="optimizer"/> its optimizer; each member trains for <paramref name="epochs"/> epochs of
/// <paramref name="batchSize"/> samples, shuffled with its seed, with the sparse categorical cross-entropy (from
/// logits), weighted per sample when boosting asks for it
/// (<see cref="Losses.SparseCategoricalCrossEntropy(Tensor, Tensor, Tensor)"/>).
/// </summary>
public sealed class NetworkMemberTrainer(Func<Device, int, Module> network, Func<Module, Optimizer> optimizer, int epochs = 1, int batchSize = 32)
    : MemberTrainer
{
    private readonly Func<Device, int, Module> network = network ?? throw new ArgumentNullException(nameof(network));
    private readonly Func<Module, Optimizer> optimizer = optimizer ?? throw new ArgumentNullException(nameof(optimizer));

    /// <summary>Epochs per member.</summary>
    public int Epochs { get; } = epochs >= 0 ? epochs : throw new ArgumentOutOfRangeException(nameof(epochs), $"epochs = {epochs} must be >= 0");
    /// <summary>Samples per batch.</summary>
    public int BatchSize { get; } = batchSize > 0 ? batchSize : throw new ArgumentOutOfRangeException(nameof(batchSize), $"batch size {batchSize} must be positive");

    /// <inheritdoc/>
    public override bool SupportsSampleWeights => true;

    /// <summary>Weighted resampling. On MNIST (samples/Ensembles, five 784-64-10 MLPs, one epoch each) it gave
    /// 95.0% (SAMME) where the weighted loss gave 92.8%: after the first member the weights pile onto a few hard
    /// samples, and a network trained on them through the loss learns little else.</summary>
    public override BoostingSampling PreferredSampling => BoostingSampling.Resampling;

    /// <inheritdoc/>
    public override Module Create(Device device, int seed) =>
        network(device, seed) ?? throw new InvalidOperationException("the member factory returned null instead of a network");

    /// <inheritdoc/>
    public override void Train(Module member, Dataset data, double[]? sampleWeights, Device device, int seed, Trainer trainer)
    {
        ArgumentNullException.ThrowIfNull(member);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(trainer);
        using var opt = optimizer(member) ?? throw new InvalidOperationException("the optimizer factory returned null");
        if (sampleWeights is null)
        {
            trainer.Train(member, Losses.SparseCategoricalCrossEntropy, new DataLoader(data, BatchSize, shuffle: true, seed: seed, device: device), opt, Epochs);
            return;
        }
        // The weight travels with its sample as a second target column (class, weight), so shuffling keeps them together.
        var weighted = new WeightedSamples(data, sampleWeights);
        trainer.Train(member, WeightedLoss, new DataLoader(weighted, BatchSize, shuffle: true, seed: seed, device: device), opt, Epochs);
    }

    /// <summary>The weighted loss of a batch of (class, weight) rows: one host read of the targets per batch.</summary>
    private static Tensor WeightedLoss(Tensor logits, Tensor target)
    {
        float[] rows = target.ToArray();
        int n = rows.Length / 2;
        var labels = new long[n];
        var weights = new float[n];
        for (int i = 0; i < n; i++)
        {
            labels[i] = (long)rows[2 * i];
            weights[i] = rows[2 * i + 1];
        }
        var labelTensor = Tensor.FromArray(labels, new long[] { n }, logits.Device);
        var weightTensor = Tensor.FromArray(weights, new long[] { n }, logits.Device);
        return Losses.SparseCategoricalCrossEntropy(logits, labelTensor, weightTensor);
    }

    /// <summary>A class-index dataset whose targets become (class, weight) pairs.</summary>
    private sealed class WeightedSamples(Dataset source, double[] weights) : Dataset
    {
        public override int Count => source.Count;
        public override long[] FeatureShape => source.FeatureShape;
        public override long[] TargetShape { get; } = { 2 };

        public override void Get(int index, Span<float> features, Span<float> target)
        {
            target[0] = Ensemble.Label(source, index, features);
            target[1] = (float)weights[index];
        }
    }
}

/// <summary>
/// What <see cref="Bagging"/> and <see cref="Boosting"/> share: the members (sub-modules "members.0", ...), the
/// combination of their outputs in <see cref="Forward"/>, the reports and hooks, and the training of one member.
/// Forward returns log-probabilities [N, K] (floored at 1e-12 before the log, so always finite) or, for boosting,
/// scikit-learn's decision scaled by 1/(K-1): either way logits whose softmax is the ensemble's predict_proba and
/// whose arg-max is its prediction, so "sparse_categorical_crossentropy" and "accuracy" evaluate it. The ensemble is
/// not differentiable.
/// </summary>
public abstract class Ensemble : Module
{
    private protected readonly List<Module> members = new();
    private protected readonly List<EnsembleMemberReport> reports = new();
    private protected readonly MemberTrainer? memberTrainer;

    private protected Ensemble(MemberTrainer? memberTrainer, int classes)
    {
        this.memberTrainer = memberTrainer;
        Classes = classes;
    }

    /// <summary>The trained members, in order (all on the first device given to Fit).</summary>
    public IReadOnlyList<Module> Members => members;

    /// <summary>Number of classes K (the width of a member's output); 0 before Fit.</summary>
    public int Classes { get; private protected set; }

    /// <summary>One report per member kept, in order (empty for a loaded ensemble).</summary>
    public IReadOnlyList<EnsembleMemberReport> Reports => reports;

    /// <summary>Before each member trains: attach hooks to its <see cref="Trainer"/> here. When Bagging trains on
    /// several devices at once, it is raised from each device's task.</summary>
    public event Action<MemberTraining>? MemberStarting;

    /// <summary>After each member is trained and measured (raised on the thread that called Fit, in member order).</summary>
    public event Action<EnsembleMemberReport>? MemberTrained;

    /// <summary>Batch size of the ensemble's own passes over data (the members' predictions during Fit).</summary>
    public int PredictBatchSize { get; set; } = 512;

    /// <summary>The ensemble's probabilities [N, K] for a batch, in float64, on the host.</summary>
    private protected abstract double[] Combine(IReadOnlyList<double[]> memberLogits, int rows);

    /// <summary>The transform from the combined values to the logits Forward returns.</summary>
    private protected virtual float OutputLogit(double combined) => (float)Math.Log(Math.Max(combined, 1e-12));

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        var combined = CombinedOutputs(input);
        int rows = checked((int)input.ShapeArray[0]);
        var output = new float[combined.Length];
        for (int i = 0; i < output.Length; i++) output[i] = OutputLogit(combined[i]);
        return Tensor.FromArray(output, new long[] { rows, Classes }, input.Device);
    }

    /// <summary>The combination of every member's output for a batch, in float64 ([N, K] row-major).</summary>
    private protected double[] CombinedOutputs(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (members.Count == 0) throw new InvalidOperationException($"this {GetType().Name} has no members: call Fit first (or load a trained one)");
        if (input.Rank == 0) throw new ShapeMismatchException("an ensemble's input needs a batch dimension; got a rank-0 tensor");
        int rows = checked((int)input.ShapeArray[0]);
        var logits = new List<double[]>(members.Count);
        for (int m = 0; m < members.Count; m++) logits.Add(MemberLogits(m, input, rows));
        return Combine(logits, rows);
    }

    /// <summary>Member <paramref name="m"/>'s logits for a batch, read to the host and checked: a NaN or infinite
    /// output is an <see cref="ArithmeticException"/> naming the member and the row.</summary>
    private double[] MemberLogits(int m, Tensor input, int rows)
    {
        var member = members[m];
        var device = MemberDevice(member, input.Device);
        using (Tensor.NoGrad())
        {
            var x = ReferenceEquals(device, input.Device) ? input : input.To(device);
            try
            {
                using var y = member.Forward(x);
                return CheckedOutputs(y, m, rows, Classes, "its output");
            }
            finally
            {
                if (!ReferenceEquals(x, input)) x.Dispose();
            }
        }
    }

    private static Device MemberDevice(Module member, Device fallback) => member.NamedState().Select(p => p.Tensor.Device).FirstOrDefault() ?? fallback;

    /// <summary>A member's output [rows, K] as float64, refused when it has another shape or a value that is not finite.</summary>
    private static double[] CheckedOutputs(Tensor y, int member, int rows, int classes, string what)
    {
        if (y.Rank != 2 || y.ShapeArray[0] != rows || (classes > 0 && y.ShapeArray[1] != classes))
            throw new ShapeMismatchException($"ensemble member {member + 1}: {what} is {Tensor.FormatShape(y.ShapeArray)}; expected logits [{rows}, {(classes > 0 ? classes : "K")}]");
        var values = y.ToArray();
        var result = new double[values.Length];
        int k = (int)y.ShapeArray[1];
        for (int i = 0; i < values.Length; i++)
        {
            if (!float.IsFinite(values[i]))
                throw new ArithmeticException($"ensemble member {member + 1}: {what} is {values[i]} for sample {i / k} (class {i % k}); a member must give finite logits (check its training: learning rate, data)");
            result[i] = values[i];
        }
        return result;
    }

    /// <summary>Member <paramref name="m"/>'s logits for every sample of <paramref name="data"/> (rows x K, float64).</summary>
    private protected double[] MemberLogits(Module member, int m, Dataset data, Device device)
    {
        bool wasTraining = member.Training;
        member.Eval();
        var result = new double[checked(data.Count * Math.Max(Classes, 1))];
        int offset = 0;
        try
        {
            using (Tensor.NoGrad())
                foreach (var batch in new DataLoader(data, PredictBatchSize, shuffle: false, device: device).Batches())
                {
                    using (batch)
                    using (var scope = new DisposeScope())
                    {
                        var y = member.Forward(batch.Inputs);
                        if (Classes == 0 && y.Rank == 2) { Classes = (int)y.ShapeArray[1]; result = new double[checked(data.Count * Classes)]; }
                        var values = CheckedOutputs(y, m, batch.Size, Classes, "its output on the training data");
                        values.CopyTo(result, offset);
                        offset += values.Length;
                    }
                }
        }
        finally
        {
            member.Train(wasTraining);
        }
        return result;
    }

    /// <summary>Builds and trains one member on <paramref name="device"/> and measures it on
    /// <paramref name="validation"/>; disposes it on failure.</summary>
    private protected (Module Member, EnsembleMemberReport Report) TrainMember(int index, Dataset data, double[]? weights, Device device, int seed, Dataset? validation)
    {
        var trainer = MemberTrainerOrThrow;
        var hooks = new Trainer();
        MemberStarting?.Invoke(new MemberTraining(index, device, seed, hooks));
        var member = trainer.Create(device, seed);
        try
        {
            var watch = Stopwatch.StartNew();
            trainer.Train(member, data, weights, device, seed, hooks);
            double seconds = watch.Elapsed.TotalSeconds;
            var metrics = new Dictionary<string, double>();
            if (validation is not null)
            {
                var accuracy = new Accuracy();
                metrics["loss"] = new Trainer().Test(member, Losses.SparseCategoricalCrossEntropy, new DataLoader(validation, PredictBatchSize, shuffle: false, device: device),
                                                     new Metric[] { accuracy }, $"validation data of ensemble member {index + 1}");
                metrics[accuracy.Name] = accuracy.Result();
            }
            return (member, new EnsembleMemberReport(index, device.Name, seed, seconds, data.Count, null, null, metrics));
        }
        catch
        {
            member.Dispose();
            throw;
        }
    }

    private MemberTrainer MemberTrainerOrThrow => memberTrainer ??
        throw new InvalidOperationException($"this {GetType().Name} was loaded from a file: it predicts, but has no member trainer to fit with; build a new one to train");

    /// <summary>A member trained on another device, rebuilt on <paramref name="target"/> with its weights copied
    /// (the trained one is disposed); the member itself when it is already there or has no state.</summary>
    private protected Module MoveTo(Module member, int seed, Device target)
    {
        var state = member.NamedState().ToList();
        if (state.Count == 0 || ReferenceEquals(state[0].Tensor.Device, target)) return member;
        var moved = MemberTrainerOrThrow.Create(target, seed);
        try
        {
            var into = moved.NamedState().ToList();
            if (into.Count != state.Count)
                throw new InvalidOperationException($"the member trainer built a member with {into.Count} tensors on {target.Name} but {state.Count} on {state[0].Tensor.Device.Name}: Create must give the same network for the same seed");
            for (int i = 0; i < state.Count; i++)
            {
                var (name, from) = state[i];
                var to = into[i].Tensor;
                if (into[i].Name != name || !from.ShapeArray.AsSpan().SequenceEqual(to.ShapeArray) || from.Dtype != to.Dtype)
                    throw new InvalidOperationException($"the member trainer built different networks on {state[0].Tensor.Device.Name} and {target.Name} ('{name}' vs '{into[i].Name}'): Create must give the same network for the same seed");
                if (from.Count > 0) to.RawBuffer.CopyFrom(from.RawBuffer, 0, 0, Tensor.ElementSize(from.Dtype) * from.Count);
            }
        }
        catch
        {
            moved.Dispose();
            throw;
        }
        member.Dispose();
        return moved;
    }

    /// <summary>Adds a trained member (registered as "members.i", owned and disposed by the ensemble).</summary>
    private protected void AddMember(Module member, EnsembleMemberReport? report)
    {
        RegisterModule($"members.{members.Count}", member);
        members.Add(member);
        if (report is not null)
        {
            reports.Add(report);
            MemberTrained?.Invoke(report);
        }
    }

    private protected void CheckUntrained()
    {
        if (members.Count > 0) throw new InvalidOperationException($"this {GetType().Name} is trained already ({members.Count} members): build a new one to train again");
    }

    private protected static Device[] CheckDevices(IReadOnlyList<Device>? devices)
    {
        var list = devices is null || devices.Count == 0 ? new[] { Device.Cpu } : devices.ToArray();
        for (int i = 0; i < list.Length; i++)
            if (list[i] is null) throw new ArgumentNullException(nameof(devices), $"device {i} is null");
        return list;
    }

    /// <summary>The class index of every sample of a dataset with one class index per sample (int64 or whole-number float targets).</summary>
    internal static long[] Labels(Dataset data)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (data.TargetSize != 1)
            throw new ArgumentException($"an ensemble classifies: the dataset's targets must be one class index per sample; its target shape is {Tensor.FormatShape(data.TargetShape)}", nameof(data));
        if (data.Count == 0) throw new ArgumentException("the dataset is empty: there is nothing to train on", nameof(data));
        var features = new float[data.FeatureSize];
        var labels = new long[data.Count];
        for (int i = 0; i < labels.Length; i++) labels[i] = Label(data, i, features);
        return labels;
    }

    internal static long Label(Dataset data, int index, Span<float> features)
    {
        if (data.TargetDtype == Dtype.Int64)
        {
            Span<long> one = stackalloc long[1];
            data.Get(index, features, one);
            if (one[0] < 0) throw new ArgumentOutOfRangeException(nameof(data), $"sample {index}'s class index is {one[0]}");
            return one[0];
        }
        Span<float> value = stackalloc float[1];
        data.Get(index, features, value);
        float v = value[0];
        if (!(v == MathF.Floor(v)) || v < 0 || v > 1 << 24)
            throw new ArgumentOutOfRangeException(nameof(data), $"sample {index}'s target {v} is not a class index (a whole number >= 0)");
        return (long)v;
    }

    private protected void CheckLabels(long[] labels)
    {
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] >= Classes)
                throw new ArgumentOutOfRangeException("data", $"sample {i}'s class index {labels[i]} is outside the members' {Classes} outputs");
    }

    /// <summary>Index of the largest of row <paramref name="row"/>'s K values (the first on a tie, as NumPy's argmax).</summary>
    private protected static int ArgMax(ReadOnlySpan<double> values, int row, int classes)
    {
        int best = 0;
        for (int c = 1; c < classes; c++) if (values[row * classes + c] > values[row * classes + best]) best = c;
        return best;
    }

    /// <summary>Softmax of each row of logits, in float64.</summary>
    private protected static double[] Softmax(double[] logits, int classes)
    {
        var p = new double[logits.Length];
        for (int r = 0; r < logits.Length / classes; r++)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (int c = 0; c < classes; c++) max = Math.Max(max, logits[r * classes + c]);
            for (int c = 0; c < classes; c++) sum += p[r * classes + c] = Math.Exp(logits[r * classes + c] - max);
            for (int c = 0; c < classes; c++) p[r * classes + c] /= sum;
        }
        return p;
    }
}

/// <summary>
/// Bagging (Breiman 1996): <c>members</c> members, each trained by the <see cref="MemberTrainer"/> on its own sample of
/// the data, drawn with its own randomness: a bootstrap (N draws with replacement, the default) or a
/// <c>fraction</c> of N, with or without replacement. Member m gets seed <c>seed + m</c>; all samples are drawn
/// from one generator seeded with <c>seed</c> before any member trains, so the ensemble does not depend on the
/// order members train in. Prediction: the mean of the members' probabilities, or a majority vote. With a
/// bootstrap, <see cref="OutOfBagAccuracy"/> is the accuracy of each sample's prediction by the members that did
/// not see it (over the samples some member left out).
/// <code>
/// var bag = new Bagging(new NetworkMemberTrainer((d, s) => Mlp(d, s), m => new Adam(m.Parameters())), members: 5);
/// bag.Fit(train, new[] { Device.Cpu, Device.Get("opencl:0") });   // members on both devices at once
/// </code>
/// </summary>
public sealed class Bagging : Ensemble
{
    private readonly List<int[]> samples = new();

    /// <summary>An untrained bag; see the class summary.</summary>
    public Bagging(MemberTrainer memberTrainer, int members, double fraction = 1.0, bool replacement = true,
                   EnsembleVote vote = EnsembleVote.AverageProbabilities, int seed = 0)
        : base(memberTrainer ?? throw new ArgumentNullException(nameof(memberTrainer)), 0)
    {
        if (members <= 0) throw new ArgumentOutOfRangeException(nameof(members), $"a bag needs at least one member; got members = {members}");
        if (!(fraction > 0 && fraction <= 1))
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction, $"fraction = {fraction} must be in (0, 1]: the share of the N samples each member draws");
        if (!Enum.IsDefined(vote)) throw new ArgumentOutOfRangeException(nameof(vote), $"unknown vote {(int)vote}");
        MemberCount = members;
        Fraction = fraction;
        Replacement = replacement;
        Vote = vote;
        Seed = seed;
    }

    /// <summary>A trained bag from its parts (what <see cref="ModelFile"/> loads).</summary>
    internal Bagging(IReadOnlyList<Module> trained, int classes, EnsembleVote vote, double? outOfBagAccuracy) : base(null, classes)
    {
        MemberCount = trained.Count;
        Vote = vote;
        OutOfBagAccuracy = outOfBagAccuracy;
        foreach (var m in trained) AddMember(m, null);
    }

    /// <summary>Members to train.</summary>
    public int MemberCount { get; }
    /// <summary>Share of the N samples each member draws.</summary>
    public double Fraction { get; } = 1;
    /// <summary>Whether samples are drawn with replacement (a bootstrap when <see cref="Fraction"/> is 1).</summary>
    public bool Replacement { get; } = true;
    /// <summary>How the members' outputs are combined.</summary>
    public EnsembleVote Vote { get; }
    /// <summary>Seed of the draws; member m's seed is Seed + m.</summary>
    public int Seed { get; }
    /// <summary>Out-of-bag accuracy after Fit with replacement (null otherwise, or when no sample was left out).</summary>
    public double? OutOfBagAccuracy { get; private set; }
    /// <summary>Samples that at least one member left out (the denominator of <see cref="OutOfBagAccuracy"/>).</summary>
    public int OutOfBagSamples { get; private set; }
    /// <summary>The indices each member was trained on (repeats included), in member order.</summary>
    public IReadOnlyList<int[]> MemberSamples => samples;

    /// <summary>
    /// Trains the members. Member m trains on devices[m % D] (default: the CPU); with <paramref name="parallel"/>
    /// and several distinct devices, each device trains its members in its own task, at the same time as the others
    /// (a device listed twice still runs one member at a time). The
    /// result is the same as training one after another with the same devices: each member's sample and seed are
    /// fixed before. Afterwards every member lives on devices[0]. <paramref name="validation"/>: each member's loss
    /// and accuracy on it go to its report.
    /// </summary>
    public Bagging Fit(Dataset data, IReadOnlyList<Device>? devices = null, bool parallel = true, Dataset? validation = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        CheckUntrained();
        var deviceList = CheckDevices(devices);
        var labels = Labels(data);
        int n = data.Count, draws = (int)Math.Round(Fraction * n);
        if (draws == 0) throw new ArgumentException($"fraction = {Fraction} of {n} samples draws no sample", nameof(data));

        // Every member's sample is drawn first, from one generator: the ensemble does not depend on the order of training.
        var rng = new Random(Seed);
        var drawn = new int[MemberCount][];
        for (int m = 0; m < MemberCount; m++) drawn[m] = Draw(rng, n, draws, Replacement);

        var trained = new (Module Member, EnsembleMemberReport Report)?[MemberCount];
        // One task per distinct device (a device listed twice gets its members one after another: a device
        // runs one member at a time), each training its members in order.
        var distinct = deviceList.Distinct().ToArray();
        void TrainOn(Device device)
        {
            for (int m = 0; m < MemberCount; m++)
                if (ReferenceEquals(deviceList[m % deviceList.Length], device))
                    trained[m] = TrainMember(m, data.Subset(drawn[m]), null, device, Seed + m, validation);
        }
        try
        {
            if (parallel && distinct.Length > 1)
            {
                var tasks = distinct.Select(d => Task.Run(() => TrainOn(d))).ToArray();
                try { Task.WaitAll(tasks); }
                catch (AggregateException e) { ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw(); }
            }
            else
            {
                foreach (var d in distinct) TrainOn(d);
            }
            for (int m = 0; m < MemberCount; m++)
            {
                var (member, report) = trained[m]!.Value;
                trained[m] = null;
                AddMember(MoveTo(member, Seed + m, deviceList[0]), report);
                samples.Add(drawn[m]);
            }
            // K: the width of a member's output (one sample is enough).
            MemberLogits(members[0], 0, data.Subset(new[] { 0 }), deviceList[0]);
            CheckLabels(labels);
        }
        catch
        {
            foreach (var t in trained) t?.Member.Dispose();
            throw;
        }
        if (Replacement) ComputeOutOfBag(data, labels, deviceList[0]);
        return this;
    }

    /// <summary><paramref name="count"/> indices in [0, n): uniform draws with replacement, or the first of a shuffle without.</summary>
    private static int[] Draw(Random rng, int n, int count, bool replacement)
    {
        if (replacement)
        {
            var result = new int[count];
            for (int i = 0; i < count; i++) result[i] = rng.Next(n);
            return result;
        }
        var order = Enumerable.Range(0, n).ToArray();
        rng.Shuffle(order);
        return order[..count];
    }

    /// <summary>Each sample's prediction by the members that did not draw it, combined as the ensemble combines.</summary>
    private void ComputeOutOfBag(Dataset data, long[] labels, Device device)
    {
        int n = data.Count, k = Classes;
        var sums = new double[n * k];
        var voters = new int[n];
        for (int m = 0; m < members.Count; m++)
        {
            var inBag = new bool[n];
            foreach (var i in samples[m]) inBag[i] = true;
            var outOfBag = Enumerable.Range(0, n).Where(i => !inBag[i]).ToArray();
            if (outOfBag.Length == 0) continue;
            var logits = MemberLogits(members[m], m, data.Subset(outOfBag), device);
            var contribution = MemberContribution(logits, outOfBag.Length);
            for (int j = 0; j < outOfBag.Length; j++)
            {
                voters[outOfBag[j]]++;
                for (int c = 0; c < k; c++) sums[outOfBag[j] * k + c] += contribution[j * k + c];
            }
        }
        int counted = 0, correct = 0;
        for (int i = 0; i < n; i++)
        {
            if (voters[i] == 0) continue;
            counted++;
            if (ArgMax(sums, i, k) == labels[i]) correct++;
        }
        OutOfBagSamples = counted;
        OutOfBagAccuracy = counted == 0 ? null : (double)correct / counted;
    }

    /// <summary>A member's part of the combination for each row: its probabilities, or a one-hot vote.</summary>
    private double[] MemberContribution(double[] logits, int rows)
    {
        if (Vote == EnsembleVote.AverageProbabilities) return Softmax(logits, Classes);
        var vote = new double[logits.Length];
        for (int r = 0; r < rows; r++) vote[r * Classes + ArgMax(logits, r, Classes)] = 1;
        return vote;
    }

    private protected override double[] Combine(IReadOnlyList<double[]> memberLogits, int rows)
    {
        var sum = new double[rows * Classes];
        foreach (var logits in memberLogits)
        {
            var part = MemberContribution(logits, rows);
            for (int i = 0; i < sum.Length; i++) sum[i] += part[i];
        }
        for (int i = 0; i < sum.Length; i++) sum[i] /= memberLogits.Count;
        return sum;
    }
}

/// <summary>
/// Multi-class AdaBoost (SAMME, or SAMME.R where members give probabilities), as scikit-learn 1.2's
/// AdaBoostClassifier computes it: sample weights start at 1/N; member m (seed <c>seed + m</c>, on
/// devices[m % D]) trains on them (a per-sample weighted loss, or weighted resampling); its weighted error e gives
/// its weight alpha = learningRate (ln((1 - e)/e) + ln(K - 1)) (SAMME), and the weights of the samples it got wrong
/// grow by e^alpha before they are normalised again. A member with e = 0 is kept with weight 1 and ends boosting; a
/// SAMME member with e &gt;= 1 - 1/K (no better than chance) is dropped and ends it (the first member: an
/// <see cref="InvalidOperationException"/>). Prediction: the weighted vote. Members depend on the weights left by
/// the previous one, so they train one after another, on the devices in turn.
/// </summary>
public sealed class Boosting : Ensemble
{
    private readonly List<double> memberWeights = new(), memberErrors = new();

    /// <summary>An untrained booster of at most <paramref name="maxMembers"/> members; see the class summary.</summary>
    public Boosting(MemberTrainer memberTrainer, int maxMembers, BoostingAlgorithm algorithm = BoostingAlgorithm.Samme, double learningRate = 1.0,
                    BoostingSampling sampling = BoostingSampling.Auto, int seed = 0)
        : base(memberTrainer ?? throw new ArgumentNullException(nameof(memberTrainer)), 0)
    {
        if (maxMembers <= 0) throw new ArgumentOutOfRangeException(nameof(maxMembers), $"boosting needs at least one member; got maxMembers = {maxMembers}");
        if (!(learningRate > 0 && double.IsFinite(learningRate))) throw new ArgumentOutOfRangeException(nameof(learningRate), $"learning rate {learningRate} must be positive and finite");
        if (!Enum.IsDefined(algorithm)) throw new ArgumentOutOfRangeException(nameof(algorithm), $"unknown algorithm {(int)algorithm}");
        if (!Enum.IsDefined(sampling)) throw new ArgumentOutOfRangeException(nameof(sampling), $"unknown sampling {(int)sampling}");
        if (sampling == BoostingSampling.WeightedLoss && !memberTrainer.SupportsSampleWeights)
            throw new ArgumentException($"{memberTrainer.GetType().Name} does not support sample weights (SupportsSampleWeights is false): use Resampling or Auto", nameof(sampling));
        MaxMembers = maxMembers;
        Algorithm = algorithm;
        LearningRate = learningRate;
        Sampling = sampling;
        Seed = seed;
    }

    /// <summary>A trained booster from its parts (what <see cref="ModelFile"/> loads).</summary>
    internal Boosting(IReadOnlyList<Module> trained, int classes, BoostingAlgorithm algorithm, IReadOnlyList<double> weights, IReadOnlyList<double> errors)
        : base(null, classes)
    {
        MaxMembers = trained.Count;
        Algorithm = algorithm;
        memberWeights.AddRange(weights);
        memberErrors.AddRange(errors);
        foreach (var m in trained) AddMember(m, null);
    }

    /// <summary>Members to train at most.</summary>
    public int MaxMembers { get; }
    /// <summary>SAMME or SAMME.R.</summary>
    public BoostingAlgorithm Algorithm { get; }
    /// <summary>Shrinks each member's weight (SAMME) or update (SAMME.R).</summary>
    public double LearningRate { get; } = 1;
    /// <summary>How members see the sample weights.</summary>
    public BoostingSampling Sampling { get; }
    /// <summary>Member m's seed is Seed + m; the resampling draws come from a generator seeded with Seed.</summary>
    public int Seed { get; }
    /// <summary>Each kept member's weight in the vote (1 for SAMME.R members and for a perfect member).</summary>
    public IReadOnlyList<double> MemberWeights => memberWeights;
    /// <summary>Each kept member's weighted training error.</summary>
    public IReadOnlyList<double> MemberErrors => memberErrors;
    /// <summary>Why Fit stopped.</summary>
    public BoostingStop StoppedBecause { get; private set; }

    /// <summary>Trains members one after another, member m on devices[m % D] (default: the CPU); afterwards all live on
    /// devices[0]. <paramref name="validation"/>: each member's own loss and accuracy on it go to its report.</summary>
    public Boosting Fit(Dataset data, IReadOnlyList<Device>? devices = null, Dataset? validation = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        CheckUntrained();
        var deviceList = CheckDevices(devices);
        var labels = Labels(data);
        int n = data.Count;
        bool weightedLoss = Sampling == BoostingSampling.WeightedLoss || Sampling == BoostingSampling.Auto && memberTrainer!.PreferredSampling == BoostingSampling.WeightedLoss;
        var rng = new Random(Seed);
        var weights = new double[n];
        Array.Fill(weights, 1.0 / n);
        StoppedBecause = BoostingStop.MaxMembers;
        for (int m = 0; m < MaxMembers; m++)
        {
            var device = deviceList[m % deviceList.Length];
            int seed = Seed + m;
            Dataset sample = data;
            double[]? given = null;
            if (weightedLoss) given = weights.Select(w => w * n).ToArray();   // mean 1: the loss keeps its unweighted scale
            else sample = data.Subset(WeightedDraw(rng, weights, n));
            var (member, report) = TrainMember(m, sample, given, device, seed, validation);
            BoostStep step;
            try
            {
                var logits = MemberLogits(member, m, data, device);
                CheckLabels(labels);
                bool last = m == MaxMembers - 1;
                step = Algorithm == BoostingAlgorithm.Samme
                    ? SammeStep(weights, Predictions(logits, n, Classes), labels, Classes, LearningRate, last)
                    : SammeRStep(weights, Softmax(logits, Classes), labels, Classes, LearningRate, last);
                if (step.Outcome == BoostOutcome.NoBetterThanChance)
                {
                    if (members.Count == 0)
                        throw new InvalidOperationException($"boosting: the first member's weighted error {step.Error:G6} is at least 1 - 1/K = {1 - 1.0 / Classes:G6}, no better than chance: the ensemble cannot be fit (a stronger member, or check the data)");
                    member.Dispose();
                    StoppedBecause = BoostingStop.NoBetterThanChance;
                    break;
                }
                member = MoveTo(member, seed, deviceList[0]);
            }
            catch
            {
                member.Dispose();
                throw;
            }
            memberWeights.Add(step.MemberWeight);
            memberErrors.Add(step.Error);
            AddMember(member, report with { Error = step.Error, Weight = step.MemberWeight });
            if (step.Outcome == BoostOutcome.Perfect) { StoppedBecause = BoostingStop.PerfectMember; break; }
            if (step.SampleWeights is null) { StoppedBecause = BoostingStop.WeightsVanished; break; }
            weights = step.SampleWeights;
        }
        return this;
    }

    private static int[] Predictions(double[] logits, int rows, int classes)
    {
        var p = new int[rows];
        for (int r = 0; r < rows; r++) p[r] = ArgMax(logits, r, classes);
        return p;
    }

    /// <summary>n indices drawn with replacement, index i with probability weights[i] (weights sum to 1).</summary>
    private static int[] WeightedDraw(Random rng, double[] weights, int n)
    {
        var cumulative = new double[weights.Length];
        double total = 0;
        for (int i = 0; i < weights.Length; i++) cumulative[i] = total += weights[i];
        var result = new int[n];
        for (int j = 0; j < n; j++)
        {
            int i = Array.BinarySearch(cumulative, rng.NextDouble() * total);
            result[j] = Math.Min(i < 0 ? ~i : i, weights.Length - 1);
        }
        return result;
    }

    /// <summary>Weighted error: the share of the weight on the samples the member got wrong.</summary>
    private static double WeightedError(ReadOnlySpan<double> weights, Func<int, bool> incorrect)
    {
        double wrong = 0, total = 0;
        for (int i = 0; i < weights.Length; i++)
        {
            total += weights[i];
            if (incorrect(i)) wrong += weights[i];
        }
        return wrong / total;
    }

    /// <summary>
    /// One discrete SAMME step (scikit-learn 1.2's <c>_boost_discrete</c>): the weighted error e of the
    /// <paramref name="predicted"/> classes against <paramref name="actual"/> under <paramref name="sampleWeights"/>;
    /// e = 0: <see cref="BoostOutcome.Perfect"/>, weight 1; e &gt;= 1 - 1/K: <see cref="BoostOutcome.NoBetterThanChance"/>;
    /// otherwise alpha = learningRate (ln((1 - e)/e) + ln(K - 1)) and, unless <paramref name="last"/>, the weight of
    /// each misclassified sample (with weight &gt; 0) multiplied by e^alpha, then all normalised to sum 1.
    /// </summary>
    public static BoostStep SammeStep(ReadOnlySpan<double> sampleWeights, ReadOnlySpan<int> predicted, ReadOnlySpan<long> actual, int classes, double learningRate, bool last = false)
    {
        CheckStep(sampleWeights, predicted.Length, actual.Length, classes);
        CheckActual(actual, classes);
        var wrong = new bool[actual.Length];
        for (int i = 0; i < wrong.Length; i++) wrong[i] = predicted[i] != actual[i];
        double error = WeightedError(sampleWeights, i => wrong[i]);
        if (error <= 0) return new BoostStep(BoostOutcome.Perfect, 0, 1, sampleWeights.ToArray());
        if (error >= 1 - 1.0 / classes) return new BoostStep(BoostOutcome.NoBetterThanChance, error, 0, null);
        double alpha = learningRate * (Math.Log((1 - error) / error) + Math.Log(classes - 1));
        if (last) return new BoostStep(BoostOutcome.Continue, error, alpha, sampleWeights.ToArray());
        var next = new double[sampleWeights.Length];
        // exp(log w + alpha): scikit-learn's form, so that the weights agree with it to the last bit as far as possible.
        for (int i = 0; i < next.Length; i++)
            next[i] = wrong[i] && sampleWeights[i] > 0 ? Math.Exp(Math.Log(sampleWeights[i]) + alpha) : sampleWeights[i];
        return new BoostStep(BoostOutcome.Continue, error, alpha, Normalised(next));
    }

    /// <summary>
    /// One SAMME.R step (scikit-learn 1.2's <c>_boost_real</c>): <paramref name="probabilities"/> [N, K] (rows sum to 1)
    /// are clipped below at 2^-52; the error of their arg-max is reported (e = 0: <see cref="BoostOutcome.Perfect"/>); each
    /// sample's weight is multiplied by exp(-learningRate (K-1)/K sum_k y_k ln p_k), with y_k = 1 for the true class and
    /// -1/(K-1) otherwise, then all normalised. The member's weight in the vote is 1.
    /// </summary>
    public static BoostStep SammeRStep(ReadOnlySpan<double> sampleWeights, ReadOnlySpan<double> probabilities, ReadOnlySpan<long> actual, int classes, double learningRate, bool last = false)
    {
        CheckStep(sampleWeights, probabilities.Length / Math.Max(classes, 1), actual.Length, classes);
        if (probabilities.Length != actual.Length * classes)
            throw new ShapeMismatchException($"SAMME.R: {probabilities.Length} probabilities for {actual.Length} samples of {classes} classes");
        CheckActual(actual, classes);
        var p = probabilities.ToArray();
        var wrong = new bool[actual.Length];
        for (int i = 0; i < wrong.Length; i++) wrong[i] = ArgMax(p, i, classes) != actual[i];
        double error = WeightedError(sampleWeights, i => wrong[i]);
        if (error <= 0) return new BoostStep(BoostOutcome.Perfect, 0, 1, sampleWeights.ToArray());
        if (last) return new BoostStep(BoostOutcome.Continue, error, 1, sampleWeights.ToArray());
        var next = new double[sampleWeights.Length];
        for (int i = 0; i < next.Length; i++)
        {
            double s = 0;
            for (int c = 0; c < classes; c++)
            {
                double y = c == actual[i] ? 1 : -1.0 / (classes - 1);
                s += y * Math.Log(Math.Max(p[i * classes + c], Eps));
            }
            double exponent = -learningRate * (classes - 1.0) / classes * s;
            next[i] = sampleWeights[i] > 0 || exponent < 0 ? sampleWeights[i] * Math.Exp(exponent) : sampleWeights[i];
        }
        return new BoostStep(BoostOutcome.Continue, error, 1, Normalised(next));
    }

    /// <summary>NumPy's float64 machine epsilon, scikit-learn's floor on SAMME.R probabilities.</summary>
    private const double Eps = 2.220446049250313e-16;

    private static void CheckStep(ReadOnlySpan<double> weights, int predictions, int labels, int classes)
    {
        if (classes < 2) throw new ArgumentOutOfRangeException(nameof(classes), $"boosting needs at least 2 classes; got {classes}");
        if (weights.Length != labels || predictions != labels)
            throw new ShapeMismatchException($"boosting step: {weights.Length} sample weights, {predictions} predictions and {labels} labels must agree");
        for (int i = 0; i < weights.Length; i++)
            if (!(weights[i] >= 0 && double.IsFinite(weights[i])))
                throw new ArgumentOutOfRangeException(nameof(weights), $"sample weight {weights[i]} at index {i} is not a finite number >= 0");
    }

    private static void CheckActual(ReadOnlySpan<long> actual, int classes)
    {
        for (int i = 0; i < actual.Length; i++)
            if (actual[i] < 0 || actual[i] >= classes)
                throw new ArgumentOutOfRangeException(nameof(actual), $"label {actual[i]} at index {i} is outside [0, {classes})");
    }

    /// <summary>The weights divided by their sum; null when the sum is 0 or not finite (boosting stops).</summary>
    private static double[]? Normalised(double[] weights)
    {
        double sum = 0;
        foreach (var w in weights) sum += w;
        if (!(sum > 0 && double.IsFinite(sum))) return null;
        for (int i = 0; i < weights.Length; i++) weights[i] /= sum;
        return weights;
    }

    /// <summary>scikit-learn's decision function: SAMME, sum_m alpha_m [member m predicts k] / sum_m alpha_m;
    /// SAMME.R, the mean over members of (K-1)(ln p_k - mean_j ln p_j). Returned as probabilities' logits after
    /// the division by K-1 that predict_proba applies (<see cref="OutputLogit"/>).</summary>
    private protected override double[] Combine(IReadOnlyList<double[]> memberLogits, int rows)
    {
        int k = Classes;
        var decision = new double[rows * k];
        double weightSum = 0;
        for (int m = 0; m < memberLogits.Count; m++)
        {
            if (Algorithm == BoostingAlgorithm.Samme)
            {
                double alpha = memberWeights[m];
                weightSum += alpha;
                for (int r = 0; r < rows; r++) decision[r * k + ArgMax(memberLogits[m], r, k)] += alpha;
            }
            else
            {
                weightSum += 1;
                var p = Softmax(memberLogits[m], k);
                for (int r = 0; r < rows; r++)
                {
                    double meanLog = 0;
                    for (int c = 0; c < k; c++) meanLog += Math.Log(Math.Max(p[r * k + c], Eps));
                    meanLog /= k;
                    for (int c = 0; c < k; c++) decision[r * k + c] += (k - 1) * (Math.Log(Math.Max(p[r * k + c], Eps)) - meanLog);
                }
            }
        }
        for (int i = 0; i < decision.Length; i++) decision[i] /= weightSum * (k - 1);
        return decision;
    }

    private protected override float OutputLogit(double combined) => (float)combined;

    /// <summary>scikit-learn's <c>decision_function</c> for a batch (before the 1/(K-1) of predict_proba), as float64:
    /// what the comparison with scikit-learn reads.</summary>
    public double[] DecisionFunction(Tensor input)
    {
        var combined = CombinedOutputs(input);
        for (int i = 0; i < combined.Length; i++) combined[i] *= Classes - 1;
        return combined;
    }
}
