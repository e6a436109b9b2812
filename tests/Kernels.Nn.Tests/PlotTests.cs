using NUnit.Framework;
using SkiaSharp;

namespace Kernels.Nn.Tests;

/// <summary>History.SavePlot (Kernels.Nn.Plotting): the PNG decodes at the size asked for, follows the
/// history, is written atomically, and bad input is a typed error naming the problem.</summary>
[TestFixture]
public class PlotTests
{
    private string directory = null!;

    [SetUp]
    public void CreateDirectory() => directory = Directory.CreateTempSubdirectory("kernels-plot-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(directory, recursive: true);

    private static History MakeHistory(int epochs, double shift = 0, bool validation = true)
    {
        var history = new History();
        history.Values["loss"] = Enumerable.Range(1, epochs).Select(e => 1.0 / e + shift).ToList();
        history.Values["accuracy"] = Enumerable.Range(1, epochs).Select(e => 1 - 0.5 / e).ToList();
        if (validation)
        {
            history.Values["val_loss"] = Enumerable.Range(1, epochs).Select(e => 1.2 / e + 0.05).ToList();
            history.Values["val_accuracy"] = Enumerable.Range(1, epochs).Select(e => 0.95 - 0.5 / e).ToList();
        }
        return history;
    }

    private static (int Width, int Height) Decode(byte[] png)
    {
        using var bitmap = SKBitmap.Decode(png) ?? throw new AssertionException("the PNG does not decode");
        return (bitmap.Width, bitmap.Height);
    }

    [Test]
    public void SavePlot_writes_a_png_of_the_requested_size_and_nothing_else()
    {
        var path = Path.Combine(directory, "history.png");
        MakeHistory(6).SavePlot(path, "six epochs", width: 640, height: 480);
        var bytes = File.ReadAllBytes(path);
        Assert.That(bytes.Take(8), Is.EqualTo(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }), "PNG signature");
        Assert.That(Decode(bytes), Is.EqualTo((640, 480)));
        Assert.That(Directory.GetFiles(directory).Select(Path.GetFileName), Is.EqualTo(new[] { "history.png" }), "no temporary left behind");
    }

    [Test]
    public void The_picture_follows_the_history()
    {
        var first = MakeHistory(5).RenderPng();
        Assert.That(MakeHistory(5).RenderPng(), Is.EqualTo(first), "the same history draws the same bytes");
        Assert.That(MakeHistory(5, shift: 0.2).RenderPng(), Is.Not.EqualTo(first), "another loss curve");
        Assert.That(MakeHistory(5, validation: false).RenderPng(), Is.Not.EqualTo(first), "no validation curves");
        Assert.That(MakeHistory(5).RenderPng("another title"), Is.Not.EqualTo(first), "another title");
        var withMae = MakeHistory(5);
        withMae.Values["mae"] = new List<double> { 0.9, 0.7, 0.6, 0.5, 0.45 };   // a panel of its own
        Assert.That(withMae.RenderPng(), Is.Not.EqualTo(first), "a third metric");
        Assert.That(Decode(first), Is.EqualTo((900, 700)), "the default size");
    }

    [Test]
    public void Loss_only_one_epoch_and_missing_values_still_plot()
    {
        var lossOnly = new History();
        lossOnly.Values["loss"] = new List<double> { 0.5 };
        Assert.That(Decode(lossOnly.RenderPng(width: 300, height: 200)), Is.EqualTo((300, 200)));
        var withNaN = MakeHistory(4);
        withNaN.Values["loss"][1] = double.NaN;   // an epoch without batches: left out, not drawn at 0
        Assert.That(Decode(withNaN.RenderPng()), Is.EqualTo((900, 700)));
    }

    [Test]
    public void A_history_from_Fit_plots()
    {
        var x = new float[64 * 2];
        var y = new long[64];
        var random = new Random(1);
        for (int i = 0; i < 64; i++)
        {
            y[i] = i % 2;
            x[2 * i] = (float)(y[i] * 2 - 1 + 0.3 * random.NextDouble());
            x[2 * i + 1] = (float)random.NextDouble();
        }
        var network = new Sequential(new Dense(2, 8, seed: 1), Activation.Tanh(), new Dense(8, 2, seed: 2));
        using var model = new Model(network);
        model.Compile(new Adam(network.Parameters(), 0.05f), "sparse_categorical_crossentropy", "accuracy");
        var history = model.Fit(new ArrayDataset(x, new long[] { 2 }, y), epochs: 3, batchSize: 16, validationSplit: 0.25, verbose: 0);
        var path = Path.Combine(directory, "fit.png");
        history.SavePlot(path, width: 500, height: 400);
        Assert.That(Decode(File.ReadAllBytes(path)), Is.EqualTo((500, 400)));
    }

    [Test]
    public void An_existing_file_is_replaced_whole()
    {
        var path = Path.Combine(directory, "history.png");
        File.WriteAllText(path, "an older picture");
        MakeHistory(3).SavePlot(path, width: 320, height: 240);
        Assert.That(Decode(File.ReadAllBytes(path)), Is.EqualTo((320, 240)));
        Assert.That(Directory.GetFiles(directory), Has.Length.EqualTo(1));
    }

    [Test]
    public void Bad_input_is_a_typed_error_naming_the_problem_and_writes_nothing()
    {
        var path = Path.Combine(directory, "empty.png");
        var empty = Assert.Throws<ArgumentException>(() => new History().SavePlot(path))!;
        Assert.That(empty.Message, Does.Contain("empty"));
        Assert.That(File.Exists(path), Is.False);

        Assert.Throws<ArgumentOutOfRangeException>(() => MakeHistory(2).SavePlot(path, width: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => MakeHistory(2).SavePlot(path, height: HistoryPlot.MaxPixels + 1));

        // A folder that cannot exist: its parent is a file.
        var blocker = Path.Combine(directory, "not-a-folder");
        File.WriteAllText(blocker, "");
        var unwritable = Path.Combine(blocker, "history.png");
        var io = Assert.Throws<IOException>(() => MakeHistory(2).SavePlot(unwritable))!;
        Assert.That(io.Message, Does.Contain(unwritable));
        Assert.That(io.Message, Does.Not.Contain(".tmp"), "the message names the target, not the temporary");
        Assert.That(Directory.GetFiles(directory).Select(Path.GetFileName), Is.EqualTo(new[] { "not-a-folder" }));
    }
}
