using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace Kernels.BindingsGen;

/// <summary>
/// Runs clang on the header and turns its JSON AST into a <see cref="HeaderModel"/>, keeping only the
/// declarations written in the header itself (not those of stdint.h it includes).
/// </summary>
static class ClangAst
{
    /// <summary>Runs <c>clang -Xclang -ast-dump=json</c> on the header and returns the JSON text.</summary>
    public static string Dump(string clang, string headerPath)
    {
        var start = new ProcessStartInfo(clang)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // KN_BINDINGS_GEN turns kernels.h's KN_OPTIONAL into an annotate attribute this tool can see;
        // for every other compiler the macro is empty.
        foreach (string arg in new[] { "-Xclang", "-ast-dump=json", "-fsyntax-only", "-fparse-all-comments", "-DKN_BINDINGS_GEN", "-x", "c", headerPath })
            start.ArgumentList.Add(arg);

        Process process;
        try
        {
            process = Process.Start(start) ?? throw new GeneratorException($"could not start '{clang}'");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new GeneratorException($"could not run '{clang}' ({e.Message}); install clang-14 or pass --clang PATH");
        }
        using (process)
        {
            // Read stderr concurrently: the AST is ~500 KB and a full stderr pipe would deadlock clang.
            var stderrTask = process.StandardError.ReadToEndAsync();
            string json = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            string stderr = stderrTask.GetAwaiter().GetResult();
            if (process.ExitCode != 0)
                throw new GeneratorException($"'{clang}' failed on {headerPath} (exit {process.ExitCode}):\n{stderr}");
            if (stderr.Length > 0)
                Console.Error.Write(stderr); // warnings: show them, they are the header author's business
            return json;
        }
    }

