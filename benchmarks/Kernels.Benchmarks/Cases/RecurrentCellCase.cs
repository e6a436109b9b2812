using Kernels.Nn;

namespace Kernels.Benchmarks.Cases;

/// <summary>
/// One LSTM or GRU cell step, forward and backward through autograd, as a recurrent layer runs it after
/// its GEMMs: RecurrentCells.Lstm / Gru (one fused kernel each way) against the same cell composed from
/// plain tensor ops (Narrow, Sigmoid, Tanh, Mul, Add, Sub: about a dozen kernels forward and more
/// backward), the contract's first version. Both sides get the same gates and state, and the loss
/// sum(H * w) (+ sum(C * w) for the LSTM), so both compute every gradient. Work: the bytes the fused
/// kernels read and write (forward and backward), so the throughput column is the fused pair's.
/// </summary>
public sealed class RecurrentCellCase : BenchmarkCase
{
    readonly bool lstm;
    readonly long batch, hidden;
    readonly Tensor a, b, hPrev, cPrev, weight;

    public RecurrentCellCase(CaseSpec spec, Device device, bool lstm, long batch, long hidden) : base(spec, device)
    {
        this.lstm = lstm;
        this.batch = batch;
        this.hidden = hidden;
        long gates = (lstm ? 4 : 3) * hidden;
        a = Tensor.FromArray(RandomFloats(batch * gates, 1, -3f, 3f), [batch, gates], device);
        b = Tensor.FromArray(RandomFloats(batch * gates, 2, -3f, 3f), [batch, gates], device);
        cPrev = Tensor.FromArray(RandomFloats(batch * hidden, 3), [batch, hidden], device);
        hPrev = Tensor.FromArray(RandomFloats(batch * hidden, 4), [batch, hidden], device);
        weight = Tensor.FromArray(RandomFloats(batch * hidden, 5), [batch, hidden], device);
        foreach (var t in new[] { a, b, cPrev, hPrev }) t.RequiresGrad = true;
    }

    // Fused, per step: LSTM forward reads gates (4H) + c_prev and writes h, c, saved (5H); backward reads
    // saved, c_prev, dh, dc and writes dgates (4H) and dc_prev. GRU: forward reads 2 x 3H + h_prev, writes
    // h and saved (3H); backward reads saved, h_gates, h_prev, dh and writes 2 x 3H + dh_prev.
    public override double Work => 4.0 * batch * hidden * (lstm ? (5 + 7) + (5 + 3 + 5) : (7 + 4) + (8 + 7));
    public override Throughput Throughput => Throughput.Bytes;
    public override string ReferenceName => $"the composed {(lstm ? "LSTM" : "GRU")} cell (plain tensor ops, autograd)";

    public override void RunKernels() => Step(fused: true);
    public override void RunReference() => Step(fused: false);

    float[] Step(bool fused, bool read = false)
    {
        using var scope = new DisposeScope();
        foreach (var t in new[] { a, b, cPrev, hPrev }) t.ZeroGrad();
        Tensor loss;
        if (lstm)
        {
            // a: the gates; b unused (the LSTM has one gates tensor).
            var (h, c) = fused ? RecurrentCells.Lstm(a, cPrev, hPrev) : ComposedLstm(a, cPrev, hPrev);
            loss = (h * weight).Sum() + (c * weight).Sum();
        }
        else
        {
            var h = fused ? RecurrentCells.Gru(a, b, hPrev) : ComposedGru(a, b, hPrev);
            loss = (h * weight).Sum();
        }
        loss.Backward();
        SynchronizeKernels();
        return read ? a.Grad!.ToArray() : Array.Empty<float>();
    }

    public override void Check()
    {
        var fused = Step(fused: true, read: true);
        var composed = Step(fused: false, read: true);
        for (int i = 0; i < fused.Length; i++)
            if (Math.Abs(fused[i] - composed[i]) > 1e-5f + 1e-5f * Math.Abs(composed[i]))
                throw Wrong($"gate gradient {i}: fused {fused[i]} vs composed {composed[i]}");
    }

    (Tensor H, Tensor C) ComposedLstm(Tensor gates, Tensor c0, Tensor h0)
    {
        var i = gates.Narrow(1, 0, hidden).Sigmoid();
        var f = gates.Narrow(1, hidden, hidden).Sigmoid();
        var g = gates.Narrow(1, 2 * hidden, hidden).Tanh();
        var o = gates.Narrow(1, 3 * hidden, hidden).Sigmoid();
        var c = f * c0 + i * g;
        return (o * c.Tanh(), c);
    }

    Tensor ComposedGru(Tensor xGates, Tensor hGates, Tensor h0)
    {
        var r = (xGates.Narrow(1, 0, hidden) + hGates.Narrow(1, 0, hidden)).Sigmoid();
        var z = (xGates.Narrow(1, hidden, hidden) + hGates.Narrow(1, hidden, hidden)).Sigmoid();
        var n = (xGates.Narrow(1, 2 * hidden, hidden) + r * hGates.Narrow(1, 2 * hidden, hidden)).Tanh();
        return n + z * (h0 - n);
    }

    public override void Dispose()
    {
        foreach (var t in new[] { a, b, cPrev, hPrev, weight }) t.Dispose();
    }
}
