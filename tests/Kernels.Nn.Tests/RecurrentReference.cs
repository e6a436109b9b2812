namespace Kernels.Nn.Tests;

/// <summary>
/// SimpleRNN / LSTM / GRU in float64, written from PyTorch's formulas (gate orders i, f, g, o and r, z, n;
/// weights [G*H, I] and [G*H, H]), one row and one step at a time: the reference the layers' values and
/// finite-difference gradients are checked against. Row-major arrays; x is [B, T, I].
/// </summary>
internal sealed class RecurrentReference
{
    public required string Kind { get; init; }   // "SimpleRNN", "LSTM", "GRU"
    public required long Batch { get; init; }
    public required long Steps { get; init; }
    public required long Input { get; init; }
    public required long Hidden { get; init; }
    public bool GoBackwards { get; init; }
    /// <summary>Valid steps per row (prefix); the backward direction reverses only the valid part.</summary>
    public long[]? Lengths { get; init; }
    /// <summary>[B, T] 0/1 (any pattern); the backward direction reverses the whole row, mask included.</summary>
    public double[]? Mask { get; init; }

    public int Gates => Kind switch { "LSTM" => 4, "GRU" => 3, _ => 1 };
    public int StateCount => Kind == "LSTM" ? 2 : 1;

    /// <summary>The time step s of row b reads.</summary>
    public long Source(long b, long s)
    {
        if (!GoBackwards) return s;
        if (Lengths is null) return Steps - 1 - s;
        return s < Lengths[b] ? Lengths[b] - 1 - s : s;
    }

    /// <summary>Whether step s of row b (in processing order) is a valid step.</summary>
    public bool Valid(long b, long s)
    {
        long t = Source(b, s);
        if (Lengths is not null) return t < Lengths[b] && s < Lengths[b];
        return Mask is null || Mask[b * Steps + t] != 0;
    }

    /// <summary>
    /// Outputs [B, T, H] in processing order (zeros at padded steps), final h [B, H] and (LSTM) c.
    /// bih / bhh may be null (no bias); h0 / c0 null means zeros.
    /// </summary>
    public (double[] Outputs, double[] H, double[]? C) Run(double[] x, double[] wih, double[] whh, double[]? bih, double[]? bhh,
                                                          double[]? h0 = null, double[]? c0 = null)
    {
        long B = Batch, T = Steps, I = Input, H = Hidden, G = Gates * H;
        var outputs = new double[B * T * H];
        var hOut = new double[B * H];
        var cOut = Kind == "LSTM" ? new double[B * H] : null;
        var xg = new double[G];
        var hg = new double[G];
        for (long b = 0; b < B; b++)
        {
            var h = new double[H];
            var c = new double[H];
            if (h0 is not null) Array.Copy(h0, b * H, h, 0, H);
            if (c0 is not null) Array.Copy(c0, b * H, c, 0, H);
            for (long s = 0; s < T; s++)
            {
                if (!Valid(b, s)) continue;  // padding: state unchanged, output zero
                long t = Source(b, s);
                for (long j = 0; j < G; j++)
                {
                    double a = bih?[j] ?? 0, r = bhh?[j] ?? 0;
                    for (long i = 0; i < I; i++) a += wih[j * I + i] * x[(b * T + t) * I + i];
                    for (long k = 0; k < H; k++) r += whh[j * H + k] * h[k];
                    xg[j] = a;
                    hg[j] = r;
                }
                var next = new double[H];
                for (long k = 0; k < H; k++)
                {
                    switch (Kind)
                    {
                        case "SimpleRNN":
                            next[k] = Math.Tanh(xg[k] + hg[k]);
                            break;
                        case "LSTM":
                        {
                            double ig = Sigmoid(xg[k] + hg[k]), fg = Sigmoid(xg[H + k] + hg[H + k]);
                            double gg = Math.Tanh(xg[2 * H + k] + hg[2 * H + k]), og = Sigmoid(xg[3 * H + k] + hg[3 * H + k]);
                            c[k] = fg * c[k] + ig * gg;
                            next[k] = og * Math.Tanh(c[k]);
                            break;
                        }
                        default:
                        {
                            double rg = Sigmoid(xg[k] + hg[k]), zg = Sigmoid(xg[H + k] + hg[H + k]);
                            double ng = Math.Tanh(xg[2 * H + k] + rg * hg[2 * H + k]);
                            next[k] = (1 - zg) * ng + zg * h[k];
                            break;
                        }
                    }
                }
                h = next;
                Array.Copy(h, 0, outputs, (b * T + s) * H, H);
            }
            Array.Copy(h, 0, hOut, b * H, H);
            if (cOut is not null) Array.Copy(c, 0, cOut, b * H, H);
        }
        return (outputs, hOut, cOut);
    }

    /// <summary>The sequence [B, T, F] put back in time order (row b's step s to time Source(b, s)).</summary>
    public double[] ToTimeOrder(double[] sequence, long features)
    {
        var result = new double[sequence.Length];
        for (long b = 0; b < Batch; b++)
            for (long s = 0; s < Steps; s++)
                Array.Copy(sequence, (b * Steps + s) * features, result, (b * Steps + Source(b, s)) * features, features);
        return result;
    }

    private static double Sigmoid(double v) => 1 / (1 + Math.Exp(-v));
}
