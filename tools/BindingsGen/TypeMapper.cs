namespace Kernels.BindingsGen;

/// <summary>
/// Maps the C types of the header to blittable C# types. The table is deliberately closed: a type
/// it does not know (size_t, bool, long, a struct by value, a function pointer) stops the generator
/// with the declaration's name, so kernels.h cannot outgrow its bindings unnoticed.
/// </summary>
sealed class TypeMapper
{
    static readonly Dictionary<string, string> Scalars = new(StringComparer.Ordinal)
    {
        ["int8_t"] = "sbyte", ["uint8_t"] = "byte",
        ["int16_t"] = "short", ["uint16_t"] = "ushort",
        ["int32_t"] = "int", ["uint32_t"] = "uint",
        ["int64_t"] = "long", ["uint64_t"] = "ulong",
        ["float"] = "float", ["double"] = "double",
    };

    readonly Dictionary<string, string> _enums = new(StringComparer.Ordinal); // C spelling -> C# enum
    readonly IReadOnlySet<string> _opaque;

    public TypeMapper(HeaderModel model)
    {
        foreach (CEnum e in model.Enums)
        {
            _enums[e.CName] = Naming.EnumType(e.CName);
            _enums["enum " + e.CName] = Naming.EnumType(e.CName);
        }
        _opaque = model.OpaqueTypes;
    }

    /// <summary>The C# type for a C type spelled as clang prints it ("const kn_buffer *").</summary>
    public string Map(string cType, string where)
    {
        if (cType.IndexOfAny(['(', '[', ']']) >= 0 || cType.Contains("...", StringComparison.Ordinal))
            throw Unknown(cType, where);
        string baseType = BaseType(cType, out int depth);

        if (Scalars.TryGetValue(baseType, out string? scalar) || _enums.TryGetValue(baseType, out scalar))
        {
            return depth switch
            {
                0 => scalar,
                1 => scalar + "*", // out-parameters and arrays (const int64_t* dims)
                _ => throw Unknown(cType, where),
            };
        }
        if (baseType == "char")
        {
            // UTF-8 text: const char* in and out, const char** for strings returned through out-pointers.
            return depth switch
            {
                1 => "byte*",
                2 => "byte**",
                _ => throw Unknown(cType, where),
            };
        }
        if (baseType == "void")
        {
            return depth switch
            {
                0 => "void",
                1 => "void*",
                2 => "void**",   // an address returned through an out-pointer (kn_buffer_address)
                _ => throw Unknown(cType, where),
            };
        }
        if (_opaque.Contains(baseType))
        {
            // Handles are plain pointers to native-owned memory; the safe layer wraps them.
            return depth switch
            {
                1 => "nint",
                2 => "nint*",
                _ => throw Unknown(cType, where),
            };
        }
        throw Unknown(cType, where);
    }

    /// <summary>"const kn_buffer *" -> "kn_buffer" with <paramref name="depth"/> 1: the type without qualifiers, and how many pointers lead to it.</summary>
    public static string BaseType(string cType, out int depth)
    {
        depth = cType.Count(ch => ch == '*');
        // const changes nothing for interop (the callee promises not to write); restrict neither.
        string[] words = cType.Replace("*", " ", StringComparison.Ordinal)
            .Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Where(w => w is not ("const" or "restrict" or "__restrict"))
            .ToArray();
        return string.Join(" ", words);
    }

    static GeneratorException Unknown(string cType, string where) =>
        new($"{where}: the C type '{cType}' has no mapping in tools/BindingsGen/TypeMapper.cs " +
            "(the C API allows fixed-width integers, float, enums, opaque handles, char/void pointers and void** out-addresses)");
}
