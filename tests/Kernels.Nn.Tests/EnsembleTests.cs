using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// Bagging and Boosting (src/Nn/Training/Ensembles.cs): the AdaBoost updates against float64 formulas written
/// here, SAMME end to end against scikit-learn's AdaBoostClassifier with the same decision stump on both sides,
/// bit-identical ensembles for the same seeds, bad input, model-file round trips, out-of-bag accuracy by hand.
/// </summary>
[TestFixture]
public class EnsembleTests
{
    // ---- The AdaBoost steps against float64 references --------------------------------------------

    [Test]
    public void SammeStepOnFourSamplesGivesTheHandComputedWeights()
    {
        // 4 samples of equal weight, K = 3, one wrong: e = 1/4, alpha = ln(3) + ln(2) = ln 6; the wrong sample's
        // weight becomes 6/4 before normalising by 9/4: 2/3, the others 1/9.
        var step = Boosting.SammeStep(new[] { 0.25, 0.25, 0.25, 0.25 }, new[] { 0, 1, 2, 0 }, new long[] { 0, 1, 2, 2 }, classes: 3, learningRate: 1);
        Assert.That(step.Outcome, Is.EqualTo(BoostOutcome.Continue));
        Assert.That(step.Error, Is.EqualTo(0.25));
        Assert.That(step.MemberWeight, Is.EqualTo(Math.Log(6)).Within(1e-15));
        Assert.That(step.SampleWeights, Is.EqualTo(new[] { 1 / 9.0, 1 / 9.0, 1 / 9.0, 2 / 3.0 }).Within(1e-15));
    }

    [Test]
    public void SammeStepMatchesAFloat64ReferenceWithUnequalWeightsAndShrinkage()
    {
        double[] w = { 0.05, 0.1, 0.15, 0.2, 0.1, 0.4 };
        int[] predicted = { 0, 1, 1, 3, 2, 0 };
        long[] actual = { 0, 2, 1, 3, 1, 0 };
        const int k = 4;
        const double lr = 0.5;
        // Reference: e = sum of wrong weights / sum of weights; alpha = lr (ln((1-e)/e) + ln(K-1)); wrong weights times e^alpha.
        double total = w.Sum(), wrong = 0;
        for (int i = 0; i < w.Length; i++) if (predicted[i] != actual[i]) wrong += w[i];
        double e = wrong / total, alpha = lr * (Math.Log((1 - e) / e) + Math.Log(k - 1));
        var next = w.Select((x, i) => predicted[i] != actual[i] ? x * Math.Exp(alpha) : x).ToArray();
        double sum = next.Sum();
        var reference = next.Select(x => x / sum).ToArray();

        var step = Boosting.SammeStep(w, predicted, actual, k, lr);
        Assert.That(step.Error, Is.EqualTo(e).Within(1e-15));
        Assert.That(step.MemberWeight, Is.EqualTo(alpha).Within(1e-14));
        for (int i = 0; i < w.Length; i++) Assert.That(step.SampleWeights![i], Is.EqualTo(reference[i]).Within(1e-15 * reference[i] + 1e-17), $"weight {i}");
        Assert.That(step.SampleWeights!.Sum(), Is.EqualTo(1).Within(1e-15));
        // The last member's step leaves the weights alone (scikit-learn does not update after the last estimator).
        Assert.That(Boosting.SammeStep(w, predicted, actual, k, lr, last: true).SampleWeights, Is.EqualTo(w));
    }

    [Test]
    public void SammeStepKeepsAPerfectMemberWithWeightOneAndStops()
    {
        double[] w = { 0.5, 0.3, 0.2 };
        var step = Boosting.SammeStep(w, new[] { 2, 0, 1 }, new long[] { 2, 0, 1 }, classes: 3, learningRate: 1);
        Assert.That(step.Outcome, Is.EqualTo(BoostOutcome.Perfect));
        Assert.That(step.Error, Is.EqualTo(0));
        Assert.That(step.MemberWeight, Is.EqualTo(1));
        Assert.That(step.SampleWeights, Is.EqualTo(w));
    }

    [Test]
    public void SammeStepDropsAMemberAtOrBelowChance()
    {
        // K = 4: chance is an error of 3/4. Exactly 3/4 (exact in binary) is no better than chance...
        var atChance = Boosting.SammeStep(new[] { 1.0, 1, 1, 1 }, new[] { 1, 2, 3, 3 }, new long[] { 0, 1, 2, 3 }, classes: 4, learningRate: 1);
        Assert.That(atChance.Outcome, Is.EqualTo(BoostOutcome.NoBetterThanChance));
        Assert.That(atChance.Error, Is.EqualTo(0.75));
        Assert.That(atChance.SampleWeights, Is.Null);
        // ...and just under it is kept, with a small positive weight: ln(0.26/0.74 * 3) > 0.
        var better = Boosting.SammeStep(new[] { 0.26, 0.25, 0.25, 0.24 }, new[] { 0, 2, 3, 0 }, new long[] { 0, 1, 2, 3 }, classes: 4, learningRate: 1);
        Assert.That(better.Outcome, Is.EqualTo(BoostOutcome.Continue));
        Assert.That(better.MemberWeight, Is.EqualTo(Math.Log(0.26 / 0.74 * 3)).Within(1e-14));
        // K = 2: an error of exactly 1/2 is chance.
        var coin = Boosting.SammeStep(new[] { 0.5, 0.5 }, new[] { 0, 0 }, new long[] { 0, 1 }, classes: 2, learningRate: 1);
        Assert.That(coin.Outcome, Is.EqualTo(BoostOutcome.NoBetterThanChance));
    }

