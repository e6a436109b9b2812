using ScottPlot;

namespace Kernels.Benchmarks;

/// <summary>
/// The device comparison as pictures: SGEMM GFLOP/s against n (gemm.png) and elementwise add GB/s
/// against elements (bandwidth.png), one solid line per device for Kernels and a dashed line of the
/// same colour for its reference. Results from several machines (a CPU run here and a GPU run on the
/// GPU machine, merged by `report`) share one plot.
/// </summary>
public static class Plots
{
    public static List<string> Write(IReadOnlyList<ResultSet> sets, string directory)
    {
        var written = new List<string>();
        var all = sets.SelectMany(s => s.Results).ToList();
        if (Write(all.Where(r => r.Family == "gemm").ToList(), "SGEMM, square n x n x n", "n", "GFLOP/s",
                  r => (double)long.Parse(r.Shape.Split('x')[0]), Path.Combine(directory, "gemm.png")))
            written.Add(Path.Combine(directory, "gemm.png"));
        if (Write(all.Where(r => r.Family == "add").ToList(), "Elementwise add c = a + b (bytes read + written)", "elements", "GB/s",
                  r => ParseElements(r.Shape), Path.Combine(directory, "bandwidth.png")))
            written.Add(Path.Combine(directory, "bandwidth.png"));
        return written;
    }

    static bool Write(List<CaseResult> results, string title, string xLabel, string yLabel, Func<CaseResult, double> x, string path)
    {
        if (results.Count == 0) return false;
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int colour = 0;
        foreach (var device in results.GroupBy(r => $"{r.Device} ({r.DeviceDescription})"))
        {
            var points = device.OrderBy(x).ToList();
            double[] xs = points.Select(p => Math.Log2(x(p))).ToArray();
            var color = palette.GetColor(colour++);
            var ours = plot.Add.Scatter(xs, points.Select(p => p.KernelsThroughput).ToArray());
            ours.LegendText = $"Kernels on {Short(device.Key)}";
            ours.Color = color;
            ours.LineWidth = 2;
            ours.MarkerSize = 7;
            var reference = plot.Add.Scatter(xs, points.Select(p => p.ReferenceThroughput).ToArray());
            reference.LegendText = $"{ShortReference(points[0].Reference)} on {Short(device.Key)}";
            reference.Color = color;
            reference.LinePattern = LinePattern.Dashed;
        }
        plot.Title(title);
        plot.XLabel($"{xLabel} (log2 scale)");
        plot.YLabel(yLabel);
        // Ticks at the measured powers of two, labelled 128, 1K, 64M, ...
        var ticks = results.Select(x).Distinct().OrderBy(v => v).ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            ticks.Select(Math.Log2).ToArray(), ticks.Select(Label).ToArray());
        // Throughput axes start at zero, so bar heights compare honestly by eye.
        double top = results.Max(r => Math.Max(r.KernelsThroughput, r.ReferenceThroughput));
        plot.Axes.SetLimitsY(0, top * 1.15);
        plot.ShowLegend(Alignment.UpperLeft);
        plot.SavePng(path, 1000, 620);
        return true;
    }

    static string Short(string device) => device.Length > 60 ? device[..57] + "..." : device;

    static string ShortReference(string reference) => reference.Split(" (")[0];

    static double ParseElements(string shape) =>
        shape.EndsWith('M') ? double.Parse(shape[..^1]) * (1 << 20) : double.Parse(shape[..^1]) * 1024;

    static string Label(double v) => v >= 1 << 20 ? $"{v / (1 << 20):0}M" : v >= 1024 && v % 1024 == 0 && v > 4096 ? $"{v / 1024:0}K" : $"{v:0}";
}
