namespace Kernels.Nn;

/// <summary>
/// How a weight tensor starts. fanIn/fanOut are the number of inputs and outputs each unit sees
/// (for Dense: in and out features). Every initializer is reproducible from its seed.
/// </summary>
public abstract class Initializer
{
    /// <summary>Creates a tensor of the given shape.</summary>
    public abstract Tensor Create(long[] shape, long fanIn, long fanOut, int seed, Device device);

    /// <summary>U(-l, l), l = sqrt(6 / (fanIn + fanOut)): keeps activation variance ~constant through tanh-like layers (Glorot &amp; Bengio 2010).</summary>
    public static Initializer GlorotUniform { get; } = new Lambda((s, i, o, seed, d) => { float l = MathF.Sqrt(6f / (i + o)); return Tensor.Uniform(s, -l, l, seed, d); });
    /// <summary>N(0, 2 / (fanIn + fanOut)).</summary>
    public static Initializer GlorotNormal { get; } = new Lambda((s, i, o, seed, d) => Tensor.Normal(s, 0, MathF.Sqrt(2f / (i + o)), seed, d));
    /// <summary>U(-l, l), l = sqrt(6 / fanIn): for ReLU layers, which zero half their inputs (He et al. 2015).</summary>
    public static Initializer HeUniform { get; } = new Lambda((s, i, o, seed, d) => { float l = MathF.Sqrt(6f / i); return Tensor.Uniform(s, -l, l, seed, d); });
    /// <summary>N(0, 2 / fanIn).</summary>
    public static Initializer HeNormal { get; } = new Lambda((s, i, o, seed, d) => Tensor.Normal(s, 0, MathF.Sqrt(2f / i), seed, d));
    /// <summary>All zeros.</summary>
    public static Initializer Zeros { get; } = new Lambda((s, i, o, seed, d) => Tensor.Zeros(s, d));
    /// <summary>A (semi-)orthogonal matrix from Gram-Schmidt on a Gaussian matrix (Saxe et al. 2014); shape [rows, cols...] flattened to 2-D.</summary>
    public static Initializer Orthogonal { get; } = new Lambda(CreateOrthogonal);

    /// <summary>N(mean, std).</summary>
    public static Initializer Normal(float mean = 0, float std = 0.05f) => new Lambda((s, i, o, seed, d) => Tensor.Normal(s, mean, std, seed, d));
    /// <summary>U(low, high).</summary>
    public static Initializer Uniform(float low = -0.05f, float high = 0.05f) => new Lambda((s, i, o, seed, d) => Tensor.Uniform(s, low, high, seed, d));

    private sealed class Lambda : Initializer
    {
        private readonly Func<long[], long, long, int, Device, Tensor> create;
        public Lambda(Func<long[], long, long, int, Device, Tensor> create) => this.create = create;
        public override Tensor Create(long[] shape, long fanIn, long fanOut, int seed, Device device)
        {
            if (fanIn <= 0 || fanOut <= 0) throw new ArgumentOutOfRangeException(nameof(fanIn), $"fan-in and fan-out must be positive; got {fanIn}, {fanOut}");
            return create(shape, fanIn, fanOut, seed, device);
        }
    }

    private static Tensor CreateOrthogonal(long[] shape, long fanIn, long fanOut, int seed, Device device)
    {
        long rows = shape.Length == 0 ? 1 : shape[0];
        long cols = rows == 0 ? 0 : Tensor.ShapeSize(shape) / rows;
        // Orthonormalise the longer side's vectors: rows when rows <= cols, else columns.
        bool byRows = rows <= cols;
        long count = byRows ? rows : cols, length = byRows ? cols : rows;
        var random = new Random(seed);
        var v = new double[count, length];
        for (long i = 0; i < count; i++)
        {
            for (long j = 0; j < length; j++)
                v[i, j] = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
            for (long p = 0; p < i; p++)
            {
                double dot = 0;
                for (long j = 0; j < length; j++) dot += v[i, j] * v[p, j];
                for (long j = 0; j < length; j++) v[i, j] -= dot * v[p, j];
            }
            double norm = 0;
            for (long j = 0; j < length; j++) norm += v[i, j] * v[i, j];
            norm = Math.Sqrt(norm);
            for (long j = 0; j < length; j++) v[i, j] /= norm;
        }
        var values = new float[rows * cols];
        for (long r = 0; r < rows; r++)
            for (long c = 0; c < cols; c++)
                values[r * cols + c] = (float)(byRows ? v[r, c] : v[c, r]);
        return Tensor.FromArray(values, shape, device);
    }
}
