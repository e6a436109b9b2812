namespace Kernels.BindingsGen;

/// <summary>Thrown for anything the generator cannot translate faithfully; Main prints it and exits non-zero.</summary>
sealed class GeneratorException(string message) : Exception(message);

/// <summary>One enumerator of a C enum, with its value as clang computed it.</summary>
sealed record EnumMember(string CName, long Value, string? Comment);

/// <summary>A C enum, named by its typedef when it has one (kn_status), else by its tag.</summary>
sealed record CEnum(string CName, string? Comment, IReadOnlyList<EnumMember> Members);

/// <summary>
/// A function parameter: the C spelling of its type as clang printed it, its name, and whether the
/// header marks it KN_OPTIONAL (a pointer that may be NULL).
/// </summary>
sealed record CParameter(string CType, string Name, bool Optional);

/// <summary>An exported function of the header.</summary>
sealed record CFunction(string Name, string ReturnCType, IReadOnlyList<CParameter> Parameters, string? Comment);

/// <summary>An integer object-like macro (#define KN_NAME 42).</summary>
sealed record CConstant(string Name, long Value, string? Comment);

/// <summary>Everything the generator emits, in header order.</summary>
sealed record HeaderModel(
    IReadOnlyList<CEnum> Enums,
    IReadOnlySet<string> OpaqueTypes,
    IReadOnlyList<CFunction> Functions,
    IReadOnlyList<CConstant> Constants);
