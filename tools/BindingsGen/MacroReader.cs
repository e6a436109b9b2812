using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Kernels.BindingsGen;

/// <summary>
/// Reads the header's integer macros (#define KN_NAME 42) from its text. clang's JSON AST has no
/// preprocessor macros in it, so this is the one place the generator reads the header directly.
/// </summary>
static partial class MacroReader
{
    [GeneratedRegex(@"^\s*#\s*define\s+(KN_[A-Za-z0-9_]+)(\(?)\s*(.*?)\s*$")]
    private static partial Regex DefineLine();

    [GeneratedRegex(@"^\(?\s*(-?)\s*(0[xX][0-9A-Fa-f]+|\d+)[uUlL]*\s*\)?\s*(?:/\*.*\*/|//.*)?$")]
    private static partial Regex IntegerValue();

    public static IReadOnlyList<CConstant> Read(byte[] header)
    {
        string[] lines = Encoding.UTF8.GetString(header).Replace("\r", "", StringComparison.Ordinal).Split('\n');
        var constants = new List<CConstant>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < lines.Length; i++)
        {
            Match define = DefineLine().Match(lines[i]);
            if (!define.Success)
                continue;
            string name = define.Groups[1].Value;
            string body = define.Groups[3].Value;
            if (define.Groups[2].Value == "(")
                throw new GeneratorException($"#define {name}(...): function-like macros have no C# counterpart; make it a function");
            // Export decorations (KN_API) and empty flag macros are not constants.
            if (body.Length == 0 || body.Contains("__attribute__", StringComparison.Ordinal) || body.Contains("__declspec", StringComparison.Ordinal))
                continue;
            Match integer = IntegerValue().Match(body);
            if (!integer.Success)
                throw new GeneratorException($"#define {name} {body}: only integer constants can be mirrored into NativeConstants");
            string digits = integer.Groups[2].Value;
            long value = digits.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                ? long.Parse(digits.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture)
                : long.Parse(digits, CultureInfo.InvariantCulture);
            if (integer.Groups[1].Value == "-")
                value = -value;
            if (!seen.Add(name))
                throw new GeneratorException($"#define {name} appears twice in kernels.h; the generator cannot tell which one is active");
            constants.Add(new CConstant(name, value, CommentAbove(lines, i)));
        }
        return constants;
    }

    /// <summary>A /* */ or // comment that ends on the line right above the #define, if any.</summary>
    static string? CommentAbove(string[] lines, int defineLine)
    {
        int last = defineLine - 1;
        if (last < 0)
            return null;
        string end = lines[last].Trim();
        if (end.StartsWith("//", StringComparison.Ordinal))
            return CommentText.Clean(end);
        if (!end.EndsWith("*/", StringComparison.Ordinal))
            return null;
        int first = last;
        while (first >= 0 && !lines[first].Contains("/*", StringComparison.Ordinal))
            first--;
        if (first < 0)
            return null;
        string raw = string.Join("\n", lines[first..(last + 1)]);
        raw = raw[(raw.IndexOf("/*", StringComparison.Ordinal) + 2)..];
        string text = CommentText.Clean(raw);
        return text.Length == 0 ? null : text;
    }
}
