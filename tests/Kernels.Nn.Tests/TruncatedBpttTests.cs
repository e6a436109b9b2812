using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// Trainer.TrainTruncated: chunks of k steps carry the recurrent state forward (the outputs equal one
/// pass over the whole sequence) but no gradient crosses a chunk boundary; one optimizer step per chunk.
/// </summary>
[TestFixture]
public class TruncatedBpttTests
{
    private const int Batch = 2, Steps = 7, Features = 3, Hidden = 4;

    /// <summary>h_t = tanh(x_t W + h_{t-1} U), outputs [B, T, H]: the smallest recurrence with a state,
    /// built from existing ops so the test does not depend on the recurrent layers.</summary>
    private sealed class TinyRnn : Module
    {
        public TinyRnn(Device device)
        {
            W = RegisterParameter("w", Tensor.Uniform(new long[] { Features, Hidden }, -0.8f, 0.8f, 11, device));
            U = RegisterParameter("u", Tensor.Uniform(new long[] { Hidden, Hidden }, -0.8f, 0.8f, 12, device));
        }

        public Tensor W { get; }
        public Tensor U { get; }

        public override Tensor Forward(Tensor input) => Run(input, null).Output;

        public (Tensor Output, IReadOnlyList<Tensor> State) Run(Tensor input, IReadOnlyList<Tensor>? state)
        {
            var h = state?[0] ?? Tensor.Zeros(new long[] { input.Shape[0], Hidden }, input.Device);
            var outputs = new List<Tensor>();
            for (long t = 0; t < input.Shape[1]; t++)
            {
                h = input.Select(1, t).MatMul(W).Add(h.MatMul(U)).Tanh();
                outputs.Add(h);
            }
            return (Tensor.Stack(outputs, 1), new[] { h });
        }
    }

    private static ArrayDataset Sequences()
    {
        var r = new Random(5);
        var x = new float[Batch * Steps * Features];
        var y = new float[Batch * Steps * Hidden];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(r.NextDouble() * 2 - 1);
        for (int i = 0; i < y.Length; i++) y[i] = (float)(r.NextDouble() - 0.5);
        return new ArrayDataset(x, new long[] { Steps, Features }, y, new long[] { Steps, Hidden });
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Chunked_outputs_equal_one_pass_over_the_whole_sequence(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        using var model = new TinyRnn(device);
        var data = Sequences();
        var loader = new DataLoader(data, Batch, shuffle: false, device: device);
        using var optimizer = new Sgd(model.Parameters(), learningRate: 0f);   // the weights stay put
        var chunks = new List<(int Index, float[] Output, long Length)>();
        var trainer = new Trainer();
        trainer.OnForward += s => chunks.Add((s.ChunkIndex, s.Output!.ToArray(), s.Output!.Shape[1]));
        var final = trainer.TrainTruncated(model, model.Run, Losses.MeanSquaredError, loader, optimizer, epochs: 1, chunkSteps: 3);

        Assert.That(chunks.Select(c => c.Index), Is.EqualTo(new[] { 0, 1, 2 }));
        Assert.That(chunks.Select(c => c.Length), Is.EqualTo(new long[] { 3, 3, 1 }), "7 steps in chunks of 3: 3, 3, 1");
        Assert.That(final.Step, Is.EqualTo(3), "one optimizer step per chunk");

        float[] full;
        using (var scope = new DisposeScope())
        using (var x = Tensor.FromArray(AllFeatures(data), new long[] { Batch, Steps, Features }, device))
            full = model.Forward(x).ToArray();
        for (int b = 0; b < Batch; b++)
        {
            long t0 = 0;
            foreach (var (_, output, length) in chunks)
            {
                for (long t = 0; t < length; t++)
                    for (int h = 0; h < Hidden; h++)
                        Assert.That(output[(b * length + t) * Hidden + h], Is.EqualTo(full[(b * Steps + t0 + t) * Hidden + h]).Within(1e-5),
                                    $"row {b}, step {t0 + t}, unit {h}: the state was not carried into the chunk");
                t0 += length;
            }
        }
    }

    [TestCaseSource(typeof(TestDevices), nameof(TestDevices.All))]
    public void Gradients_of_a_chunk_stop_at_its_first_step(string name, DeviceKind kind, string requireVariable)
    {
        var device = TestDevices.Require(name, kind, requireVariable);
        using var model = new TinyRnn(device);
        var data = Sequences();
        var loader = new DataLoader(data, Batch, shuffle: false, device: device);
        using var optimizer = new Sgd(model.Parameters(), learningRate: 0f);
        float[]? trainerGradient = null;
        var trainer = new Trainer();
        trainer.OnBackward += s => { if (s.ChunkIndex == 1) trainerGradient = model.U.Grad!.ToArray(); };
        trainer.TrainTruncated(model, model.Run, Losses.MeanSquaredError, loader, optimizer, epochs: 1, chunkSteps: 3);
        Assert.That(trainerGradient, Is.Not.Null);

        using var scope = new DisposeScope();
        var x = Tensor.FromArray(AllFeatures(data), new long[] { Batch, Steps, Features }, device);
        var y = Tensor.FromArray(AllTargets(data), new long[] { Batch, Steps, Hidden }, device);
        // Truncated by hand: steps 3..5 from the state after step 2, with that state's history cut.
        Tensor h3;
        using (Tensor.NoGrad()) h3 = model.Run(x.Narrow(1, 0, 3), null).State[0];
        model.ZeroGrad();
        Losses.MeanSquaredError(model.Run(x.Narrow(1, 3, 3), new[] { h3.Detach() }).Output, y.Narrow(1, 3, 3)).Backward();
        float[] truncated = model.U.Grad!.ToArray();
        // The same loss with the history kept: what the trainer must NOT compute.
        model.ZeroGrad();
        Losses.MeanSquaredError(model.Forward(x.Narrow(1, 0, 6)).Narrow(1, 3, 3), y.Narrow(1, 3, 3)).Backward();
        float[] untruncated = model.U.Grad!.ToArray();

        Assert.That(trainerGradient, Is.EqualTo(truncated).Within(1e-5), "the second chunk's gradient is the truncated one");
        double difference = truncated.Zip(untruncated, (a, b) => Math.Abs(a - b)).Max();
        Assert.That(difference, Is.GreaterThan(1e-3), "the test can tell truncation from full BPTT on this data");
    }

    [Test]
    public void Chunked_LSTM_layer_carries_h_and_c_like_one_pass()
    {
        // The recurrent layers' own state API (returnState: h, then c) plugged into the trainer.
        using var lstm = new LSTM(Features, Hidden, returnSequences: true, returnState: true, seed: 3);
        var data = Sequences();
        using var optimizer = new Sgd(lstm.Parameters(), learningRate: 0f);
        var outputs = new List<float[]>();
        var trainer = new Trainer();
        trainer.OnForward += s => outputs.Add(s.Output!.ToArray());
        trainer.TrainTruncated(lstm, (x, state) => { var r = lstm.Forward(x, state); return (r.Output, r.States); },
                               Losses.MeanSquaredError, new DataLoader(data, Batch, shuffle: false), optimizer, epochs: 1, chunkSteps: 4);
        Assert.That(outputs, Has.Count.EqualTo(2), "7 steps in chunks of 4: 4, 3");
        using var scope = new DisposeScope();
        float[] full = lstm.Forward(Tensor.FromArray(AllFeatures(data), new long[] { Batch, Steps, Features })).ToArray();
        for (int b = 0; b < Batch; b++)
            for (int t = 0; t < Steps; t++)
                for (int h = 0; h < Hidden; h++)
                {
                    float chunked = t < 4 ? outputs[0][(b * 4 + t) * Hidden + h] : outputs[1][(b * 3 + t - 4) * Hidden + h];
                    Assert.That(chunked, Is.EqualTo(full[(b * Steps + t) * Hidden + h]).Within(1e-5), $"row {b}, step {t}, unit {h}");
                }
    }

    [Test]
    public void Bad_arguments_name_the_problem()
    {
        using var model = new TinyRnn(Device.Cpu);
        using var optimizer = new Sgd(model.Parameters(), learningRate: 0f);
        var sequences = new DataLoader(Sequences(), Batch, shuffle: false);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            new Trainer().TrainTruncated(model, model.Run, Losses.MeanSquaredError, sequences, optimizer, epochs: 1, chunkSteps: 0))!;
        Assert.That(e.Message, Does.Contain("chunkSteps = 0"));

        // Targets with another number of steps than the inputs.
        var mismatched = new ArrayDataset(new float[Batch * Steps * Features], new long[] { Steps, Features }, new float[Batch * 5 * Hidden], new long[] { 5, Hidden });
        var m = Assert.Throws<ShapeMismatchException>(() =>
            new Trainer().TrainTruncated(model, model.Run, Losses.MeanSquaredError, new DataLoader(mismatched, Batch, shuffle: false), optimizer, epochs: 1, chunkSteps: 3))!;
        Assert.That(m.Message, Does.Contain("[2, 7, 3]").And.Contain("[2, 5, 4]"));

        // The trainer stays usable after the refusal.
        var state = new Trainer().TrainTruncated(model, model.Run, Losses.MeanSquaredError, sequences, optimizer, epochs: 1, chunkSteps: 7);
        Assert.That(state.Step, Is.EqualTo(1), "chunkSteps = T is one step per batch");
    }