    /// <summary>Builds the model from clang's JSON AST of <paramref name="headerPath"/>.</summary>
    public static HeaderModel Read(string json, string headerPath, byte[] headerBytes)
    {
        using var document = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 4096 });
        JsonElement root = document.RootElement;
        if (!root.TryGetProperty("inner", out JsonElement topLevel))
            throw new GeneratorException("clang's AST has no top-level declarations");

        string headerFullPath = Path.GetFullPath(headerPath);
        var tracker = new FileTracker();
        var reader = new DeclarationReader(headerBytes);

        foreach (JsonElement node in topLevel.EnumerateArray())
        {
            // clang writes a location's "file" only when it differs from the previously written
            // location, in document order, so the file of a node is known only by walking every
            // location before it. Walk this node's "loc" first (that is the node's file), then the rest.
            string? file = null;
            bool hasLocation = false;
            foreach (JsonProperty property in node.EnumerateObject())
            {
                tracker.Walk(property.Value, property.Name);
                if (property.NameEquals("loc"))
                {
                    hasLocation = property.Value.ValueKind == JsonValueKind.Object && property.Value.EnumerateObject().Any();
                    file = tracker.Current;
                }
            }
            if (!hasLocation || file is null || Path.GetFullPath(file) != headerFullPath)
                continue;
            reader.Add(node);
        }
        return reader.Finish(headerBytes);
    }

    /// <summary>Follows clang's "file only when it changes" convention across the whole document.</summary>
    sealed class FileTracker
    {
        public string? Current { get; private set; }

        public void Walk(JsonElement element, string name)
        {
            // "includedFrom" names the includer of a location's file; clang does not count it as
            // the last written file, so neither do we.
            if (name == "includedFrom")
                return;
            switch (element.ValueKind)
            {
                case JsonValueKind.Object:
                    foreach (JsonProperty property in element.EnumerateObject())
                    {
                        if (property.NameEquals("file") && property.Value.ValueKind == JsonValueKind.String)
                            Current = property.Value.GetString();
                        else
                            Walk(property.Value, property.Name);
                    }
                    break;
                case JsonValueKind.Array:
                    foreach (JsonElement item in element.EnumerateArray())
                        Walk(item, "");
                    break;
            }
        }
    }

    /// <summary>Collects the header's own declarations in order and resolves typedefs at the end.</summary>
    sealed class DeclarationReader(byte[] headerBytes)
    {
        readonly Dictionary<string, (string? Tag, string? Comment, List<EnumMember> Members)> _enumsById = new();
        readonly List<string> _enumOrder = new();                       // enum ids, header order
        readonly Dictionary<string, string> _enumTypedefById = new();   // enum id -> typedef name
        readonly Dictionary<string, string?> _typedefComments = new();  // typedef name -> comment
        readonly Dictionary<string, (string? Tag, bool Complete)> _recordsById = new();
        readonly HashSet<string> _opaque = new(StringComparer.Ordinal);
        readonly List<CFunction> _functions = new();

        public void Add(JsonElement node)
        {
            string kind = node.GetProperty("kind").GetString()!;
            string? name = node.TryGetProperty("name", out JsonElement n) ? n.GetString() : null;
            string id = node.GetProperty("id").GetString()!;
            switch (kind)
            {
                case "EnumDecl":
                    _enumsById[id] = (name, CommentOf(node), ReadEnumMembers(node, name ?? "(anonymous enum)"));
                    _enumOrder.Add(id);
                    break;
                case "RecordDecl":
                    bool complete = node.TryGetProperty("completeDefinition", out JsonElement c) && c.GetBoolean();
                    _recordsById[id] = (name, complete);
                    break;
                case "TypedefDecl":
                    ReadTypedef(node, name!);
                    break;
                case "FunctionDecl":
                    ReadFunction(node, name!);
                    break;
                default:
                    throw new GeneratorException($"kernels.h declares '{name}', a {kind}, which the generator does not know how to bind");
            }
        }

        void ReadTypedef(JsonElement node, string name)
        {
            _typedefComments[name] = CommentOf(node);
            // The typedef's type node names the tag declaration it refers to, either as the owned
            // declaration (typedef enum kn_x {...} kn_x;) or as a reference (typedef enum kn_x kn_y;).
            (string Kind, string Id)? target = FindTagReference(node);
            if (target is { Kind: "EnumDecl" } e)
            {
                _enumTypedefById[e.Id] = name;
            }
            else if (target is { Kind: "RecordDecl" } r)
            {
                if (!_recordsById.TryGetValue(r.Id, out var record))
                    throw new GeneratorException($"typedef '{name}' refers to a struct declared outside kernels.h");
                if (record.Complete)
                    throw new GeneratorException($"typedef '{name}' names a struct with a definition; only opaque handles cross the C API");
                _opaque.Add(name);
                if (record.Tag is not null)
                    _opaque.Add("struct " + record.Tag);
            }
            // Any other typedef (typedef int32_t kn_index;) is not recorded: a function using it
            // then fails type mapping loudly, which is the point.
        }

        static (string Kind, string Id)? FindTagReference(JsonElement element)
        {
            if (element.ValueKind == JsonValueKind.Object)
            {
                foreach (string key in new[] { "ownedTagDecl", "decl" })
                {
                    if (element.TryGetProperty(key, out JsonElement decl) &&
                        decl.TryGetProperty("kind", out JsonElement k) && decl.TryGetProperty("id", out JsonElement i))
                        return (k.GetString()!, i.GetString()!);
                }
                if (element.TryGetProperty("inner", out JsonElement inner))
                    foreach (JsonElement child in inner.EnumerateArray())
                        if (child.TryGetProperty("kind", out JsonElement ck) && ck.GetString()!.EndsWith("Type", StringComparison.Ordinal) &&
                            FindTagReference(child) is { } found)
                            return found;
            }
            return null;
        }

        List<EnumMember> ReadEnumMembers(JsonElement node, string enumName)
        {
            var members = new List<EnumMember>();
            long next = 0;
            foreach (JsonElement child in Children(node))
            {
                if (child.GetProperty("kind").GetString() != "EnumConstantDecl")
                    continue;
                string memberName = child.GetProperty("name").GetString()!;
                long value = next;
                // An explicit initializer appears as a ConstantExpr child carrying clang's evaluated value.
                foreach (JsonElement expr in Children(child))
                {
                    if (expr.GetProperty("kind").GetString() == "ConstantExpr" && expr.TryGetProperty("value", out JsonElement v))
                    {
                        if (!long.TryParse(v.GetString(), out value))
                            throw new GeneratorException($"{enumName}.{memberName}: value '{v.GetString()}' is not an integer");
                    }
                }
                if (value < int.MinValue || value > int.MaxValue)
                    throw new GeneratorException($"{enumName}.{memberName} = {value} does not fit the int-sized enums of the C API");
                members.Add(new EnumMember(memberName, value, CommentOf(child)));
                next = value + 1;
            }
            return members;
        }

        void ReadFunction(JsonElement node, string name)
        {
            if (node.TryGetProperty("storageClass", out JsonElement storage) && storage.GetString() == "static")
                throw new GeneratorException($"{name}: static functions in the public header cannot be imported");
            if (node.TryGetProperty("variadic", out JsonElement variadic) && variadic.GetBoolean())
                throw new GeneratorException($"{name}: variadic functions cannot cross the C API");
            if (!name.StartsWith("kn_", StringComparison.Ordinal))
                throw new GeneratorException($"{name}: exported functions must be prefixed kn_");

            var parameters = new List<CParameter>();
            bool exported = false;
            foreach (JsonElement child in Children(node))
            {
                switch (child.GetProperty("kind").GetString())
                {
                    case "ParmVarDecl":
                        string? parameterName = child.TryGetProperty("name", out JsonElement pn) ? pn.GetString() : null;
                        if (string.IsNullOrEmpty(parameterName))
                            throw new GeneratorException($"{name}: parameter {parameters.Count + 1} has no name; name it in kernels.h");
                        string parameterType = child.GetProperty("type").GetProperty("qualType").GetString()!;
                        bool optional = ReadAnnotations(child, $"{name} (parameter '{parameterName}')");
                        if (optional && !parameterType.Contains('*', StringComparison.Ordinal))
                            throw new GeneratorException($"{name}: parameter '{parameterName}' is marked KN_OPTIONAL but is not a pointer");
                        parameters.Add(new CParameter(parameterType, parameterName, optional));
                        break;
                    case "VisibilityAttr":
                        exported = true;
                        break;
                }
            }
            if (!exported)
                throw new GeneratorException($"{name}: not declared KN_API, so the shared library does not export it");

            // The function type reads "kn_status (const kn_buffer *, int64_t *)": the return type is
            // everything before the parameter list.
            string functionType = node.GetProperty("type").GetProperty("qualType").GetString()!;
            int open = functionType.IndexOf('(');
            if (open <= 0)
                throw new GeneratorException($"{name}: cannot read the return type from '{functionType}'");
            string returnType = functionType[..open].Trim();
            _functions.Add(new CFunction(name, returnType, parameters, CommentOf(node)));
        }

        /// <summary>
        /// Whether a parameter carries the header's KN_OPTIONAL annotation. clang's JSON AST shows an
        /// AnnotateAttr node but not its string, so the string is read from the header text at the
        /// attribute's spelling location (the macro's definition in kernels.h).
        /// Why an annotation: clang's _Nullable qualifier would also need a macro for GCC and MSVC, and
        /// once one pointer has it clang wants it on every pointer of the header (-Wnullability-completeness);
        /// a naming or comment convention would be a second description that nothing checks.
        /// </summary>
        bool ReadAnnotations(JsonElement parameter, string where)
        {
            bool optional = false;
            foreach (JsonElement child in Children(parameter))
            {
                if (child.GetProperty("kind").GetString() != "AnnotateAttr")
                    continue;
                string annotation = AnnotationText(child.GetProperty("range"), where);
                if (annotation != "kn_optional")
                    throw new GeneratorException($"{where}: unknown annotation \"{annotation}\" (the generator knows kn_optional, from KN_OPTIONAL)");
                optional = true;
            }
            return optional;
        }

        string AnnotationText(JsonElement range, string where)
        {
            static JsonElement Spelling(JsonElement location) =>
                location.TryGetProperty("spellingLoc", out JsonElement spelling) ? spelling : location;
            JsonElement first = Spelling(range.GetProperty("begin")), last = Spelling(range.GetProperty("end"));
            int begin = first.GetProperty("offset").GetInt32();
            int end = last.GetProperty("offset").GetInt32() + last.GetProperty("tokLen").GetInt32(); // exclusive
            if (begin < 0 || end <= begin || end > headerBytes.Length)
                throw new GeneratorException($"{where}: the annotation's range {begin}..{end} lies outside kernels.h");
            // The spelling reads: annotate("kn_optional")
            string text = Encoding.UTF8.GetString(headerBytes, begin, end - begin);
            int open = text.IndexOf('"'), close = text.LastIndexOf('"');
            if (!text.StartsWith("annotate", StringComparison.Ordinal) || open < 0 || close <= open)
                throw new GeneratorException($"{where}: cannot read an annotation from '{text}'");
            return text[(open + 1)..close];
        }

        public HeaderModel Finish(byte[] header)
        {
            var enums = new List<CEnum>();
            foreach (string id in _enumOrder)
            {
                var (tag, comment, members) = _enumsById[id];
                string? typedefName = _enumTypedefById.GetValueOrDefault(id);
                string cName = typedefName ?? tag ?? throw new GeneratorException("an anonymous enum without a typedef cannot be named in C#");
                comment ??= typedefName is null ? null : _typedefComments.GetValueOrDefault(typedefName);
                enums.Add(new CEnum(cName, comment, members));
            }
            var constants = MacroReader.Read(header);
            return new HeaderModel(enums, _opaque, _functions, constants);
        }

        static IEnumerable<JsonElement> Children(JsonElement node) =>
            node.TryGetProperty("inner", out JsonElement inner) ? inner.EnumerateArray() : Enumerable.Empty<JsonElement>();

        /// <summary>
        /// The comment clang attached to a declaration (-fparse-all-comments attaches plain /* */
        /// comments too, trailing ones included), read from the header text so that nothing clang's
        /// comment parser would interpret (\commands, @tags) is lost.
        /// </summary>
        string? CommentOf(JsonElement node)
        {
            foreach (JsonElement child in Children(node))
            {
                if (child.GetProperty("kind").GetString() != "FullComment")
                    continue;
                JsonElement range = child.GetProperty("range");
                int begin = range.GetProperty("begin").GetProperty("offset").GetInt32();
                int end = range.GetProperty("end").GetProperty("offset").GetInt32(); // last character, inclusive
                if (begin < 0 || end < begin || end >= headerBytes.Length)
                    throw new GeneratorException($"comment range {begin}..{end} lies outside kernels.h");
                string text = CommentText.Clean(Encoding.UTF8.GetString(headerBytes, begin, end - begin + 1));
                return text.Length == 0 ? null : text;
            }
            return null;
        }
    }
}