    [Test]
    public void SammeRStepMatchesAFloat64Reference()
    {
        double[] w = { 0.25, 0.25, 0.5 };
        double[] p = { 0.7, 0.2, 0.1, 0.3, 0.3, 0.4, 0.0, 0.5, 0.5 };   // a zero probability is clipped at 2^-52
        long[] actual = { 0, 1, 2 };
        const int k = 3;
        const double lr = 0.8;
        var reference = new double[3];
        for (int i = 0; i < 3; i++)
        {
            double s = 0;
            for (int c = 0; c < k; c++) s += (c == actual[i] ? 1 : -0.5) * Math.Log(Math.Max(p[i * k + c], Math.Pow(2, -52)));
            reference[i] = w[i] * Math.Exp(-lr * (k - 1.0) / k * s);
        }
        double sum = reference.Sum();
        var step = Boosting.SammeRStep(w, p, actual, k, lr);
        Assert.That(step.Outcome, Is.EqualTo(BoostOutcome.Continue));
        // Arg-maxes 0, 2 (0.4) and 1 (the first of the 0.5s): the last two are wrong, e = 0.75 (SAMME.R goes on).
        Assert.That(step.Error, Is.EqualTo(0.75));
        Assert.That(step.MemberWeight, Is.EqualTo(1));
        for (int i = 0; i < 3; i++) Assert.That(step.SampleWeights![i], Is.EqualTo(reference[i] / sum).Within(1e-15), $"weight {i}");
    }

    [Test]
    public void BoostingStepsRefuseMismatchedOrNegativeInput()
    {
        var shapes = Assert.Throws<ShapeMismatchException>(() => Boosting.SammeStep(new[] { 0.5, 0.5 }, new[] { 0 }, new long[] { 0, 1 }, 2, 1));
        Assert.That(shapes!.Message, Does.Contain("2 sample weights, 1 predictions and 2 labels"));
        var negative = Assert.Throws<ArgumentOutOfRangeException>(() => Boosting.SammeStep(new[] { 0.5, -0.5 }, new[] { 0, 1 }, new long[] { 0, 1 }, 2, 1));
        Assert.That(negative!.Message, Does.Contain("sample weight -0.5 at index 1"));
        var label = Assert.Throws<ArgumentOutOfRangeException>(() => Boosting.SammeStep(new[] { 0.5, 0.5 }, new[] { 0, 1 }, new long[] { 0, 3 }, 2, 1));
        Assert.That(label!.Message, Does.Contain("label 3 at index 1 is outside [0, 2)"));
    }

    // ---- End to end against scikit-learn ----------------------------------------------------------

    /// <summary>80 samples of 3 features in [0, 1), 3 classes by a rule no single stump captures, 10% labels flipped.</summary>
    private static (float[] X, long[] Y) StumpData(int n = 80, int seed = 3)
    {
        var rng = new Random(seed);
        var x = new float[n * 3];
        var y = new long[n];
        for (int i = 0; i < n; i++)
        {
            for (int f = 0; f < 3; f++) x[i * 3 + f] = (float)rng.NextDouble();
            float a = x[i * 3], b = x[i * 3 + 1], c = x[i * 3 + 2];
            y[i] = a + b < 0.8f ? 0 : c > 0.5f ? 1 : 2;
            if (rng.NextDouble() < 0.1) y[i] = (y[i] + 1) % 3;
        }
        return (x, y);
    }

