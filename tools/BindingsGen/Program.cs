// BindingsGen: writes bindings/NativeMethods.g.cs (one [LibraryImport] per function) and
// bindings/SafeNativeMethods.g.cs (one leasing, status-checking wrapper per export on buffers) from
// clang's AST of native/include/kernels.h.
//
//   dotnet run --project tools/BindingsGen [-- [--check] [--clang PATH] [--header PATH] [--out PATH] [--safe-out PATH]]
//
// Exit codes: 0 done (or --check found the file current), 1 --check found a difference,
// 2 the header or the tools were not usable (the message names the declaration or the path).

using System.Text;
using Kernels.BindingsGen;

return Cli.Run(args);

static class Cli
{
    const string Usage =
        "usage: BindingsGen [--check] [--clang PATH] [--header PATH] [--out PATH] [--safe-out PATH]\n" +
        "  --check        regenerate in memory and compare with the output files; exit 1 if one differs\n" +
        "  --clang PATH   the clang to run (default: clang-14)\n" +
        "  --header PATH  the C header (default: native/include/kernels.h of the repository)\n" +
        "  --out PATH     the generated imports (default: bindings/NativeMethods.g.cs of the repository)\n" +
        "  --safe-out PATH the generated safe wrappers (default: bindings/SafeNativeMethods.g.cs of the repository)";

    public static int Run(string[] args)
    {
        try
        {
            return Generate(args);
        }
        catch (GeneratorException e)
        {
            Console.Error.WriteLine($"BindingsGen: error: {e.Message}");
            return 2;
        }
    }

    static int Generate(string[] args)
    {
        bool check = false;
        string clang = "clang-14";
        string? header = null, output = null, safeOutput = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--check": check = true; break;
                case "--clang": clang = Value(args, ref i); break;
                case "--header": header = Value(args, ref i); break;
                case "--out": output = Value(args, ref i); break;
                case "--safe-out": safeOutput = Value(args, ref i); break;
                case "-h" or "--help": Console.WriteLine(Usage); return 0;
                default:
                    Console.Error.WriteLine($"BindingsGen: unknown argument '{args[i]}'\n{Usage}");
                    return 2;
            }
        }

        string? root = FindRepositoryRoot();
        header ??= root is null
            ? throw new GeneratorException("cannot find native/include/kernels.h above the current directory; pass --header")
            : Path.Combine(root, "native", "include", "kernels.h");
        output ??= root is null
            ? throw new GeneratorException("cannot find the repository root; pass --out")
            : Path.Combine(root, "bindings", "NativeMethods.g.cs");
        safeOutput ??= root is null
            ? throw new GeneratorException("cannot find the repository root; pass --safe-out")
            : Path.Combine(root, "bindings", "SafeNativeMethods.g.cs");
        header = Path.GetFullPath(header);
        output = Path.GetFullPath(output);
        safeOutput = Path.GetFullPath(safeOutput);
        if (!File.Exists(header))
            throw new GeneratorException($"header not found: {header}");

        string headerName = root is not null && header.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal)
            ? Path.GetRelativePath(root, header).Replace('\\', '/')
            : Path.GetFileName(header);

        byte[] headerBytes = File.ReadAllBytes(header);
        string json = ClangAst.Dump(clang, header);
        HeaderModel model = ClangAst.Read(json, header, headerBytes);
        string generated = CSharpWriter.Write(model, headerName);
        string safeGenerated = SafeWrapperWriter.Write(model, headerName);

        if (check)
        {
            // Check both, so one run names every stale file.
            int importsCheck = Check(generated, output);
            int wrappersCheck = Check(safeGenerated, safeOutput);
            return Math.Max(importsCheck, wrappersCheck);
        }

        var utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);
        File.WriteAllBytes(output, utf8.GetBytes(generated));
        Console.WriteLine($"BindingsGen: wrote {output} ({model.Functions.Count} functions, {model.Enums.Count} enums, {model.Constants.Count} constants)");
        File.WriteAllBytes(safeOutput, utf8.GetBytes(safeGenerated));
        Console.WriteLine($"BindingsGen: wrote {safeOutput}");
        return 0;
    }

    static int Check(string generated, string output)
    {
        if (!File.Exists(output))
        {
            Console.Error.WriteLine($"BindingsGen --check: {output} does not exist; run: dotnet run --project tools/BindingsGen");
            return 1;
        }
        // A checkout with core.autocrlf may turn "\n" into "\r\n"; that is not a difference in content.
        string existing = File.ReadAllText(output).Replace("\r\n", "\n", StringComparison.Ordinal);
        if (existing == generated)
        {
            Console.WriteLine($"BindingsGen --check: {output} is up to date");
            return 0;
        }

        string[] want = generated.Split('\n');
        string[] have = existing.Split('\n');
        int line = 0;
        while (line < want.Length && line < have.Length && want[line] == have[line])
            line++;
        Console.Error.WriteLine($"BindingsGen --check: {output} differs from what kernels.h generates, first at line {line + 1}:");
        for (int i = line; i < Math.Min(line + 5, Math.Max(want.Length, have.Length)); i++)
        {
            Console.Error.WriteLine($"  checked in {i + 1,5}: {(i < have.Length ? have[i] : "<end of file>")}");
            Console.Error.WriteLine($"  generated  {i + 1,5}: {(i < want.Length ? want[i] : "<end of file>")}");
        }
        Console.Error.WriteLine("Regenerate it: dotnet run --project tools/BindingsGen");
        return 1;
    }

    static string Value(string[] args, ref int i)
    {
        if (i + 1 >= args.Length)
            throw new GeneratorException($"{args[i]} needs a value");
        return args[++i];
    }

    /// <summary>The nearest directory holding native/include/kernels.h, from the working directory up, then from the tool's own location up.</summary>
    static string? FindRepositoryRoot()
    {
        foreach (string start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "native", "include", "kernels.h")))
                    return dir.FullName;
            }
        }
        return null;
    }
}
