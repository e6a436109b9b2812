using NUnit.Framework;

namespace Kernels.Nn.Tests;

/// <summary>
/// The sparse cross-entropy on a float target tensor (class indices as datasets yield them): the one
/// place that turns such targets into labels, instead of a conversion in every sample and test.
/// </summary>
[TestFixture]
public class SparseTargetTests
{
    private static readonly float[] LogitValues = { 0.5f, -1f, 2f, 0f, 3f, -0.5f, 1f, 1f, -2f, 0.25f, 0.75f, -1.5f };

    [Test]
    public void Float_targets_give_the_same_loss_and_gradient_as_integer_labels()
    {
        using var logitsA = Tensor.FromArray(LogitValues, new long[] { 4, 3 });
        using var logitsB = Tensor.FromArray(LogitValues, new long[] { 4, 3 });
        logitsA.RequiresGrad = true;
        logitsB.RequiresGrad = true;
        using var target = Tensor.FromArray(new float[] { 2, 0, 1, 2 });

        using var fromTensor = Losses.SparseCategoricalCrossEntropy(logitsA, target);
        using var fromLabels = Losses.SparseCategoricalCrossEntropy(logitsB, new long[] { 2, 0, 1, 2 });
        fromTensor.Backward();
        fromLabels.Backward();

        Assert.That(fromTensor.Item(), Is.EqualTo(fromLabels.Item()), "same loss");
        Assert.That(logitsA.Grad!.ToArray(), Is.EqualTo(logitsB.Grad!.ToArray()), "same gradient");
    }

    [Test]
    public void The_float_target_overload_is_a_loss_function()
    {
        LossFunction loss = Losses.SparseCategoricalCrossEntropy;
        using var logits = Tensor.FromArray(LogitValues, new long[] { 4, 3 });
        using var target = Tensor.FromArray(new float[] { 0, 1, 2, 0 });
        using var value = loss(logits, target);
        Assert.That(float.IsFinite(value.Item()) && value.Item() > 0, $"a positive finite loss, got {value.Item()}");
    }

    [TestCase(1.5f, "1.5", TestName = "A fractional target is refused, not truncated")]
    [TestCase(-1f, "-1", TestName = "A negative target is refused")]
    [TestCase(float.NaN, "NaN", TestName = "A NaN target is refused")]
    [TestCase(3f, "3", TestName = "A target past the last class is refused")]
    public void Bad_targets_are_refused_with_their_value_and_index(float bad, string shown)
    {
        using var logits = Tensor.FromArray(LogitValues, new long[] { 4, 3 });
        using var target = Tensor.FromArray(new float[] { 0, 1, bad, 2 });
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Losses.SparseCategoricalCrossEntropy(logits, target));
        Assert.That(error!.ParamName, Is.EqualTo("target"));
        Assert.That(error.Message, Does.Contain(shown).And.Contain("index 2"));
    }

    [Test]
    public void A_target_count_that_does_not_match_the_rows_is_a_shape_mismatch()
    {
        using var logits = Tensor.FromArray(LogitValues, new long[] { 4, 3 });
        using var target = Tensor.FromArray(new float[] { 0, 1, 2 });
        var error = Assert.Throws<ShapeMismatchException>(() => Losses.SparseCategoricalCrossEntropy(logits, target));
        Assert.That(error!.Message, Does.Contain("3 labels").And.Contain("4 rows"));
    }
}
