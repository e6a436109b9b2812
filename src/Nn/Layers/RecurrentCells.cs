namespace Kernels.Nn;

/// <summary>
/// The pointwise part of one LSTM or GRU time step, after the layer has done the matrix products
/// (PyTorch's gate order and formulas, so weights move between the two unchanged). The layers call these
/// once per step; the recurrent GEMMs stay in <see cref="Tensor.MatMul"/>.
/// </summary>
public static class RecurrentCells
{
    /// <summary>
    /// One LSTM cell update. <paramref name="gates"/> [B, 4H] holds the pre-activations
    /// x W_ih^T + b_ih + h_prev W_hh^T + b_hh in PyTorch's order i, f, g, o:
    /// c = s(f) * cPrev + s(i) * tanh(g), h = s(o) * tanh(c).
    /// <paramref name="cPrev"/>, <paramref name="hPrev"/>: [B, H]. <paramref name="mask"/>: null or [B]; where 0
    /// the row is a padding step and keeps hPrev / cPrev (its gradient flows to them unchanged), any other
    /// value (1) updates it. The mask gets no gradient.
    /// One fused kernel forward and one backward (kn_lstm_cell_f32), whichever of H and C are used.
    /// </summary>
    public static (Tensor H, Tensor C) Lstm(Tensor gates, Tensor cPrev, Tensor hPrev, Tensor? mask = null)
    {
        var (batch, hidden) = CheckLstm(gates, cPrev, hPrev, mask);
        var device = gates.Device;
        var h = Tensor.Empty(new[] { batch, hidden }, device);
        var c = Tensor.Empty(new[] { batch, hidden }, device);
        var inputs = new[] { gates, cPrev, hPrev };
        // What the backward reads (the activated gates and tanh c) is saved only when one will follow.
        var saved = Tensor.WillRecord(inputs) ? Tensor.Empty(new[] { batch, 5 * hidden }, device) : null;
        if (batch * hidden > 0)
            Ops.LstmCell(gates.Buffer, cPrev.Buffer, hPrev.Buffer, mask?.Buffer, h.Buffer, c.Buffer, saved?.Buffer, batch, hidden);
        if (saved is null) return (h, c);
        h.Attach(saved);  // freed with h, after any backward pass
        Tensor.RecordPair(h, c, "LstmCell", inputs,
                          (dh, dc) => Gradients.LstmCell(saved, gates, cPrev, hPrev, mask, dh, dc, batch, hidden));
        return (h, c);
    }

    /// <summary>
    /// One GRU cell update. <paramref name="xGates"/> = x W_ih^T + b_ih and <paramref name="hGates"/> =
    /// h_prev W_hh^T + b_hh, both [B, 3H] in PyTorch's order r, z, n:
    /// r = s(x_r + h_r), z = s(x_z + h_z), n = tanh(x_n + r * h_n), h = (1 - z) * n + z * hPrev.
    /// <paramref name="hPrev"/>: [B, H]. <paramref name="mask"/>: null or [B]; where 0 the row keeps hPrev, any other value (1) updates it.
    /// One fused kernel forward and one backward.
    /// </summary>
    public static Tensor Gru(Tensor xGates, Tensor hGates, Tensor hPrev, Tensor? mask = null)
    {
        var (batch, hidden) = CheckGru(xGates, hGates, hPrev, mask);
        var device = xGates.Device;
        var h = Tensor.Empty(new[] { batch, hidden }, device);
        var inputs = new[] { xGates, hGates, hPrev };
        var saved = Tensor.WillRecord(inputs) ? Tensor.Empty(new[] { batch, 3 * hidden }, device) : null;
        if (batch * hidden > 0)
            Ops.GruCell(xGates.Buffer, hGates.Buffer, hPrev.Buffer, mask?.Buffer, h.Buffer, saved?.Buffer, batch, hidden);
        if (saved is null) return h;
        h.Attach(saved);
        return Tensor.Record(h, "GruCell", inputs,
                             g => Gradients.GruCell(saved, xGates, hGates, hPrev, mask, g, batch, hidden));
    }

    static (long Batch, long Hidden) CheckLstm(Tensor gates, Tensor cPrev, Tensor hPrev, Tensor? mask)
    {
        ArgumentNullException.ThrowIfNull(gates);
        ArgumentNullException.ThrowIfNull(cPrev);
        ArgumentNullException.ThrowIfNull(hPrev);
        if (hPrev.Rank != 2 || gates.Rank != 2 || cPrev.Rank != 2
            || gates.Shape[0] != hPrev.Shape[0] || gates.Shape[1] != 4 * hPrev.Shape[1]
            || !SameShape(cPrev, hPrev))
            throw new ShapeMismatchException(
                $"RecurrentCells.Lstm needs gates [B, 4H], cPrev [B, H], hPrev [B, H]; got gates {Tensor.FormatShape(gates.ShapeArray)}, " +
                $"cPrev {Tensor.FormatShape(cPrev.ShapeArray)}, hPrev {Tensor.FormatShape(hPrev.ShapeArray)}");
        CheckMask("Lstm", mask, hPrev.Shape[0]);
        CheckDevices("Lstm", gates, cPrev, hPrev, mask);
        return (hPrev.Shape[0], hPrev.Shape[1]);
    }

    static (long Batch, long Hidden) CheckGru(Tensor xGates, Tensor hGates, Tensor hPrev, Tensor? mask)
    {
        ArgumentNullException.ThrowIfNull(xGates);
        ArgumentNullException.ThrowIfNull(hGates);
        ArgumentNullException.ThrowIfNull(hPrev);
        if (hPrev.Rank != 2 || xGates.Rank != 2 || !SameShape(xGates, hGates)
            || xGates.Shape[0] != hPrev.Shape[0] || xGates.Shape[1] != 3 * hPrev.Shape[1])
            throw new ShapeMismatchException(
                $"RecurrentCells.Gru needs xGates [B, 3H], hGates [B, 3H], hPrev [B, H]; got xGates {Tensor.FormatShape(xGates.ShapeArray)}, " +
                $"hGates {Tensor.FormatShape(hGates.ShapeArray)}, hPrev {Tensor.FormatShape(hPrev.ShapeArray)}");
        CheckMask("Gru", mask, hPrev.Shape[0]);
        CheckDevices("Gru", xGates, hGates, hPrev, mask);
        return (hPrev.Shape[0], hPrev.Shape[1]);
    }

    static bool SameShape(Tensor a, Tensor b) => a.Shape.SequenceEqual(b.Shape);

    static void CheckMask(string cell, Tensor? mask, long batch)
    {
        if (mask is not null && (mask.Rank != 1 || mask.Shape[0] != batch))
            throw new ShapeMismatchException(
                $"RecurrentCells.{cell}: the mask must be [B] = [{batch}]; got {Tensor.FormatShape(mask.ShapeArray)}");
    }

    static void CheckDevices(string cell, Tensor a, Tensor b, Tensor c, Tensor? mask)
    {
        foreach (var t in new[] { b, c, mask })
            if (t is not null && t.Device != a.Device)
                throw new DeviceMismatchException(
                    $"RecurrentCells.{cell}: every operand must be on one device; got {a.Device.Name} and {t.Device.Name}");
    }
}
