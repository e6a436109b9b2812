namespace Kernels.Nn;

/// <summary>
/// A lookup table of <see cref="NumEmbeddings"/> vectors of <see cref="EmbeddingDim"/> floats: token id
/// i becomes row i of <see cref="Weight"/> (PyTorch's nn.Embedding, Keras's Embedding). The weight is
/// [numEmbeddings, embeddingDim], initialised N(0, 1) as PyTorch does; the row <see cref="PaddingIdx"/>
/// (if any) starts at zero and gets no gradient, so it stays zero under any optimizer without decay.
/// The backward pass is the deterministic scatter-add: the same gradient bits on every run.
/// </summary>
public sealed class Embedding : Module
{
    /// <summary>
    /// An embedding table. <paramref name="paddingIdx"/> may count from the end (-1 is the last row), as
    /// in PyTorch.
    /// </summary>
    public Embedding(long numEmbeddings, long embeddingDim, long? paddingIdx = null, int seed = 0, Device? device = null)
    {
        if (numEmbeddings <= 0 || embeddingDim <= 0)
            throw new ArgumentOutOfRangeException(numEmbeddings <= 0 ? nameof(numEmbeddings) : nameof(embeddingDim),
                $"Embedding needs positive sizes; got numEmbeddings = {numEmbeddings}, embeddingDim = {embeddingDim}");
        if (paddingIdx is long p && (p < -numEmbeddings || p >= numEmbeddings))
            throw new ArgumentOutOfRangeException(nameof(paddingIdx), $"paddingIdx = {p} is outside [{-numEmbeddings}, {numEmbeddings}) for {numEmbeddings} embeddings");
        NumEmbeddings = numEmbeddings;
        EmbeddingDim = embeddingDim;
        PaddingIdx = paddingIdx is long q && q < 0 ? q + numEmbeddings : paddingIdx;
        device ??= Device.Cpu;
        var shape = new[] { numEmbeddings, embeddingDim };
        var weight = Tensor.Normal(shape, 0f, 1f, seed, device);
        if (PaddingIdx is long row)
        {
            // Zero the padding row on the host: once, at construction.
            float[] values = weight.ToArray();
            Array.Clear(values, checked((int)(row * embeddingDim)), checked((int)embeddingDim));
            weight.Dispose();
            weight = Tensor.FromArray(values, shape, device);
        }
        Weight = RegisterParameter("weight", weight);
    }

    /// <summary>Rows of the table (the vocabulary size).</summary>
    public long NumEmbeddings { get; }
    /// <summary>Floats per row.</summary>
    public long EmbeddingDim { get; }
    /// <summary>The row that gets no gradient (0 .. NumEmbeddings - 1), or null.</summary>
    public long? PaddingIdx { get; }
    /// <summary>[numEmbeddings, embeddingDim]</summary>
    public Tensor Weight { get; }

    /// <summary>
    /// The vectors of <paramref name="ids"/> laid out in <paramref name="shape"/> (its product must be the
    /// number of ids): the result is shape followed by embeddingDim. An id outside [0, numEmbeddings)
    /// throws naming it and its position.
    /// </summary>
    public Tensor Forward(ReadOnlySpan<long> ids, ReadOnlySpan<long> shape)
    {
        long[] dims = shape.ToArray();
        if (Tensor.ShapeSize(dims) != ids.Length)
            throw new ShapeMismatchException($"Embedding: {ids.Length} ids do not fill the shape {Tensor.FormatShape(dims)}");
        return Weight.GatherRows(ids, dims, PaddingIdx ?? -1, nameof(ids));
    }

    /// <summary>The vectors of <paramref name="ids"/> as one sequence: [ids.Length, embeddingDim].</summary>
    public Tensor Forward(ReadOnlySpan<long> ids) => Forward(ids, new long[] { ids.Length });

    /// <summary>
    /// The vectors of the token ids in <paramref name="input"/> (any shape; the result appends embeddingDim).
    /// Ids in an int64 or int32 tensor on the table's device go to the gather kernel as they are (no float
    /// conversion; libkernels reads them once to check them, and a range known on the host is checked
    /// without that read); an id outside [0, numEmbeddings) throws naming it and its position. float32
    /// whole numbers (as older datasets yield them) are still accepted: read to the host, checked and
    /// uploaded as int64.
    /// </summary>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Dtype != Dtype.Float32) return Weight.GatherRows(input, input.ShapeArray, PaddingIdx ?? -1, nameof(input));
        float[] values = input.ToArray();
        var ids = new long[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            float v = values[i];
            if (!(v == MathF.Floor(v)) || v < 0 || v >= NumEmbeddings)
                throw new ArgumentOutOfRangeException(nameof(input), $"Embedding: id {v} at position {i} is not a whole number in [0, {NumEmbeddings})");
            ids[i] = (long)v;
        }
        return Forward(ids, input.ShapeArray);
    }
}
