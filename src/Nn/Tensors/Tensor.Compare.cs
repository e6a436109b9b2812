namespace Kernels.Nn;

// Comparisons, Where, softmax over any axis and sequence masks: the pieces masks and attention over
// padded sequences are built from.
public sealed partial class Tensor
{
    // ---- Comparisons -----------------------------------------------------------------------------

    // a op b elementwise with broadcasting, as 1.0f / 0.0f (BinaryValue: the binary kernel, no autograd
    // record). A NaN compares false (NotEqual: true), as IEEE and PyTorch. The result is a constant of
    // the inputs, RequiresGrad false (the kernel's backward writes zeros, but a mask has no gradient to give).

    private Tensor Compare(BinaryOp op, float scalar)
    {
        using var s = Scalar(scalar, Device);
        return BinaryValue(op, this, s);
    }

    /// <summary>1 where a == b, else 0 (broadcasting; no gradient).</summary>
    public Tensor Eq(Tensor other) => BinaryValue(BinaryOp.Equal, this, other);
    /// <summary>1 where a != b (NaN included), else 0 (broadcasting; no gradient).</summary>
    public Tensor Ne(Tensor other) => BinaryValue(BinaryOp.NotEqual, this, other);
    /// <summary>1 where a &lt; b, else 0 (broadcasting; no gradient).</summary>
    public Tensor Lt(Tensor other) => BinaryValue(BinaryOp.Less, this, other);
    /// <summary>1 where a &lt;= b, else 0 (broadcasting; no gradient).</summary>
    public Tensor Le(Tensor other) => BinaryValue(BinaryOp.LessEqual, this, other);
    /// <summary>1 where a &gt; b, else 0 (broadcasting; no gradient).</summary>
    public Tensor Gt(Tensor other) => BinaryValue(BinaryOp.Greater, this, other);
    /// <summary>1 where a &gt;= b, else 0 (broadcasting; no gradient).</summary>
    public Tensor Ge(Tensor other) => BinaryValue(BinaryOp.GreaterEqual, this, other);

    /// <summary>1 where x == scalar, else 0 (no gradient).</summary>
    public Tensor Eq(float scalar) => Compare(BinaryOp.Equal, scalar);
    /// <summary>1 where x != scalar (NaN included), else 0 (no gradient).</summary>
    public Tensor Ne(float scalar) => Compare(BinaryOp.NotEqual, scalar);
    /// <summary>1 where x &lt; scalar, else 0 (no gradient).</summary>
    public Tensor Lt(float scalar) => Compare(BinaryOp.Less, scalar);
    /// <summary>1 where x &lt;= scalar, else 0 (no gradient).</summary>
    public Tensor Le(float scalar) => Compare(BinaryOp.LessEqual, scalar);
    /// <summary>1 where x &gt; scalar, else 0 (no gradient).</summary>
    public Tensor Gt(float scalar) => Compare(BinaryOp.Greater, scalar);
    /// <summary>1 where x &gt;= scalar, else 0 (no gradient).</summary>
    public Tensor Ge(float scalar) => Compare(BinaryOp.GreaterEqual, scalar);

    // ---- Where -----------------------------------------------------------------------------------

    /// <summary>
    /// a where <paramref name="condition"/> is 1, b where it is 0 (broadcasting over all three), computed as
    /// condition * a + (1 - condition) * b so that gradients reach a and b through the existing ops
    /// (none reaches the condition). The condition must hold only 0 and 1: it is read to the host to
    /// check that (one synchronisation). As the formula says, an infinite or NaN value in the branch
    /// not taken still gives NaN (0 * inf).
    /// </summary>
    public static Tensor Where(Tensor condition, Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(condition);
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        var values = condition.ToArray();
        for (int i = 0; i < values.Length; i++)
            if (values[i] != 0f && values[i] != 1f)
                throw new ArgumentException(
                    $"Where: the condition {FormatShape(condition.shape)} must hold only 0 and 1; element {i} is {values[i]}", nameof(condition));
        // A mask is a constant: no gradient flows into it. The intermediates stay alive (not disposed
        // here): the backward rules of Mul and Add read them.
        var mask = condition.Detach();
        return mask.Mul(a).Add(mask.Neg().Add(1f).Mul(b));
    }

    // ---- Softmax over any axis -------------------------------------------------------------------

    /// <summary>
    /// Softmax over dimension <paramref name="axis"/> (negative counts from the end). Not the last axis:
    /// the axis is transposed to the end, the last-axis kernel runs, and the result is transposed back
    /// (autograd comes from those pieces).
    /// </summary>
    public Tensor Softmax(int axis) => SoftmaxOverAxis(axis, log: false);

    /// <summary>Log-softmax over dimension <paramref name="axis"/> (negative counts from the end); see <see cref="Softmax(int)"/>.</summary>
    public Tensor LogSoftmax(int axis) => SoftmaxOverAxis(axis, log: true);

    private Tensor SoftmaxOverAxis(int axis, bool log)
    {
        string name = log ? "LogSoftmax" : "Softmax";
        if (Rank == 0) throw new ArgumentException($"{name}({axis}): a tensor of rank 0 has no axis");
        int d = axis < 0 ? axis + Rank : axis;
        if (d < 0 || d >= Rank)
            throw new ArgumentOutOfRangeException(nameof(axis),
                $"{name}({axis}): a tensor of rank {Rank} {FormatShape(shape)} has dimensions {-Rank}..{Rank - 1}");
        if (d == Rank - 1) return SoftmaxLastAxis(log);
        // Not disposed here: the backward rules of the pieces read them (as Gather's transposes).
        return Transpose(d, -1).SoftmaxLastAxis(log).Transpose(d, -1);
    }

    // ---- Sequence masks --------------------------------------------------------------------------

    /// <summary>
    /// The [batch, maxLength] mask of a batch of sequences: row i is 1 at steps 0 .. lengths[i]-1 and 0 at
    /// the padding after them. Each length must lie in 0 .. maxLength.
    /// </summary>
    public static Tensor SequenceMask(long[] lengths, long maxLength, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        if (maxLength < 0)
            throw new ArgumentOutOfRangeException(nameof(maxLength), $"SequenceMask: maxLength is {maxLength}; it must be >= 0");
        long cells = checked(lengths.LongLength * maxLength);
        if (cells > Array.MaxLength)
            throw new ArgumentException($"SequenceMask: [{lengths.Length}, {maxLength}] is more elements than one host array holds", nameof(maxLength));
        var values = new float[cells];
        for (int i = 0; i < lengths.Length; i++)
        {
            if (lengths[i] < 0 || lengths[i] > maxLength)
                throw new ArgumentOutOfRangeException(nameof(lengths),
                    $"SequenceMask: length {lengths[i]} at position {i} is outside 0..{maxLength} (maxLength)");
            Array.Fill(values, 1f, (int)(i * maxLength), (int)lengths[i]);
        }
        return FromArray(values, new[] { lengths.LongLength, maxLength }, device);
    }
}
