using System.Globalization;
using System.Text;

namespace Kernels.BindingsGen;

/// <summary>Writes NativeMethods.g.cs. Output depends only on the model: same header, same bytes, "\n" newlines.</summary>
static class CSharpWriter
{
    public static string Write(HeaderModel model, string headerRelativePath)
    {
        var types = new TypeMapper(model);
        var w = new Writer();
        w.GeneratedFileHeader(headerRelativePath, "System.Runtime.InteropServices");
        w.Line("namespace Kernels;");

        foreach (CEnum e in model.Enums)
        {
            w.Line();
            WriteEnum(w, e);
        }

        w.Line();
        WriteConstants(w, model.Constants);

        w.Line();
        w.Line("/// <summary>One <c>[LibraryImport]</c> per function of kernels.h, under its C name. Use the safe layer instead.</summary>");
        w.Line("internal static unsafe partial class NativeMethods");
        w.Line("{");
        w.Indent++;
        w.Line("/// <summary>The library name; <see cref=\"NativeLibraryResolver\"/> maps it to libkernels.so, libkernels.dylib or kernels.dll.</summary>");
        w.Line("internal const string Library = \"kernels\";");
        foreach (CFunction f in model.Functions)
        {
            w.Line();
            WriteFunction(w, f, types);
        }
        w.Indent--;
        w.Line("}");
        return w.ToString();
    }

    static void WriteEnum(Writer w, CEnum e)
    {
        IReadOnlyList<string> names = Naming.EnumMembers(e);
        WriteSummary(w, e.Comment, $"<c>{e.CName}</c>");
        w.Line($"public enum {Naming.EnumType(e.CName)} : int");
        w.Line("{");
        w.Indent++;
        for (int i = 0; i < e.Members.Count; i++)
        {
            EnumMember m = e.Members[i];
            WriteSummary(w, m.Comment, $"<c>{m.CName}</c>");
            w.Line($"{names[i]} = {m.Value.ToString(CultureInfo.InvariantCulture)},");
        }
        w.Indent--;
        w.Line("}");
    }

    static void WriteConstants(Writer w, IReadOnlyList<CConstant> constants)
    {
        w.Line("/// <summary>The integer <c>#define KN_*</c> macros of kernels.h.</summary>");
        w.Line("// clang's JSON AST does not contain preprocessor macros, so the generator reads these from the");
        w.Line("// header's \"#define KN_NAME <integer>\" lines (tools/BindingsGen/MacroReader.cs).");
        w.Line("public static class NativeConstants");
        w.Line("{");
        w.Indent++;
        for (int i = 0; i < constants.Count; i++)
        {
            CConstant c = constants[i];
            if (i > 0)
                w.Line();
            WriteSummary(w, c.Comment, $"<c>{c.Name}</c>");
            string type = c.Value is >= int.MinValue and <= int.MaxValue ? "int" : "long";
            w.Line($"public const {type} {c.Name} = {c.Value.ToString(CultureInfo.InvariantCulture)};");
        }
        w.Indent--;
        w.Line("}");
    }

    static void WriteFunction(Writer w, CFunction f, TypeMapper types)
    {
        string returnType = types.Map(f.ReturnCType, $"{f.Name} (return type)");
        var parameters = new List<string>();
        foreach (CParameter p in f.Parameters)
            parameters.Add($"{types.Map(p.CType, $"{f.Name} (parameter '{p.Name}')")} {Naming.Parameter(p.Name)}");
        w.Line($"// {Prototype(f)}");
        if (f.Comment is not null)
            WriteSummary(w, f.Comment, null);
        w.Line("[LibraryImport(Library)]");
        w.Line($"internal static partial {returnType} {f.Name}({string.Join(", ", parameters)});");
    }

    /// <summary>The C prototype as the header writes it, KN_OPTIONAL included: "kn_status kn_x(const kn_buffer* x, ...);".</summary>
    internal static string Prototype(CFunction f)
    {
        var cParameters = f.Parameters.Select(p => $"{(p.Optional ? "KN_OPTIONAL " : "")}{CSpelling(p.CType)} {p.Name}").ToList();
        string cList = cParameters.Count == 0 ? "void" : string.Join(", ", cParameters);
        return $"{CSpelling(f.ReturnCType)} {f.Name}({cList});";
    }

    /// <summary>"const kn_buffer *" -> "const kn_buffer*", the header's own style.</summary>
    static string CSpelling(string cType)
    {
        string s = cType.Trim();
        while (s.Contains(" *", StringComparison.Ordinal))
            s = s.Replace(" *", "*", StringComparison.Ordinal);
        return s;
    }

    /// <summary>A /// summary from the C comment; <paramref name="cName"/> (already XML) is appended so each member names its C original.</summary>
    static void WriteSummary(Writer w, string? comment, string? cName)
    {
        var lines = new List<string>();
        if (comment is not null)
            lines.AddRange(comment.Split('\n').Select(Xml));
        if (cName is not null)
        {
            if (lines.Count == 0)
                lines.Add(cName);
            else
                lines[^1] = lines[^1].Length == 0 ? cName : $"{lines[^1]} ({cName})";
        }
        if (lines.Count == 1)
        {
            w.Line($"/// <summary>{lines[0]}</summary>");
            return;
        }
        w.Line("/// <summary>");
        foreach (string line in lines)
            w.Line(line.Length == 0 ? "///" : $"/// {line}");
        w.Line("/// </summary>");
    }

    internal static string Xml(string text) => text
        .Replace("&", "&amp;", StringComparison.Ordinal)
        .Replace("<", "&lt;", StringComparison.Ordinal)
        .Replace(">", "&gt;", StringComparison.Ordinal);
}

/// <summary>Builds generated text line by line with four-space indentation and "\n" newlines.</summary>
sealed class Writer
{
    readonly StringBuilder _text = new();
    public int Indent;

    /// <summary>The opening every generated file shares: where it comes from, how to regenerate and check it, and its one using.</summary>
    public void GeneratedFileHeader(string headerRelativePath, string usingNamespace)
    {
        Line($"// <auto-generated> by tools/BindingsGen from {headerRelativePath}. Do not edit.");
        Line("// Regenerate: dotnet run --project tools/BindingsGen");
        Line("// Check:      dotnet run --project tools/BindingsGen -- --check");
        Line();
        Line("#nullable enable");
        Line();
        Line($"using {usingNamespace};");
        Line();
    }

    public void Line(string line = "")
    {
        if (line.Length > 0)
            _text.Append(' ', Indent * 4).Append(line);
        _text.Append('\n');
    }

    public override string ToString() => _text.ToString();
}
