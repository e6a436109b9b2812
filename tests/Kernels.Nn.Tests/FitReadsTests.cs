using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// Model.Fit without a device read per batch (issue 16): the loss sum and the accuracy stay on the device
/// and are read once per epoch, and what Fit reports is what the per-batch reads gave. The NaN reports
/// move to those reads (Model.CheckFiniteEachStep keeps the per-step check).
/// </summary>
[TestFixture]
public class FitReadsTests
{
    // Three separable blobs in 2-D with int64 class labels (the device path of the loss and the accuracy).
    private static ArrayDataset Blobs(int count, int seed)
    {
        var r = new Random(seed);
        var x = new float[count * 2];
        var y = new long[count];
        for (int i = 0; i < count; i++)
        {
            int c = i % 3;
            double angle = 2 * Math.PI * c / 3;
            x[2 * i] = (float)(2 * Math.Cos(angle) + 0.8 * (r.NextDouble() - 0.5));
            x[2 * i + 1] = (float)(2 * Math.Sin(angle) + 0.8 * (r.NextDouble() - 0.5));
            y[i] = c;
        }
        return new ArrayDataset(x, new long[] { 2 }, y);
    }

    private static Model SmallModel(Device device, out Sequential network)
    {
        network = new Sequential(new Dense(2, 16, seed: 1, device: device), Activation.Relu(), new Dropout(0.1f, seed: 3),
                                 new Dense(16, 3, seed: 2, device: device));
        var model = new Model(network, device);
        model.Compile(new Adam(network.Parameters(), 0.05f), "sparse_categorical_crossentropy", "accuracy");
        return model;
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Fit_reads_the_device_twice_per_epoch_whatever_the_number_of_batches(string name, DeviceKind kind, string require)
    {
        var device = TestDevices.Require(name, kind, require);
        long Reads(int samples)
        {
            using var model = SmallModel(device, out _);
            model.Fit(Blobs(48, 9), epochs: 1, batchSize: 8, verbose: 0);   // warm-up (optimizer state)
            long before = Tensor.HostReads;
            var history = model.Fit(Blobs(samples, 1), epochs: 3, batchSize: 8, verbose: 0);
            Assert.That(history.Epochs, Is.EqualTo(3));
            return Tensor.HostReads - before;
        }
        long few = Reads(4 * 8), many = Reads(40 * 8);
        // Per epoch: the pending losses in one copy, the accuracy's hit count in another.
        Assert.That(few, Is.EqualTo(3 * 2), "3 epochs of 4 batches");
        Assert.That(many, Is.EqualTo(few), "3 epochs of 40 batches read no more than 3 epochs of 4");
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Fit_history_and_batch_logs_equal_what_per_batch_reads_give(string name, DeviceKind kind, string require)
    {
        var device = TestDevices.Require(name, kind, require);
        var train = Blobs(100, 1);   // 7 batches of 16, the last one of 4
        var validation = Blobs(40, 2);

        // Fit, with a callback that looks at the running logs of every second batch.
        using var fitted = SmallModel(device, out _);
        var batchLosses = new List<double>();
        var batchAccuracies = new List<double>();
        var peek = new LambdaCallback
        {
            BatchEnd = (b, logs) =>
            {
                if (b % 2 != 0) return;
                batchLosses.Add(logs["loss"]);
                batchAccuracies.Add(logs["accuracy"]);
            },
        };
        var history = fitted.Fit(train, epochs: 3, batchSize: 16, validationData: validation, seed: 5, callbacks: new[] { peek }, verbose: 0);

        // The same training with a read after every step, summed on the host as Fit did before.
        using var reference = SmallModel(device, out var network);
        var trainer = new Trainer();
        var accuracy = new Accuracy();
        double lossSum = 0;
        long seen = 0;
        var expected = new Dictionary<string, List<double>> { ["loss"] = new(), ["accuracy"] = new(), ["val_loss"] = new(), ["val_accuracy"] = new() };
        var expectedBatchLosses = new List<double>();
        var expectedBatchAccuracies = new List<double>();
        trainer.OnEpochStart += _ => { lossSum = 0; seen = 0; accuracy.Reset(); };
        trainer.OnForward += s =>
        {
            lossSum += s.LossValue * s.Sample!.Size;
            seen += s.Sample.Size;
            accuracy.Update(s.Output!, s.Sample.Targets);
            if (s.BatchIndex % 2 != 0) return;
            expectedBatchLosses.Add(lossSum / seen);
            expectedBatchAccuracies.Add(accuracy.Result());
        };
        trainer.OnEpochEnd += _ =>
        {
            expected["loss"].Add(lossSum / seen);
            expected["accuracy"].Add(accuracy.Result());
            var (valLoss, valAccuracy) = PerBatchEvaluation(network, validation, device);
            expected["val_loss"].Add(valLoss);
            expected["val_accuracy"].Add(valAccuracy);
        };
        trainer.Train(network, Losses.SparseCategoricalCrossEntropy, new DataLoader(train, 16, shuffle: true, seed: 5, device: device), reference.Optimizer, epochs: 3);

        foreach (var (key, values) in expected)
            Assert.That(history[key], Is.EqualTo(values), $"History[\"{key}\"]");
        Assert.That(batchLosses, Is.EqualTo(expectedBatchLosses), "running loss in the batch logs");
        Assert.That(batchAccuracies, Is.EqualTo(expectedBatchAccuracies), "running accuracy in the batch logs");
        Assert.That(history["loss"][^1], Is.LessThan(history["loss"][0]), "it trained");
    }

    /// <summary>Mean loss and accuracy over <paramref name="data"/> in batches of 16 (Fit's validation
    /// batches are its training batch size), each batch's loss and predictions read to the host.</summary>
    private static (double Loss, double Accuracy) PerBatchEvaluation(Module network, Dataset data, Device device)
    {
        network.Eval();
        double total = 0, correct = 0;
        long samples = 0;
        using (Tensor.NoGrad())
        {
            foreach (var batch in new DataLoader(data, 16, shuffle: false, device: device).Batches())
            {
                using (var scope = new DisposeScope())
                {
                    var output = network.Forward(batch.Inputs);
                    total += (double)Losses.SparseCategoricalCrossEntropy(output, batch.Targets).Item() * batch.Size;
                    var predicted = output.ArgMax(1);
                    var actual = batch.Targets.ToArray<long>();
                    for (int i = 0; i < predicted.Length; i++) if (predicted[i] == actual[i]) correct++;
                    samples += batch.Size;
                }
                batch.Dispose();
            }
        }
        network.Train();
        return (total / samples, correct / samples);
    }

    [Test]
    public void A_nan_loss_is_reported_at_the_epoch_end_read_with_its_own_batch()
    {
        using var model = SmallModel(Device.Cpu, out var network);
        // Batches of 2 without shuffling: batch 2 (samples 2 and 3) holds a NaN; 3 batches in all.
        var x = new float[] { 0.1f, 0.2f, 0.3f, -0.1f, float.NaN, 0.5f, 0.2f, 0.1f, -0.3f, 0.4f, 0.5f, 0.5f };
        var data = new ArrayDataset(x, new long[] { 2 }, new long[] { 0, 1, 2, 0, 1, 2 });
        var e = Assert.Throws<ArithmeticException>(() => model.Fit(data, epochs: 2, batchSize: 2, shuffle: false, verbose: 0))!;
        Assert.That(e.Message, Does.Contain("the loss became NaN at epoch 1, batch 2"));
        Assert.That(e.Message, Does.Contain("after batch 3").And.Contain("batches 2 to 3 were applied").And.Contain("CheckFiniteEachStep"));
    }

    [Test]
    public void A_callback_reading_its_batch_logs_finds_a_nan_at_that_batch()
    {
        using var model = SmallModel(Device.Cpu, out _);
        var x = new float[] { 0.1f, 0.2f, 0.3f, -0.1f, float.NaN, 0.5f, 0.2f, 0.1f, -0.3f, 0.4f, 0.5f, 0.5f };
        var data = new ArrayDataset(x, new long[] { 2 }, new long[] { 0, 1, 2, 0, 1, 2 });
        var reader = new LambdaCallback { BatchEnd = (_, logs) => GC.KeepAlive(logs["loss"]) };
        var e = Assert.Throws<ArithmeticException>(() => model.Fit(data, epochs: 1, batchSize: 2, shuffle: false, callbacks: new[] { reader }, verbose: 0))!;
        Assert.That(e.Message, Does.Contain("epoch 1, batch 2").And.Contain("after batch 2"));
    }

    [Test]
    public void Batch_logs_first_read_after_their_call_are_an_error_not_another_batchs_numbers()
    {
        using var model = SmallModel(Device.Cpu, out _);
        IReadOnlyDictionary<string, double>? kept = null, copied = null;
        var keeper = new LambdaCallback
        {
            BatchEnd = (b, logs) =>
            {
                if (b != 0) return;
                kept = logs;
                copied = new Dictionary<string, double>(logs);
            },
        };
        model.Fit(Blobs(32, 1), epochs: 1, batchSize: 8, callbacks: new[] { keeper }, verbose: 0);
        Assert.That(copied!["loss"], Is.GreaterThan(0), "a copy made during the call keeps its values");
        Assert.That(kept!["loss"], Is.EqualTo(copied["loss"]), "read during the call: the same values later");

        IReadOnlyDictionary<string, double>? unread = null;
        var lazy = new LambdaCallback { BatchEnd = (b, logs) => { if (b == 0) unread = logs; } };
        model.Fit(Blobs(32, 1), epochs: 1, batchSize: 8, callbacks: new[] { lazy }, verbose: 0);
        var e = Assert.Throws<InvalidOperationException>(() => _ = unread!["loss"])!;
        Assert.That(e.Message, Does.Contain("batch 1").And.Contain("OnBatchEnd"));
    }
}
