namespace Kernels.BindingsGen;

/// <summary>
/// Writes SafeNativeMethods.g.cs: for each export of kernels.h that works on buffers, a method that
/// takes <c>DeviceBuffer</c> operands, leases each one for the length of the call (BufferLease: a null
/// required buffer throws ArgumentNullException, a disposed one ObjectDisposedException, before any
/// native code runs), pins the shapes and turns the returned status into an exception (Ensure.Success).
/// Which buffers may be null comes from the header's KN_OPTIONAL, so the rule is written once.
/// The hand-written safe layer (Ops, DeviceBuffer) then only maps its public signature onto one call.
/// </summary>
static class SafeWrapperWriter
{
    /// <summary>The C# type of a kn_buffer* operand.</summary>
    const string BufferType = "DeviceBuffer";

    enum OperandKind { Buffer, Shape, Value }

    /// <summary>One C# parameter of a wrapper: a buffer, a (dims, rank) pair as one span, or a value passed as it is.</summary>
    sealed record Operand(OperandKind Kind, CParameter Parameter, string CSharpType)
    {
        public string Name => Naming.Parameter(Parameter.Name);
    }

    public static string Write(HeaderModel model, string headerRelativePath)
    {
        var types = new TypeMapper(model);
        var w = new Writer();
        w.GeneratedFileHeader(headerRelativePath, "System.Runtime.CompilerServices");
        w.Line("namespace Kernels;");
        w.Line();
        w.Line("/// <summary>");
        w.Line("/// One safe wrapper per export of kernels.h that works on buffers, under its C name: each buffer is leased");
        w.Line("/// for the length of the call (<see cref=\"BufferLease\"/>: null and disposed buffers throw before anything");
        w.Line("/// runs), each (dims, rank) pair is one span, and a failed status throws (<see cref=\"Ensure\"/>). Buffers");
        w.Line("/// marked KN_OPTIONAL in the header may be null. The exceptions name each buffer as the caller wrote the");
        w.Line("/// argument (<see cref=\"CallerArgumentExpressionAttribute\"/>), that is, the public method's own parameter.");
        w.Line("/// </summary>");
        w.Line("internal static unsafe class SafeNativeMethods");
        w.Line("{");
        w.Indent++;

        var notWrapped = new List<string>();
        bool first = true;
        foreach (CFunction f in model.Functions)
        {
            if (!f.Parameters.Any(IsBuffer))
                continue; // not an operation on buffers: devices, versions, the rule queries
            string? why = WhyNotWrapped(f, types, out List<Operand> operands);
            if (why is not null)
            {
                notWrapped.Add($"{f.Name}: {why}");
                continue;
            }
            if (!first)
                w.Line();
            first = false;
            WriteWrapper(w, f, operands);
        }

        if (notWrapped.Count > 0)
        {
            w.Line();
            w.Line("// Exports on buffers without a wrapper here (the safe layer calls NativeMethods for them by hand):");
            foreach (string line in notWrapped)
                w.Line($"//   {line}");
        }
        w.Indent--;
        w.Line("}");
        return w.ToString();
    }

    static bool IsBuffer(CParameter p) => TypeMapper.BaseType(p.CType, out int depth) == "kn_buffer" && depth == 1;

    /// <summary>Null when <paramref name="f"/> can be wrapped (its operands are then filled in), else the reason why not.</summary>
    static string? WhyNotWrapped(CFunction f, TypeMapper types, out List<Operand> operands)
    {
        operands = new List<Operand>();
        if (f.ReturnCType != "kn_status")
            return $"returns {f.ReturnCType}, not kn_status";
        if (f.Name.EndsWith("_free", StringComparison.Ordinal))
            return "frees the buffer: BufferHandle.ReleaseHandle calls it with its raw handle (a lease would hold the handle being released)";
        IReadOnlyList<CParameter> ps = f.Parameters;
        for (int i = 0; i < ps.Count; i++)
        {
            CParameter p = ps[i];
            string baseType = TypeMapper.BaseType(p.CType, out int depth);
            if (IsBuffer(p))
            {
                operands.Add(new Operand(OperandKind.Buffer, p, p.Optional ? BufferType + "?" : BufferType));
            }
            else if (baseType == "int64_t" && depth == 1 && ShapePrefix(p.Name) is string prefix &&
                     i + 1 < ps.Count && ps[i + 1].CType == "int32_t" && ps[i + 1].Name == prefix + "_rank")
            {
                // The header's shape convention: (const int64_t* x_dims, int32_t x_rank) is one span, and
                // so is (const int64_t* x_strides, int32_t x_rank).
                operands.Add(new Operand(OperandKind.Shape, p, "ReadOnlySpan<long>"));
                i++;
            }
            else if (depth == 0)
            {
                operands.Add(new Operand(OperandKind.Value, p, types.Map(p.CType, $"{f.Name} (parameter '{p.Name}')")));
            }
            else
            {
                return $"'{p.Name}' ({p.CType}) is neither a buffer, a (dims or strides, rank) pair nor a value";
            }
        }
        return null;
    }