    [Test]
    public void SammeMatchesScikitLearnsAdaBoostWithTheSameStump()
    {
        var (x, y) = StumpData();
        const int k = 3, rounds = 8;
        var booster = new Boosting(new StumpTrainer(k), rounds, BoostingAlgorithm.Samme).Fit(new ArrayDataset(x, new long[] { 3 }, y));
        var result = RunScikitLearn(x, y, k, rounds);

        var weights = result.GetProperty("weights").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var errors = result.GetProperty("errors").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        int fitted = result.GetProperty("fitted").GetInt32();
        Assert.That(booster.Members.Count, Is.EqualTo(fitted), "members kept");
        Assert.That(fitted, Is.GreaterThan(3), "the case should boost several rounds");
        var stumps = result.GetProperty("stumps").EnumerateArray().ToArray();
        for (int m = 0; m < fitted; m++)
        {
            var stump = (Stump)booster.Members[m];
            var s = stumps[m].EnumerateArray().ToArray();
            Assert.That((stump.Feature, stump.Threshold, stump.Left, stump.Right),
                        Is.EqualTo((s[0].GetInt32(), s[1].GetDouble(), s[2].GetInt32(), s[3].GetInt32())), $"stump {m}");
            Assert.That(booster.MemberWeights[m], Is.EqualTo(weights[m]).Within(1e-12 * Math.Abs(weights[m])), $"member weight {m}");
            Assert.That(booster.MemberErrors[m], Is.EqualTo(errors[m]).Within(1e-12), $"member error {m}");
        }
        using var input = Tensor.FromArray(x, new long[] { y.Length, 3 });
        var decision = booster.DecisionFunction(input);
        var reference = result.GetProperty("decision").EnumerateArray().SelectMany(r => r.EnumerateArray().Select(e => e.GetDouble())).ToArray();
        Assert.That(decision, Is.EqualTo(reference).Within(1e-12));
        var predicted = result.GetProperty("predictions").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        using var logits = booster.Forward(input);
        var ours = logits.ToArray();
        for (int i = 0; i < y.Length; i++)
            Assert.That(Enumerable.Range(0, k).MaxBy(c => ours[i * k + c]), Is.EqualTo(predicted[i]), $"prediction {i}");
    }

    /// <summary>The scikit-learn side: AdaBoostClassifier(algorithm="SAMME") over the same stump, written in Python
    /// with the same loops and tie rules as <see cref="StumpTrainer"/>.</summary>
    private static JsonElement RunScikitLearn(float[] x, long[] y, int classes, int rounds)
    {
        const string script = """
import json, sys
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import AdaBoostClassifier

class Stump(BaseEstimator, ClassifierMixin):
    def __init__(self, n_classes=2):
        self.n_classes = n_classes
    def fit(self, X, y, sample_weight=None):
        n, f = X.shape
        w = np.ones(n) if sample_weight is None else sample_weight
        self.classes_ = np.arange(self.n_classes)
        best = None
        for feature in range(f):
            values = sorted(set(float(v) for v in X[:, feature]))
            for a, b in zip(values, values[1:]):
                t = (a + b) / 2
                left = [0.0] * self.n_classes
                right = [0.0] * self.n_classes
                for i in range(n):
                    if float(X[i, feature]) <= t: left[int(y[i])] += float(w[i])
                    else: right[int(y[i])] += float(w[i])
                lc = max(range(self.n_classes), key=lambda c: (left[c], -c))
                rc = max(range(self.n_classes), key=lambda c: (right[c], -c))
                error = 0.0
                for i in range(n):
                    p = lc if float(X[i, feature]) <= t else rc
                    if p != int(y[i]): error += float(w[i])
                if best is None or error < best[0]:
                    best = (error, feature, t, lc, rc)
        _, self.feature_, self.threshold_, self.left_, self.right_ = best
        return self
    def predict(self, X):
        return np.where(X[:, self.feature_].astype(np.float64) <= self.threshold_, self.left_, self.right_)

d = json.load(sys.stdin)
X = np.array(d["x"], dtype=np.float64).reshape(-1, 3)
y = np.array(d["y"])
ada = AdaBoostClassifier(estimator=Stump(d["k"]), n_estimators=d["rounds"], algorithm="SAMME", learning_rate=1.0).fit(X, y)
n = len(ada.estimators_)
print(json.dumps({
    "fitted": n,
    "weights": [float(v) for v in ada.estimator_weights_[:n]],
    "errors": [float(v) for v in ada.estimator_errors_[:n]],
    "stumps": [[int(s.feature_), float(s.threshold_), int(s.left_), int(s.right_)] for s in ada.estimators_],
    "decision": ada.decision_function(X).tolist(),
    "predictions": [int(v) for v in ada.predict(X)],
}))
""";
        const string python = "/usr/bin/python3";
        if (!File.Exists(python)) Assert.Ignore("/usr/bin/python3 is not installed (apt-get install python3-sklearn)");
        var info = new ProcessStartInfo(python, new[] { "-c", script })
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        info.Environment.Remove("LD_PRELOAD");
        info.Environment.Remove("ASAN_OPTIONS");
        using var process = Process.Start(info)!;
        // The float32 features exactly, as float64 text (what NumPy reads back to the same value).
        var input = JsonSerializer.Serialize(new { x = x.Select(v => (double)v).ToArray(), y, k = classes, rounds });
        process.StandardInput.Write(input);
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        if (process.ExitCode != 0 && error.Result.Contains("No module named 'sklearn'"))
            Assert.Ignore("scikit-learn is not installed: apt-get install python3-sklearn (scripts/install-prereqs.sh installs it)");
        Assert.That(process.ExitCode, Is.Zero, $"the scikit-learn script failed: {error.Result}");
        return JsonDocument.Parse(output.Result).RootElement.Clone();
    }

