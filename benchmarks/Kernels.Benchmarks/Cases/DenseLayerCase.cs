using Kernels.Nn;

namespace Kernels.Benchmarks.Cases;

/// <summary>
/// One Dense + ReLU layer of the MNIST MLP, forward and backward through autograd (the input needs its
/// gradient too, as every layer after the first): Sequential(Dense, ReLU), which runs as one fused op
/// (kn_linear_f32: bias and ReLU in the GEMM's write-out; kn_linear_backward_f32: ReLU's derivative and
/// the bias gradient in one pass, then two GEMMs), against the same layer as separate ops (MatMul, Add,
/// Relu: three forward kernels, three autograd nodes, a broadcast-add backward with its column
/// reduction). Both sides run the same three GEMMs, so the ratio is what the fusion saves of the layer.
/// Work: the three GEMMs' flops.
/// </summary>
public sealed class DenseLayerCase : BenchmarkCase
{
    readonly long batch, inputs, outputs;
    readonly Sequential fused;
    readonly Dense dense;
    readonly Tensor x, upstream;

    public DenseLayerCase(CaseSpec spec, Device device, long batch, long inputs, long outputs) : base(spec, device)
    {
        this.batch = batch;
        this.inputs = inputs;
        this.outputs = outputs;
        dense = new Dense(inputs, outputs, seed: 1, device: device);
        fused = new Sequential(dense, Activation.Relu());
        x = Tensor.FromArray(RandomFloats(batch * inputs, 3), [batch, inputs], device);
        x.RequiresGrad = true;
        upstream = Tensor.FromArray(RandomFloats(batch * outputs, 4), [batch, outputs], device);
    }

    public override double Work => 3 * 2.0 * batch * inputs * outputs;
    public override Throughput Throughput => Throughput.Flops;
    public override string ReferenceName => "the same layer as MatMul + Add + Relu (autograd)";

    public override void RunKernels() => Step(fusedLayer: true);
    public override void RunReference() => Step(fusedLayer: false);

    float[] Step(bool fusedLayer, bool read = false)
    {
        using var scope = new DisposeScope();
        x.ZeroGrad();
        dense.Weight.ZeroGrad();
        dense.Bias!.ZeroGrad();
        var y = fusedLayer ? fused.Forward(x) : x.MatMul(dense.Weight).Add(dense.Bias).Relu();
        y.Backward(upstream);
        SynchronizeKernels();
        return read ? x.Grad!.ToArray().Concat(dense.Bias.Grad!.ToArray()).ToArray() : Array.Empty<float>();
    }

    public override void Check()
    {
        var got = Step(fusedLayer: true, read: true);
        var want = Step(fusedLayer: false, read: true);
        for (int i = 0; i < got.Length; i++)
            if (Math.Abs(got[i] - want[i]) > 1e-5f + 1e-5f * Math.Abs(want[i]))
                throw Wrong($"gradient {i}: fused {got[i]} vs separate {want[i]}");
    }

    public override void Dispose()
    {
        fused.Dispose();
        x.Dispose();
        upstream.Dispose();
    }
}
