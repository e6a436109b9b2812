using System.Globalization;
using ScottPlot;

namespace Kernels.Nn;

/// <summary>
/// A <see cref="History"/> as a picture: the losses ("loss", "val_loss", ...) on the top panel and each other
/// metric with its validation twin ("accuracy" and "val_accuracy", ...) on a panel of its own below, one point
/// per epoch. Training series are solid with dots, validation series dashed with squares in a second colour,
/// so over-fitting shows as the two lines parting.
/// <code>history.SavePlot("history.png", "MNIST MLP");</code>
/// </summary>
public static class HistoryPlot
{
    /// <summary>Largest width or height accepted, in pixels (a 16k x 16k RGBA canvas is already 1 GiB).</summary>
    public const int MaxPixels = 16384;

    /// <summary>
    /// Writes the plot of <paramref name="history"/> to <paramref name="path"/> as a PNG of
    /// <paramref name="width"/> x <paramref name="height"/> pixels, atomically: drawn in memory, written to a
    /// temporary file beside the target and renamed over it, so an existing file is replaced whole or left as
    /// it was. An empty history is an <see cref="ArgumentException"/>; a path that cannot be written is an
    /// <see cref="IOException"/> naming it.
    /// </summary>
    public static void SavePlot(this History history, string path, string? title = null, int width = 900, int height = 700)
    {
        ArgumentNullException.ThrowIfNull(path);
        var png = RenderPng(history, title, width, height);
        // All or nothing, like the model files: a temporary beside the target, renamed over it when complete.
        AtomicFile.Write(path, "plot", stream => stream.Write(png));
    }

    /// <summary>The PNG bytes <see cref="SavePlot"/> writes.</summary>
    public static byte[] RenderPng(this History history, string? title = null, int width = 900, int height = 700)
    {
        ArgumentNullException.ThrowIfNull(history);
        if (width < 1 || width > MaxPixels || height < 1 || height > MaxPixels)
            throw new ArgumentOutOfRangeException(width < 1 || width > MaxPixels ? nameof(width) : nameof(height),
                $"the plot's size {width} x {height} must be 1 to {MaxPixels} pixels each way");
        if (history.Epochs == 0)
            throw new ArgumentException("the history is empty (no epoch recorded): nothing to plot", nameof(history));

        // Panels in the order Fit recorded the names: the losses, then one per metric (with its val_ twin).
        var losses = history.Values.Keys.Where(IsLoss).ToList();
        var groups = new List<(List<string> Names, string Label)>();
        if (losses.Count > 0) groups.Add((losses, "loss"));
        foreach (var metric in history.Values.Keys.Where(k => !IsLoss(k)).GroupBy(BaseName))
            groups.Add((metric.ToList(), metric.Key));
        // A new Multiplot holds one empty plot; AddPlots tops it up to the count asked for (rows, top to bottom).
        var multiplot = new Multiplot();
        multiplot.AddPlots(groups.Count);
        var panels = groups.Select((g, i) => Panel(multiplot.GetPlot(i), history, g.Names, g.Label)).ToList();
        panels[0].Title(title ?? "Training history");
        // The same epoch range on every panel, labelled on the bottom one only.
        for (int i = 0; i < panels.Count; i++)
        {
            if (i == panels.Count - 1) panels[i].XLabel("epoch");
            panels[i].Axes.SetLimitsX(0.5, history.Epochs + 0.5);
            // Same margins on every panel, so an epoch sits at the same x in both whatever the tick labels' widths.
            panels[i].Layout.Fixed(new PixelPadding(left: 80, right: 20, bottom: i == panels.Count - 1 ? 50 : 30, top: i == 0 ? 40 : 15));
        }
        using var image = multiplot.Render(width, height);
        return image.GetImageBytes(ImageFormat.Png, 100);
    }

    // "loss", "val_loss" and any other "*loss" (a named loss of a multi-output model) share the loss panel.
    private static bool IsLoss(string name) => name.EndsWith("loss", StringComparison.Ordinal);

    private static string BaseName(string name) => name.StartsWith("val_", StringComparison.Ordinal) ? name[4..] : name;

    private static Plot Panel(Plot plot, History history, List<string> names, string yLabel)
    {
        var palette = new ScottPlot.Palettes.Category10();
        var bases = new List<string>();
        bool? rising = null;   // the first series' trend, from its first and last values
        foreach (var name in names)
        {
            // Epochs whose value is not a number (a loss over no batches) are left out, not drawn at 0.
            var values = history[name];
            var xs = new List<double>();
            var ys = new List<double>();
            for (int e = 0; e < values.Count; e++)
                if (double.IsFinite(values[e])) { xs.Add(e + 1); ys.Add(values[e]); }
            if (xs.Count == 0) continue;
            rising ??= ys.Count > 1 ? ys[^1] > ys[0] : null;
            // Colour pairs per quantity (Category10: blue / orange, then green / red for a second loss, ...):
            // training solid with dots, validation dashed with squares, told apart even in a one-epoch plot
            // where no line shows.
            var key = BaseName(name);
            if (!bases.Contains(key)) bases.Add(key);
            bool validation = name.StartsWith("val_", StringComparison.Ordinal);
            var line = plot.Add.Scatter(xs.ToArray(), ys.ToArray());
            line.LegendText = name;
            line.Color = palette.GetColor(2 * bases.IndexOf(key) + (validation ? 1 : 0));
            line.LineWidth = 2;
            line.MarkerSize = 7;
            if (validation)
            {
                line.LinePattern = LinePattern.Dashed;
                line.MarkerShape = MarkerShape.FilledSquare;
            }
        }
        plot.YLabel(yLabel);
        // Whole epochs only: 1, 2, 3 ... (every k-th when there are many).
        int epochs = history.Epochs, step = Math.Max(1, (int)Math.Ceiling(epochs / 12.0));
        var ticks = Enumerable.Range(1, epochs).Where(e => (e - 1) % step == 0).Select(e => (double)e).ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            ticks, ticks.Select(t => t.ToString(CultureInfo.InvariantCulture)).ToArray());
        // The legend goes in the corner the curves leave free as training goes: upper right above a falling
        // curve (a loss, an error), lower right below a rising one (accuracy).
        plot.ShowLegend(rising == true ? Alignment.LowerRight : Alignment.UpperRight);
        return plot;
    }
}