    [Test]
    public void BoostingStopsAtAPerfectMemberAndRefusesAFirstMemberAtChance()
    {
        // Separable on feature 0: the first stump is perfect: kept with weight 1, nothing more trained.
        float[] x = { 0.1f, 0, 0.2f, 0, 0.8f, 0, 0.9f, 0 };
        long[] y = { 0, 0, 1, 1 };
        var data = new ArrayDataset(x, new long[] { 2 }, y);
        var booster = new Boosting(new StumpTrainer(2), 5).Fit(data);
        Assert.That(booster.StoppedBecause, Is.EqualTo(BoostingStop.PerfectMember));
        Assert.That(booster.MemberWeights, Is.EqualTo(new[] { 1.0 }));
        Assert.That(booster.MemberErrors, Is.EqualTo(new[] { 0.0 }));
        // A member that always answers class 0 on balanced classes has error 1/2 = chance for K = 2.
        var coin = new Boosting(new ConstantTrainer(new[] { 1f, 0f }), 3);
        var e = Assert.Throws<InvalidOperationException>(() => coin.Fit(data));
        Assert.That(e!.Message, Does.Contain("first member's weighted error 0.5").And.Contain("no better than chance"));
    }

    // ---- Reproducibility, devices, hooks ----------------------------------------------------------

    /// <summary>300 samples of 4 features, 3 classes (a linear rule): what the tiny MLP members learn.</summary>
    private static ArrayDataset MlpData(int n = 300, int seed = 5)
    {
        var rng = new Random(seed);
        var x = new float[n * 4];
        var y = new long[n];
        for (int i = 0; i < n; i++)
        {
            for (int f = 0; f < 4; f++) x[i * 4 + f] = (float)(rng.NextDouble() * 2 - 1);
            double s = x[i * 4] - 0.5 * x[i * 4 + 1] + 0.3 * x[i * 4 + 2];
            y[i] = s < -0.3 ? 0 : s < 0.3 ? 1 : 2;
        }
        return new ArrayDataset(x, new long[] { 4 }, y);
    }

    private static NetworkMemberTrainer Mlps(int epochs = 2) => new(
        (device, seed) => new Sequential(new Dense(4, 8, seed: seed * 2 + 1, device: device), Activation.Relu(), new Dense(8, 3, seed: seed * 2 + 2, device: device)),
        m => new Adam(m.Parameters(), learningRate: 0.02f), epochs, batchSize: 16);

    private static float[][] State(Module m) => m.NamedState().Select(s => s.Tensor.ToArray()).ToArray();

    [Test]
    public void TheSameSeedsGiveBitIdenticalEnsemblesOnTheCpu()
    {
        var data = MlpData();
        using var input = Tensor.FromArray(Enumerable.Range(0, 40).Select(i => (float)Math.Sin(i)).ToArray(), new long[] { 10, 4 });
        foreach (var make in new Func<Ensemble>[]
        {
            () => new Bagging(Mlps(), 3, seed: 11).Fit(data),
            () => new Bagging(Mlps(), 3, fraction: 0.5, replacement: false, vote: EnsembleVote.Majority, seed: 11).Fit(data),
            () => new Boosting(Mlps(), 3, BoostingAlgorithm.Samme, sampling: BoostingSampling.WeightedLoss, seed: 11).Fit(data),
            () => new Boosting(Mlps(), 3, BoostingAlgorithm.SammeR, sampling: BoostingSampling.Resampling, seed: 11).Fit(data),
        })
        {
            using var a = make();
            using var b = make();
            Assert.That(State(b), Is.EqualTo(State(a)), $"{a.GetType().Name}: parameters");
            using var pa = a.Forward(input);
            using var pb = b.Forward(input);
            Assert.That(pb.ToArray(), Is.EqualTo(pa.ToArray()), $"{a.GetType().Name}: predictions");
            if (a is Boosting ba) Assert.That(((Boosting)b).MemberWeights, Is.EqualTo(ba.MemberWeights));
        }
        // A device listed twice trains its members one at a time, to the same ensemble.
        using var once = new Bagging(Mlps(), 3, seed: 11).Fit(data);
        using var twice = new Bagging(Mlps(), 3, seed: 11).Fit(data, new[] { Device.Cpu, Device.Cpu });
        Assert.That(State(twice), Is.EqualTo(State(once)));
        // And another seed gives another ensemble (the comparison can fail).
        using var c = new Bagging(Mlps(), 3, seed: 11).Fit(data);
        using var d = new Bagging(Mlps(), 3, seed: 12).Fit(data);
        Assert.That(State(d), Is.Not.EqualTo(State(c)));
    }