/// <summary>Strips C comment decoration, keeping the author's line breaks and indentation.</summary>
static class CommentText
{
    public static string Clean(string raw)
    {
        string[] lines = raw.Replace("\r", "", StringComparison.Ordinal).Split('\n');
        var result = new List<string>();
        for (int i = 0; i < lines.Length; i++)
        {
            string t = lines[i].Trim();
            // clang merges adjacent comments into one; later ones start with their own opener.
            if (t.StartsWith("/*", StringComparison.Ordinal) || t.StartsWith("//", StringComparison.Ordinal))
                t = t[2..].TrimStart('*', '/', '!', '<');
            else if (i == 0)
                t = t.TrimStart('*', '/', '!', '<'); // "/**<" and "///" styles
            else if (t.StartsWith('*') && !t.StartsWith("*/", StringComparison.Ordinal))
                t = t[1..];
            if (t.EndsWith("*/", StringComparison.Ordinal))
                t = t[..^2];
            t = t.TrimEnd();
            if (i == 0)
            {
                t = t.Trim();
            }
            else
            {
                // Drop the single space after the " * " decoration, keep deeper indentation (formulas).
                string original = lines[i].TrimStart();
                if (original.StartsWith('*') && !original.StartsWith("*/", StringComparison.Ordinal) && t.StartsWith(' '))
                    t = t[1..];
                else
                    t = t.TrimStart();
            }
            result.Add(t);
        }
        while (result.Count > 0 && result[0].Length == 0) result.RemoveAt(0);
        while (result.Count > 0 && result[^1].Length == 0) result.RemoveAt(result.Count - 1);
        return string.Join("\n", result);
    }
}
