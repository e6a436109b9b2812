using System.Globalization;
using System.Text.Json;

namespace Kernels.Benchmarks;

/// <summary>
/// The committed baseline of the quick regression mode: for each case its ratio to the reference on
/// the machine kind CI runs on, and the tolerance. A run fails when a case's ratio falls more than the
/// tolerance below its baseline (ratio &lt; baseline * (1 - tolerance)). Ratios, not times, so a busier
/// or faster machine of the same kind moves both sides and not the verdict. Updating it is a commit
/// of its own: `scripts/ci-bench.sh --write-baseline` (see benchmarks/README.md).
/// </summary>
public sealed record Baseline
{
    /// <summary>Allowed fractional drop below the baseline ratio before a case counts as regressed.</summary>
    public required double Tolerance { get; init; }
    /// <summary>Per-case tolerances where a case is noisier than the rest (with the reason in Why).</summary>
    public Dictionary<string, double> CaseTolerances { get; init; } = new();
    public required string Why { get; init; }
    public required MachineInfo Machine { get; init; }
    public required DateTimeOffset Date { get; init; }
    public required SortedDictionary<string, double> Ratios { get; init; }

    public static Baseline Load(string path) =>
        JsonSerializer.Deserialize<Baseline>(File.ReadAllText(path), ResultSet.Json)
        ?? throw new InvalidDataException($"{path}: not a baseline file");

    public void Save(string path) => File.WriteAllText(path, JsonSerializer.Serialize(this, ResultSet.Json) + "\n");

    public double ToleranceOf(string id) => CaseTolerances.TryGetValue(id, out double t) ? t : Tolerance;
}

public enum Verdict { Pass, Faster, Regressed, Missing, New }

public sealed record Comparison(string Id, double? Baseline, double? Measured, double Tolerance, Verdict Verdict)
{
    /// <summary>Measured / baseline - 1, e.g. -0.31 for a ratio 31% below its baseline.</summary>
    public double? Change => Baseline is { } b && Measured is { } m ? m / b - 1 : null;

    public override string ToString()
    {
        string b = Baseline is { } bv ? bv.ToString("F2", CultureInfo.InvariantCulture) + "x" : "-";
        string m = Measured is { } mv ? mv.ToString("F2", CultureInfo.InvariantCulture) + "x" : "-";
        string change = Change is { } c ? c.ToString("+0.0%;-0.0%", CultureInfo.InvariantCulture) : "";
        string verdict = Verdict switch
        {
            Verdict.Pass => "ok",
            Verdict.Faster => "ok (faster than the baseline: consider updating it)",
            Verdict.Regressed => $"REGRESSED (more than {Tolerance:P0} below the baseline)",
            Verdict.Missing => "MISSING (in the baseline, not measured)",
            _ => "new (no baseline yet)",
        };
        return $"  {Id,-48} baseline {b,7}  now {m,7}  {change,7}  {verdict}";
    }

    public static Comparison Of(string id, Baseline baseline, double? measured)
    {
        double tolerance = baseline.ToleranceOf(id);
        if (!baseline.Ratios.TryGetValue(id, out double b)) return new(id, null, measured, tolerance, Verdict.New);
        if (measured is not { } m) return new(id, b, null, tolerance, Verdict.Missing);
        if (m < b * (1 - tolerance)) return new(id, b, m, tolerance, Verdict.Regressed);
        if (m > b * (1 + tolerance)) return new(id, b, m, tolerance, Verdict.Faster);
        return new(id, b, m, tolerance, Verdict.Pass);
    }
}