    [Test]
    public void EnsemblesBeatTheirMembersOrMatchThemOnEasyData()
    {
        // Sanity of the whole path: trained members learn, and the ensemble's accuracy is at least the worst member's.
        var data = MlpData();
        using var bag = new Bagging(Mlps(8), 3, seed: 1).Fit(data, validation: data);
        using var model = new Model(bag);
        model.Compile(new Sgd(bag.Parameters(), 0f), "sparse_categorical_crossentropy", "accuracy");
        double accuracy = model.Evaluate(data)["accuracy"];
        Assert.That(accuracy, Is.GreaterThan(0.8));
        Assert.That(accuracy, Is.GreaterThanOrEqualTo(bag.Reports.Min(r => r.Metrics["accuracy"])));
        // Predict gives the logits whose arg-max Evaluate counted.
        using var predicted = model.Predict(data);
        var p = predicted.ToArray();
        var y = Ensemble.Labels(data);
        int correct = Enumerable.Range(0, y.Length).Count(i => Enumerable.Range(0, 3).MaxBy(c => p[i * 3 + c]) == y[i]);
        Assert.That(accuracy, Is.EqualTo(correct / (double)y.Length));
    }

    [Test]
    public void MembersTrainedInParallelOnTwoDevicesEqualThoseTrainedOneAfterAnother()
    {
        var opencl = TestDevices.Require("opencl:0", DeviceKind.OpenCL, "KERNELS_REQUIRE_OPENCL");
        var data = MlpData(120);
        var devices = new[] { Device.Cpu, opencl };
        var threads = new System.Collections.Concurrent.ConcurrentDictionary<int, string>();
        using var parallel = new Bagging(Mlps(1), 4, seed: 2);
        parallel.MemberStarting += t => threads[t.Index] = t.Device.Name;
        parallel.Fit(data, devices, parallel: true);
        using var sequential = new Bagging(Mlps(1), 4, seed: 2).Fit(data, devices, parallel: false);
        Assert.That(threads.OrderBy(kv => kv.Key).Select(kv => kv.Value), Is.EqualTo(new[] { "cpu", opencl.Name, "cpu", opencl.Name }), "round-robin devices");
        Assert.That(parallel.Reports.Select(r => r.Device), Is.EqualTo(new[] { "cpu", opencl.Name, "cpu", opencl.Name }));
        Assert.That(State(parallel), Is.EqualTo(State(sequential)));
        Assert.That(parallel.Members.SelectMany(m => m.Parameters()).All(p => ReferenceEquals(p.Device, Device.Cpu)), "members end on devices[0]");
    }

    [Test]
    public void HooksAndReportsDescribeEachMember()
    {
        var data = MlpData(100);
        var epochsSeen = new List<(int Member, int Epoch)>();
        var reported = new List<EnsembleMemberReport>();
        using var booster = new Boosting(Mlps(2), 3, seed: 4);
        booster.MemberStarting += t => t.Trainer.OnEpochEnd += s => epochsSeen.Add((t.Index, s.Epoch));
        booster.MemberTrained += reported.Add;
        booster.Fit(data, validation: data);
        int kept = booster.Members.Count;
        Assert.That(reported.Select(r => r.Index), Is.EqualTo(Enumerable.Range(0, kept)));
        Assert.That(epochsSeen.Take(kept * 2), Is.EqualTo(Enumerable.Range(0, kept).SelectMany(m => new[] { (m, 0), (m, 1) })));
        for (int m = 0; m < kept; m++)
        {
            Assert.That(reported[m].Weight, Is.EqualTo(booster.MemberWeights[m]));
            Assert.That(reported[m].Error, Is.EqualTo(booster.MemberErrors[m]));
            Assert.That(reported[m].Metrics["accuracy"], Is.InRange(0.0, 1.0));
            Assert.That(reported[m].Seed, Is.EqualTo(4 + m));
        }
    }

    // ---- Bad input --------------------------------------------------------------------------------

    [Test]
    public void BadArgumentsAndNaNMembersAreRefusedNamingTheProblem()
    {
        var zero = Assert.Throws<ArgumentOutOfRangeException>(() => new Bagging(Mlps(), 0));
        Assert.That(zero!.Message, Does.Contain("at least one member").And.Contain("members = 0"));
        var zeroBoost = Assert.Throws<ArgumentOutOfRangeException>(() => new Boosting(Mlps(), 0));
        Assert.That(zeroBoost!.Message, Does.Contain("maxMembers = 0"));
        foreach (var f in new[] { 0.0, -0.5, 1.5, double.NaN })
        {
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => new Bagging(Mlps(), 2, fraction: f));
            Assert.That(e!.ParamName, Is.EqualTo("fraction"));
            Assert.That(e.Message, Does.Contain("must be in (0, 1]"));
        }
        var tiny = Assert.Throws<ArgumentException>(() => new Bagging(Mlps(), 2, fraction: 0.001, replacement: false).Fit(MlpData(100)));
        Assert.That(tiny!.Message, Does.Contain("draws no sample"));
        var weightsUnsupported = Assert.Throws<ArgumentException>(() => new Boosting(new ConstantTrainer(new[] { 0f, 1f }), 2, sampling: BoostingSampling.WeightedLoss));
        Assert.That(weightsUnsupported!.Message, Does.Contain("does not support sample weights"));
        var regression = Assert.Throws<ArgumentException>(() => new Bagging(Mlps(), 2).Fit(new ArrayDataset(new float[8], new long[] { 4 }, new float[4], new long[] { 2 })));
        Assert.That(regression!.Message, Does.Contain("one class index per sample"));