    private static float[] AllFeatures(Dataset data) => Collect(data).X;
    private static float[] AllTargets(Dataset data) => Collect(data).Y;

    private static (float[] X, float[] Y) Collect(Dataset data)
    {
        var x = new float[data.Count * data.FeatureSize];
        var y = new float[data.Count * data.TargetSize];
        for (int i = 0; i < data.Count; i++)
            data.Get(i, x.AsSpan((int)(i * data.FeatureSize), (int)data.FeatureSize), y.AsSpan((int)(i * data.TargetSize), (int)data.TargetSize));
        return (x, y);
    }
}

/// <summary>Model.GradientClipNorm: Fit clips the global gradient norm before each optimizer step.</summary>
[TestFixture]
public class GradientClipNormTests
{
    [TestCase(null)]
    [TestCase(1e-3f)]
    public void Fit_with_a_clip_norm_moves_the_weights_by_at_most_rate_times_norm(float? clipNorm)
    {
        var network = new Sequential(new Dense(3, 2, seed: 1));
        using var model = new Model(network);
        model.Compile(new Sgd(network.Parameters(), learningRate: 1f), Losses.MeanSquaredError);
        model.GradientClipNorm = clipNorm;
        float[] before = network.Parameters().SelectMany(p => p.ToArray()).ToArray();
        // One batch of one sample far from the prediction: the plain gradient norm is about 100.
        model.Fit(new ArrayDataset(new float[] { 1, 2, 3 }, new long[] { 3 }, new float[] { 40, -40 }, new long[] { 2 }), epochs: 1, batchSize: 1, verbose: 0);
        float[] after = network.Parameters().SelectMany(p => p.ToArray()).ToArray();
        double moved = Math.Sqrt(before.Zip(after, (a, b) => (double)(a - b) * (a - b)).Sum());
        if (clipNorm is float c) Assert.That(moved, Is.LessThanOrEqualTo(c * 1.001), "an SGD step of rate 1 moves by the clipped norm at most");
        else Assert.That(moved, Is.GreaterThan(1), "without clipping the same step is large (the test can fail)");
    }
}