    /// <summary>"x" for "x_dims" or "x_strides" (an array that a following "x_rank" sizes), else null.</summary>
    static string? ShapePrefix(string name) =>
        name.EndsWith("_dims", StringComparison.Ordinal) ? name[..^"_dims".Length]
        : name.EndsWith("_strides", StringComparison.Ordinal) ? name[..^"_strides".Length]
        : null;

    static void WriteWrapper(Writer w, CFunction f, List<Operand> operands)
    {
        List<Operand> buffers = operands.Where(o => o.Kind == OperandKind.Buffer).ToList();
        List<Operand> shapes = operands.Where(o => o.Kind == OperandKind.Shape).ToList();
        List<Operand> optional = buffers.Where(o => o.Parameter.Optional).ToList();

        w.Line($"// {CSharpWriter.Prototype(f)}");
        string nullable = optional.Count == 0
            ? ""
            : $" {string.Join(", ", optional.Select(o => $"<paramref name=\"{o.Parameter.Name}\"/>"))} may be null.";
        w.Line($"/// <summary>Leases the buffers and calls <see cref=\"NativeMethods.{f.Name}\"/>; a failed status throws.{nullable}</summary>");

        var parameters = operands.Select(o => $"{o.CSharpType} {o.Name}").ToList();
        parameters.AddRange(buffers.Select(o => $"[CallerArgumentExpression(nameof({o.Name}))] string {o.Parameter.Name}_name = \"\""));
        WriteWrapped(w, $"internal static void {f.Name}(", parameters, ")");
        w.Line("{");
        w.Indent++;
        WriteWrapped(w, "using BufferLease ", buffers.Select(o =>
            $"{o.Parameter.Name}_lease = BufferLease.{(o.Parameter.Optional ? "Optional" : "Required")}({o.Name}, {o.Parameter.Name}_name)"), ";");

        var arguments = new List<string>();
        foreach (Operand o in operands)
        {
            switch (o.Kind)
            {
                case OperandKind.Buffer: arguments.Add($"{o.Parameter.Name}_lease.Handle"); break;
                case OperandKind.Shape: arguments.Add($"{o.Parameter.Name}_pointer"); arguments.Add($"{o.Name}.Length"); break;
                default: arguments.Add(o.Name); break;
            }
        }
        if (shapes.Count > 0)
        {
            WriteWrapped(w, "fixed (long* ", shapes.Select(o => $"{o.Parameter.Name}_pointer = {o.Name}"), ")");
            w.Indent++;
        }
        WriteWrapped(w, $"Ensure.Success(NativeMethods.{f.Name}(", arguments, "));");
        if (shapes.Count > 0)
            w.Indent--;
        w.Indent--;
        w.Line("}");
    }

    /// <summary>
    /// head + items joined by ", " + tail, broken after a comma where a line would pass 120 columns;
    /// continuation lines are indented one more level.
    /// </summary>
    static void WriteWrapped(Writer w, string head, IEnumerable<string> items, string tail)
    {
        const int Width = 120;
        List<string> list = items.ToList();
        var lines = new List<string> { head };
        for (int i = 0; i < list.Count; i++)
        {
            string item = list[i] + (i + 1 < list.Count ? "," : tail);
            string current = lines[^1];
            bool fresh = current.Length == 0 || (lines.Count == 1 && current == head);
            int used = w.Indent * 4 + (lines.Count > 1 ? 4 : 0) + current.Length;
            if (!fresh && used + 1 + item.Length > Width)
                lines.Add(item);
            else
                lines[^1] = fresh ? current + item : current + " " + item;
        }
        if (list.Count == 0)
            lines[^1] += tail;
        for (int i = 0; i < lines.Count; i++)
            w.Line(i == 0 ? lines[i] : "    " + lines[i]);
    }
}
