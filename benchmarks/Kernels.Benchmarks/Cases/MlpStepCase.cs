using Kernels.Nn;

namespace Kernels.Benchmarks.Cases;

/// <summary>
/// One training step of samples/MnistMlp's network (784 -> 512 -> 256 -> 10, ReLU, dropout 0.2, Adam)
/// on a batch of synthetic MNIST-shaped data, through src/Nn exactly as <see cref="Trainer"/> runs it:
/// zero the gradients, forward, cross-entropy, read the loss (a synchronisation, as the trainer does),
/// backward, one fused Adam update per parameter, all inside a DisposeScope.
///
/// Reference: the step's eight GEMMs alone (three forward; the weight gradients of all three layers
/// and the input gradients of the two upper ones) on the device's BLAS. So ratio = 1 would mean the
/// whole step, with its ~40 elementwise, reduction and optimizer calls, costs what the BLAS needs for
/// the matrix products only; the work figure is those GEMMs' FLOPs. Against PyTorch on a GPU:
/// benchmarks/gpu/mlp_step.py.
/// </summary>
public sealed class MlpStepCase : BenchmarkCase
{
    static readonly long[] Widths = { 784, 512, 256, 10 };

    readonly long batch;
    readonly Sequential network;
    readonly Adam optimizer;
    readonly Tensor input;
    readonly Tensor labels;  // int64 on the device, as the DataLoader yields them (made once, like the input)
    readonly List<GemmReference> references = new();

    public MlpStepCase(CaseSpec spec, Device device, long batch) : base(spec, device)
    {
        this.batch = batch;
        network = MnistNetworks.Mlp(device);
        network.Train();
        optimizer = new Adam(network.Parameters(), learningRate: 1e-3f);
        input = Tensor.FromArray(RandomFloats(batch * 784, 7, 0f, 1f), [batch, 784], device);
        var random = new Random(8);
        labels = Tensor.FromArray(Enumerable.Range(0, (int)batch).Select(_ => (long)random.Next(10)).ToArray(), device);

        foreach (var shape in StepGemms(batch))
            references.Add(new GemmReference(device, shape, RandomFloats(shape.ACount, 9), RandomFloats(shape.BCount, 10)));
    }

    /// <summary>The GEMMs of one step, as src/Nn issues them (Gradients.MatMul: dA = g B^T, dB = A^T g).</summary>
    public static IEnumerable<GemmShape> StepGemms(long batch)
    {
        for (int layer = 0; layer < 3; layer++)
        {
            long inputs = Widths[layer], outputs = Widths[layer + 1];
            yield return new GemmShape(batch, outputs, inputs);                    // forward: x W
            yield return new GemmShape(inputs, outputs, batch, TransA: true);      // weight gradient: x^T g
            if (layer > 0)
                yield return new GemmShape(batch, inputs, outputs, TransB: true);  // input gradient: g W^T
        }
    }

    public override double Work => StepGemms(batch).Sum(s => s.Flops);
    public override Throughput Throughput => Throughput.Flops;
    public override string ReferenceName => $"the step's {references.Count} GEMMs on {references[0].Name}";

    public override void RunKernels() => Step();

    float Step()
    {
        using var scope = new DisposeScope();
        optimizer.ZeroGrad();
        Tensor output = network.Forward(input);
        Tensor loss = Losses.SparseCategoricalCrossEntropy(output, labels);
        float value = loss.Item();
        loss.Backward();
        optimizer.Step();
        SynchronizeKernels();
        return value;
    }

    public override void RunReference()
    {
        foreach (var r in references) r.Run();
    }

    public override void Check()
    {
        float first = Step();
        for (int i = 0; i < 4; i++) Step();
        float later = Step();
        // Six Adam steps on one fixed batch must lower its loss (ln 10 = 2.3 at the start).
        if (!float.IsFinite(first) || !float.IsFinite(later) || later >= first)
            throw Wrong($"the loss went from {first} to {later} over 5 steps on one batch; training is broken");
        RunReference();
    }

    public override void Dispose()
    {
        input.Dispose();
        labels.Dispose();
        optimizer.Dispose();
        network.Dispose();
        foreach (var r in references) r.Dispose();
    }
}
