using System.Text;

namespace Kernels.BindingsGen;

/// <summary>C names to C# names: kn_unary_op -> UnaryOp, KN_UNARY_LEAKY_RELU -> LeakyRelu.</summary>
static class Naming
{
    // Where plain PascalCase of the C words reads wrong in C#.
    static readonly Dictionary<string, string> TypeOverrides = new(StringComparer.Ordinal)
    {
        ["kn_argreduce_op"] = "ArgReduceOp",
    };

    static readonly Dictionary<string, string> MemberOverrides = new(StringComparer.Ordinal)
    {
        ["KN_DEVICE_OPENCL"] = "OpenCL",
    };

    static readonly HashSet<string> CSharpKeywords = new(StringComparer.Ordinal)
    {
        "abstract", "as", "base", "bool", "break", "byte", "case", "catch", "char", "checked", "class", "const",
        "continue", "decimal", "default", "delegate", "do", "double", "else", "enum", "event", "explicit",
        "extern", "false", "finally", "fixed", "float", "for", "foreach", "goto", "if", "implicit", "in", "int",
        "interface", "internal", "is", "lock", "long", "namespace", "new", "null", "object", "operator", "out",
        "override", "params", "private", "protected", "public", "readonly", "ref", "return", "sbyte", "sealed",
        "short", "sizeof", "stackalloc", "static", "string", "struct", "switch", "this", "throw", "true", "try",
        "typeof", "uint", "ulong", "unchecked", "unsafe", "ushort", "using", "virtual", "void", "volatile", "while",
    };

    /// <summary>kn_device_kind -> DeviceKind.</summary>
    public static string EnumType(string cName)
    {
        if (TypeOverrides.TryGetValue(cName, out string? name))
            return name;
        string bare = cName.StartsWith("kn_", StringComparison.Ordinal) ? cName[3..] : cName;
        return PascalCase(bare);
    }

    /// <summary>
    /// Member names of one enum: the longest common prefix that ends at an underscore is dropped
    /// (KN_UNARY_), the rest PascalCased. The prefix shrinks when dropping it would leave a name that
    /// is empty or starts with a digit.
    /// </summary>
    public static IReadOnlyList<string> EnumMembers(CEnum e)
    {
        var names = e.Members.Select(m => m.CName).ToList();
        if (names.Count == 0)
            throw new GeneratorException($"enum {e.CName} has no members");
        string prefix = names[0];
        foreach (string name in names)
        {
            int length = 0;
            while (length < prefix.Length && length < name.Length && prefix[length] == name[length])
                length++;
            prefix = prefix[..length];
        }
        prefix = prefix[..(prefix.LastIndexOf('_') + 1)];
        while (prefix.Length > 0 && names.Any(n => n.Length == prefix.Length || char.IsDigit(n[prefix.Length])))
            prefix = prefix[..(prefix[..^1].LastIndexOf('_') + 1)];

        var result = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string name in names)
        {
            string member = MemberOverrides.TryGetValue(name, out string? o) ? o : PascalCase(name[prefix.Length..]);
            if (!seen.Add(member))
                throw new GeneratorException($"enum {e.CName}: two members map to the C# name '{member}'");
            result.Add(member);
        }
        return result;
    }

    /// <summary>Parameter names stay as in C (so the prototype comment lines up), escaped where they are C# keywords.</summary>
    public static string Parameter(string cName) => CSharpKeywords.Contains(cName) ? "@" + cName : cName;

    static string PascalCase(string snake)
    {
        var builder = new StringBuilder(snake.Length);
        foreach (string word in snake.Split('_', StringSplitOptions.RemoveEmptyEntries))
        {
            builder.Append(char.ToUpperInvariant(word[0]));
            builder.Append(word[1..].ToLowerInvariant());
        }
        if (builder.Length == 0 || !(char.IsLetter(builder[0]) || builder[0] == '_'))
            throw new GeneratorException($"'{snake}' does not give a valid C# identifier");
        return builder.ToString();
    }
}