        // A member whose output is NaN: boosting finds it on the training data, bagging in the out-of-bag pass,
        // and a loaded or trained ensemble in Forward.
        var data = MlpData(50);
        var nanBoost = Assert.Throws<ArithmeticException>(() => new Boosting(new ConstantTrainer(new[] { 0f, float.NaN, 0f }), 2).Fit(data));
        Assert.That(nanBoost!.Message, Does.Contain("ensemble member 1").And.Contain("NaN for sample 0 (class 1)"));
        var nanBag = Assert.Throws<ArithmeticException>(() => new Bagging(new ConstantTrainer(new[] { float.NaN, 0f, 0f }), 2).Fit(data));
        Assert.That(nanBag!.Message, Does.Contain("ensemble member 1").And.Contain("NaN for sample 0 (class 0)"));
        var untrained = Assert.Throws<InvalidOperationException>(() => new Bagging(Mlps(), 2).Forward(Tensor.Zeros(new long[] { 1, 4 }, Dtype.Float32)));
        Assert.That(untrained!.Message, Does.Contain("no members: call Fit first"));
        // The process stays usable: a good ensemble trains after all that.
        using var fine = new Bagging(Mlps(1), 2).Fit(data);
        Assert.That(fine.Members, Has.Count.EqualTo(2));
    }

    [Test]
    public void WeightedCrossEntropyMatchesAFloat64Reference()
    {
        float[] logits = { 1f, -2f, 0.5f, 0f, 3f, -1f, 2f, 2f, 2f, -0.5f, 0.25f, 1.5f };
        long[] labels = { 2, 1, 0, 1 };
        float[] weights = { 0.5f, 2f, 0f, 1.5f };
        double reference = 0;
        for (int i = 0; i < 4; i++)
        {
            double max = Enumerable.Range(0, 3).Max(c => (double)logits[i * 3 + c]);
            double lse = max + Math.Log(Enumerable.Range(0, 3).Sum(c => Math.Exp(logits[i * 3 + c] - max)));
            reference += weights[i] * (lse - logits[i * 3 + labels[i]]);
        }
        reference /= 4;
        using var x = Tensor.FromArray(logits, new long[] { 4, 3 });
        using var y = Tensor.FromArray(labels, new long[] { 4 });
        using var w = Tensor.FromArray(weights, new long[] { 4 });
        using var sparse = Losses.SparseCategoricalCrossEntropy(x, y, w);
        Assert.That(sparse.Item(), Is.EqualTo(reference).Within(1e-6 * reference));
        var oneHot = new float[12];
        for (int i = 0; i < 4; i++) oneHot[i * 3 + labels[i]] = 1;
        using var t = Tensor.FromArray(oneHot, new long[] { 4, 3 });
        using var categorical = Losses.CategoricalCrossEntropy(x, t, w);
        Assert.That(categorical.Item(), Is.EqualTo(reference).Within(1e-6 * reference));
        using var wrong = Tensor.FromArray(new float[3], new long[] { 3 });
        var e = Assert.Throws<ShapeMismatchException>(() => Losses.SparseCategoricalCrossEntropy(x, y, wrong));
        Assert.That(e!.Message, Does.Contain("sample weights [3] for logits [4, 3]"));
    }

    // ---- Files ------------------------------------------------------------------------------------

    [Test]
    public void SavedEnsemblesLoadWithIdenticalPredictions()
    {
        var data = MlpData(120);
        using var input = Tensor.FromArray(Enumerable.Range(0, 80).Select(i => (float)Math.Cos(i * 0.7)).ToArray(), new long[] { 20, 4 });
        var dir = Directory.CreateTempSubdirectory("kernels-ensembles-");
        try
        {
            foreach (var ensemble in new Ensemble[]
            {
                new Bagging(Mlps(1), 3, vote: EnsembleVote.Majority, seed: 3).Fit(data),
                new Boosting(Mlps(1), 3, BoostingAlgorithm.Samme, seed: 3).Fit(data),
                new Boosting(Mlps(1), 2, BoostingAlgorithm.SammeR, seed: 3).Fit(data),
            })
            {
                using (ensemble)
                {
                    var path = Path.Combine(dir.FullName, ensemble.GetType().Name + ".safetensors");
                    ensemble.Save(path);
                    Assert.That(Directory.GetFiles(dir.FullName).Where(f => !f.EndsWith(".safetensors")), Is.Empty, "no temporary file left");
                    using var loaded = Module.Load(path);
                    Assert.That(loaded.GetType(), Is.EqualTo(ensemble.GetType()));
                    var e2 = (Ensemble)loaded;
                    Assert.That(e2.Members.Count, Is.EqualTo(ensemble.Members.Count));
                    Assert.That(e2.Classes, Is.EqualTo(3));
                    if (ensemble is Boosting b) Assert.That(((Boosting)loaded).MemberWeights, Is.EqualTo(b.MemberWeights), "member weights to the bit");
                    if (ensemble is Bagging g) Assert.That(((Bagging)loaded).OutOfBagAccuracy, Is.EqualTo(g.OutOfBagAccuracy));
                    using var before = ensemble.Forward(input);
                    using var after = loaded.Forward(input);
                    Assert.That(after.ToArray(), Is.EqualTo(before.ToArray()), ensemble.GetType().Name);
                    var refit = Assert.Throws<InvalidOperationException>(() => { if (loaded is Bagging x) x.Fit(data); else ((Boosting)loaded).Fit(data); });
                    Assert.That(refit!.Message, Does.Contain("trained already"));
                }
            }
            // A member type the spec does not know (the test's stump) cannot be saved, and nothing is written.
            var stumps = new Boosting(new StumpTrainer(3), 2).Fit(new ArrayDataset(StumpData().X, new long[] { 3 }, StumpData().Y));
            var stumpPath = Path.Combine(dir.FullName, "stumps.safetensors");
            var unknown = Assert.Throws<NotSupportedException>(() => stumps.Save(stumpPath));
            Assert.That(unknown!.Message, Does.Contain("members[0]").And.Contain("Stump"));
            Assert.That(File.Exists(stumpPath), Is.False);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Test]
    public void ABadEnsembleSpecIsRefusedNamingTheFileAndTheField()
    {
        var dir = Directory.CreateTempSubdirectory("kernels-ensembles-");
        try
        {
            using var bag = new Bagging(Mlps(1), 2, seed: 1).Fit(MlpData(60));
            var good = Path.Combine(dir.FullName, "good.safetensors");
            bag.Save(good);
            string spec;
            using (var file = SafeTensors.Read(good)) spec = file.Metadata[ModelFile.SpecKey];
            var cases = new (string Spec, string Expected)[]
            {
                (spec.Replace("\"vote\":\"average\"", "\"vote\":\"median\""), "vote: expected \"average\" or \"majority\""),
                (spec.Replace("\"type\":\"Bagging\",\"classes\":3", "\"type\":\"Boosting\",\"classes\":3,\"algorithm\":\"SAMME\",\"member_weights\":[1],\"member_errors\":[0]"),
                 "1 member weights and 1 member errors for 2 members"),
                ("{\"type\":\"Bagging\",\"classes\":3,\"members\":[]}", "members: an ensemble needs at least one member"),
            };
            foreach (var (bad, expected) in cases)
            {
                Assert.That(bad, Is.Not.EqualTo(spec), "the edit applied");
                var path = Path.Combine(dir.FullName, "bad.safetensors");
                using (var file = SafeTensors.Read(good))
                    SafeTensors.Save(path, file.Tensors.Select(t => (t.Name, file.ReadTensor(t.Name))).ToList(),
                                     new Dictionary<string, string> { ["format"] = "pt", [ModelFile.SpecKey] = bad });
                var e = Assert.Throws<InvalidDataException>(() => Module.Load(path));
                Assert.That(e!.Message, Does.StartWith(path).And.Contain(expected));
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    // ---- Out-of-bag accuracy ----------------------------------------------------------------------

    [Test]
    public void OutOfBagAccuracyMatchesAHandComputation()
    {
        // Members that answer the majority class of their own sample: each out-of-bag prediction is then known
        // from the drawn indices alone, and the test recounts it from them.
        long[] y = { 0, 1, 1, 2, 0, 1, 2, 2 };
        var data = new ArrayDataset(Enumerable.Range(0, y.Length).Select(i => (float)i).ToArray(), new long[] { 1 }, y);
        foreach (var vote in new[] { EnsembleVote.Majority, EnsembleVote.AverageProbabilities })
        {
            using var bag = new Bagging(new MajorityClassTrainer(3), 5, vote: vote, seed: 9).Fit(data);
            var answers = bag.MemberSamples.Select(s => Enumerable.Range(0, 3).MaxBy(c => (s.Count(i => y[i] == c), -c))).ToArray();
            int counted = 0, correct = 0;
            for (int i = 0; i < y.Length; i++)
            {
                var votes = new int[3];
                bool any = false;
                for (int m = 0; m < answers.Length; m++)
                    if (!bag.MemberSamples[m].Contains(i)) { votes[answers[m]]++; any = true; }
                if (!any) continue;
                counted++;
                // Both votes agree here: a member's probabilities are one-hot, so their mean ranks classes as the votes do.
                if (Enumerable.Range(0, 3).MaxBy(c => (votes[c], -c)) == y[i]) correct++;
            }
            Assert.That(counted, Is.GreaterThan(0));
            Assert.That(bag.OutOfBagSamples, Is.EqualTo(counted), vote.ToString());
            Assert.That(bag.OutOfBagAccuracy, Is.EqualTo(correct / (double)counted), vote.ToString());
        }
        using var noReplacement = new Bagging(new MajorityClassTrainer(3), 3, fraction: 0.5, replacement: false).Fit(data);
        Assert.That(noReplacement.OutOfBagAccuracy, Is.Null, "out-of-bag accuracy is for bootstraps only");
        Assert.That(noReplacement.MemberSamples.All(s => s.Length == 4 && s.Distinct().Count() == 4));
    }

    // ---- Members written for the tests ------------------------------------------------------------

    /// <summary>Reads a dataset into host arrays (features, labels).</summary>
    private static (float[] X, long[] Y, int Features) Host(Dataset data)
    {
        int f = (int)data.FeatureSize;
        var x = new float[data.Count * f];
        var y = new long[data.Count];
        Span<long> one = stackalloc long[1];
        for (int i = 0; i < data.Count; i++)
        {
            data.Get(i, x.AsSpan(i * f, f), one);
            y[i] = one[0];
        }
        return (x, y, f);
    }

    /// <summary>A decision stump: class Left where feature &lt;= threshold, else Right; logits one-hot.</summary>
    private sealed class Stump(int classes) : Module
    {
        public int Feature, Left, Right;
        public double Threshold;

        public override Tensor Forward(Tensor input)
        {
            var x = input.ToArray();
            long n = input.ShapeArray[0], f = input.ShapeArray[1];
            var y = new float[n * classes];
            for (long i = 0; i < n; i++) y[i * classes + ((double)x[i * f + Feature] <= Threshold ? Left : Right)] = 1;
            return Tensor.FromArray(y, new[] { n, classes }, input.Device);
        }
    }

    /// <summary>The deterministic weak learner of the scikit-learn comparison: every feature, every midpoint between
    /// consecutive distinct values, the weighted-majority class on each side; the lowest weighted error wins (the
    /// first on a tie), exactly as the Python twin in <see cref="RunScikitLearn"/>.</summary>
    private sealed class StumpTrainer(int classes) : MemberTrainer
    {
        public override bool SupportsSampleWeights => true;
        public override Module Create(Device device, int seed) => new Stump(classes);

        public override void Train(Module member, Dataset data, double[]? sampleWeights, Device device, int seed, Trainer trainer)
        {
            var stump = (Stump)member;
            var (x, y, features) = Host(data);
            int n = y.Length;
            var w = sampleWeights ?? Enumerable.Repeat(1.0, n).ToArray();
            double best = double.PositiveInfinity;
            for (int f = 0; f < features; f++)
            {
                var values = Enumerable.Range(0, n).Select(i => (double)x[i * features + f]).Distinct().Order().ToArray();
                for (int v = 0; v + 1 < values.Length; v++)
                {
                    double t = (values[v] + values[v + 1]) / 2;
                    var left = new double[classes];
                    var right = new double[classes];
                    for (int i = 0; i < n; i++)
                        if (x[i * features + f] <= t) left[y[i]] += w[i]; else right[y[i]] += w[i];
                    int lc = ArgMax(left), rc = ArgMax(right);
                    double error = 0;
                    for (int i = 0; i < n; i++)
                        if ((x[i * features + f] <= t ? lc : rc) != y[i]) error += w[i];
                    if (error < best) (best, stump.Feature, stump.Threshold, stump.Left, stump.Right) = (error, f, t, lc, rc);
                }
            }
        }

        private static int ArgMax(double[] v)
        {
            int b = 0;
            for (int c = 1; c < v.Length; c++) if (v[c] > v[b]) b = c;
            return b;
        }
    }

    /// <summary>A member that answers the same logits for every sample.</summary>
    private sealed class Constant(float[] logits) : Module
    {
        public float[] Logits { get; } = logits;

        public override Tensor Forward(Tensor input)
        {
            long n = input.ShapeArray[0];
            var y = new float[n * Logits.Length];
            for (long i = 0; i < n; i++) Logits.CopyTo(y, i * Logits.Length);
            return Tensor.FromArray(y, new[] { n, (long)Logits.Length }, input.Device);
        }
    }

    private sealed class ConstantTrainer(float[] logits) : MemberTrainer
    {
        public override Module Create(Device device, int seed) => new Constant(logits);
        public override void Train(Module member, Dataset data, double[]? sampleWeights, Device device, int seed, Trainer trainer) { }
    }

    /// <summary>Learns the majority class of its sample (lowest class on a tie) and answers it, one-hot, with logit 30
    /// (so its softmax is one-hot to float precision).</summary>
    private sealed class MajorityClassTrainer(int classes) : MemberTrainer
    {
        public override Module Create(Device device, int seed) => new Constant(new float[classes]);

        public override void Train(Module member, Dataset data, double[]? sampleWeights, Device device, int seed, Trainer trainer)
        {
            var (_, y, _) = Host(data);
            int answer = Enumerable.Range(0, classes).MaxBy(c => (y.Count(v => v == c), -c));
            var logits = new float[classes];
            logits[answer] = 30;
            logits.CopyTo(((Constant)member).Logits, 0);
        }
    }
}
