// selftest_recurrent.cpp: the self-test's cases for the recurrent cells: kn_lstm_cell_f32,
// kn_gru_cell_f32 and their backward passes against a float64 reference of kernels.h's formulas,
// computed from the same float32 inputs. Every output is checked (saved included), guards and inputs
// are checked untouched, and the cases cover: no mask and masks with padding rows (whose state and
// gradient pass straight through), batch 1, hidden 1, prime and tile-breaking sizes, inputs of large
// magnitude (sigmoid / tanh must not overflow: +-3e38 in the gates), the optional operands absent
// (no saved, no dh or dc, no dc_prev / dh_prev), and every error path.
#include "selftest_recurrent.h"

#include <cmath>
#include <functional>

namespace selftest {
namespace {

double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// A float32 result computed from O(1) activations: a few roundings of terms bounded by `scale`.
constexpr double kCellTol = 64 * kEps;

// The mask of a case: none, or every third row a padding step (row 1 always, so batch 2 has one).
std::vector<float> mask_for(int64_t batch) {
    std::vector<float> m(static_cast<size_t>(batch), 1.0f);
    for (int64_t b = 1; b < batch; b += 3) m[b] = 0.0f;
    return m;
}

// Gates: uniform in [-4, 4], or large: uniform in [-100, 100] with every seventh at +-3e38.
std::vector<float> gate_values(Rng& rng, int64_t n, bool large) {
    std::vector<float> v = uniform(rng, n, large ? -100 : -4, large ? 100 : 4);
    if (large)
        for (int64_t e = 0; e < n; e += 7) v[e] = (e / 7) % 2 ? 3e38f : -3e38f;
    return v;
}

struct Expected {
    std::vector<double> want, tol;
    explicit Expected(int64_t n) : want(static_cast<size_t>(n)), tol(static_cast<size_t>(n)) {}
};

// One output against its reference, its guard untouched.
void check_output(Problems& p, const DeviceArray<float>& out, const Expected& e, const char* name) {
    const std::vector<float> got = out.read();
    Comparison c = compare(
        out.size(), [&](int64_t i) { return got[i]; }, [&](int64_t i) { return e.want[i]; },
        [&](int64_t i) { return e.tol[i]; });
    p.add(c.describe(name));
    p.add(guard_violation(got, out, name));
}

struct CaseShape {
    int64_t batch, hidden;
    bool masked, large;
    std::string describe(const char* cell) const {
        return std::string(cell) + " [batch, hidden] = [" + std::to_string(batch) + ", " + std::to_string(hidden) + "]" +
               (masked ? ", masked" : "") + (large ? ", large gates" : "");
    }
};

void lstm_case(Context& cx, const CaseShape& s, bool with_dh, bool with_dc, bool with_prev_grads) {
    const int64_t B = s.batch, H = s.hidden, n = B * H;
    const std::string name = s.describe("lstm_cell") + (with_dh ? "" : ", no dh") + (with_dc ? "" : ", no dc") +
                             (with_prev_grads ? "" : ", no dc_prev/dh_prev");
    cx.report.run(name, [&] {
        Problems p;
        Rng rng(seed_of(name));
        const std::vector<float> gates = gate_values(rng, 4 * n, s.large), cp = uniform(rng, n, -2, 2),
                                 hp = uniform(rng, n, -1, 1), dh = uniform(rng, n, -1, 1), dc = uniform(rng, n, -1, 1);
        const std::vector<float> mask = mask_for(B);
        DeviceArray<float> G(cx.device, gates), CP(cx.device, cp), HP(cx.device, hp), M(cx.device, mask);
        DeviceArray<float> Hd(cx.device, nan_filled(n)), Cd(cx.device, nan_filled(n)), S(cx.device, nan_filled(5 * n));
        DeviceArray<float> DH(cx.device, dh), DC(cx.device, dc);
        DeviceArray<float> DG(cx.device, nan_filled(4 * n)), DCP(cx.device, nan_filled(n)), DHP(cx.device, nan_filled(n));
        kn_buffer* mask_buffer = s.masked ? M.get() : nullptr;
        expect_ok_or_skip(cx, kn_lstm_cell_f32(G.get(), CP.get(), HP.get(), mask_buffer, Hd.get(), Cd.get(), S.get(), B, H),
                          "kn_lstm_cell_f32");
        expect_ok_or_skip(cx,
                          kn_lstm_cell_backward_f32(S.get(), CP.get(), mask_buffer, with_dh ? DH.get() : nullptr,
                                                    with_dc ? DC.get() : nullptr, DG.get(),
                                                    with_prev_grads ? DCP.get() : nullptr,
                                                    with_prev_grads ? DHP.get() : nullptr, B, H),
                          "kn_lstm_cell_backward_f32");
        Expected h(n), c(n), sv(5 * n), dg(4 * n), dcp(n), dhp(n);
        for (int64_t b = 0; b < B; ++b) {
            const bool update = !s.masked || mask[b] != 0.0f;
            for (int64_t j = 0; j < H; ++j) {
                const int64_t e = b * H + j;
                const float* g4 = &gates[b * 4 * H + j];
                const double i = sig(g4[0]), f = sig(g4[H]), g = std::tanh(static_cast<double>(g4[2 * H])),
                             o = sig(g4[3 * H]);
                const double cn = f * cp[e] + i * g, tc = std::tanh(cn);
                const double act[5] = {i, f, g, o, tc};
                for (int k = 0; k < 5; ++k) {
                    sv.want[b * 5 * H + k * H + j] = act[k];
                    sv.tol[b * 5 * H + k * H + j] = kCellTol;
                }
                const double scale = 1 + std::fabs(cp[e]);
                h.want[e] = update ? o * tc : hp[e];
                c.want[e] = update ? cn : cp[e];
                h.tol[e] = kCellTol * scale;
                c.tol[e] = kCellTol * scale;
                const double dhj = with_dh ? dh[e] : 0.0, dcj = with_dc ? dc[e] : 0.0;
                const double dct = dcj + dhj * o * (1 - tc * tc);
                const double grads[4] = {dct * g * i * (1 - i), dct * cp[e] * f * (1 - f), dct * i * (1 - g * g),
                                         dhj * tc * o * (1 - o)};
                const double gscale = kCellTol * (std::fabs(dhj) + std::fabs(dcj)) * scale;
                for (int k = 0; k < 4; ++k) {
                    dg.want[b * 4 * H + k * H + j] = update ? grads[k] : 0.0;
                    dg.tol[b * 4 * H + k * H + j] = gscale;
                }
                dcp.want[e] = update ? dct * f : dcj;
                dhp.want[e] = update ? 0.0 : dhj;
                dcp.tol[e] = dhp.tol[e] = gscale;
            }
        }
        check_output(p, Hd, h, "h");
        check_output(p, Cd, c, "c");
        check_output(p, S, sv, "saved");
        check_output(p, DG, dg, "dgates");
        if (with_prev_grads) {
            check_output(p, DCP, dcp, "dc_prev");
            check_output(p, DHP, dhp, "dh_prev");
        } else {
            p.add(input_violation(DCP, "dc_prev (not passed)"));
        }
        p.add(input_violation(G, "gates"));
        p.add(input_violation(CP, "c_prev"));
        p.add(input_violation(HP, "h_prev"));
        p.add(input_violation(DH, "dh"));
        p.add(input_violation(DC, "dc"));
        return p;
    });
}

// The forward without saved (inference) writes the same h and c and nothing else.
void lstm_no_saved_case(Context& cx, int64_t B, int64_t H) {
    const std::string name = "lstm_cell without saved [" + std::to_string(B) + ", " + std::to_string(H) + "]";
    cx.report.run(name, [&] {
        Problems p;
        Rng rng(seed_of(name));
        const int64_t n = B * H;
        DeviceArray<float> G(cx.device, uniform(rng, 4 * n, -4, 4)), CP(cx.device, uniform(rng, n, -2, 2)),
            HP(cx.device, uniform(rng, n, -1, 1));
        DeviceArray<float> H1(cx.device, nan_filled(n)), C1(cx.device, nan_filled(n)), S(cx.device, nan_filled(5 * n));
        DeviceArray<float> H2(cx.device, nan_filled(n)), C2(cx.device, nan_filled(n));
        expect_ok_or_skip(cx, kn_lstm_cell_f32(G.get(), CP.get(), HP.get(), nullptr, H1.get(), C1.get(), S.get(), B, H),
                          "kn_lstm_cell_f32");
        expect_ok_or_skip(cx, kn_lstm_cell_f32(G.get(), CP.get(), HP.get(), nullptr, H2.get(), C2.get(), nullptr, B, H),
                          "kn_lstm_cell_f32 (no saved)");
        p.add(first_changed(H2.read(), H1.read(), 0, n + kGuard, "h without saved differs from h with saved:"));
        p.add(first_changed(C2.read(), C1.read(), 0, n + kGuard, "c without saved differs from c with saved:"));
        return p;
    });
}

void gru_case(Context& cx, const CaseShape& s, bool with_dh_prev, bool with_saved_check) {
    const int64_t B = s.batch, H = s.hidden, n = B * H;
    const std::string name = s.describe("gru_cell") + (with_dh_prev ? "" : ", no dh_prev");
    cx.report.run(name, [&] {
        Problems p;
        Rng rng(seed_of(name));
        const std::vector<float> xg = gate_values(rng, 3 * n, s.large), hg = gate_values(rng, 3 * n, s.large),
                                 hp = uniform(rng, n, -1, 1), dh = uniform(rng, n, -1, 1);
        const std::vector<float> mask = mask_for(B);
        DeviceArray<float> XG(cx.device, xg), HG(cx.device, hg), HP(cx.device, hp), M(cx.device, mask), DH(cx.device, dh);
        DeviceArray<float> Hd(cx.device, nan_filled(n)), S(cx.device, nan_filled(3 * n));
        DeviceArray<float> DXG(cx.device, nan_filled(3 * n)), DHG(cx.device, nan_filled(3 * n)),
            DHP(cx.device, nan_filled(n));
        kn_buffer* mask_buffer = s.masked ? M.get() : nullptr;
        expect_ok_or_skip(cx, kn_gru_cell_f32(XG.get(), HG.get(), HP.get(), mask_buffer, Hd.get(), S.get(), B, H),
                          "kn_gru_cell_f32");
        expect_ok_or_skip(cx,
                          kn_gru_cell_backward_f32(S.get(), HG.get(), HP.get(), mask_buffer, DH.get(), DXG.get(), DHG.get(),
                                                   with_dh_prev ? DHP.get() : nullptr, B, H),
                          "kn_gru_cell_backward_f32");
        Expected h(n), sv(3 * n), dxg(3 * n), dhg(3 * n), dhp(n);
        for (int64_t b = 0; b < B; ++b) {
            const bool update = !s.masked || mask[b] != 0.0f;
            for (int64_t j = 0; j < H; ++j) {
                const int64_t e = b * H + j, at = b * 3 * H + j;
                const double hn = hg[at + 2 * H];
                const double r = sig(static_cast<double>(xg[at]) + hg[at]);
                const double z = sig(static_cast<double>(xg[at + H]) + hg[at + H]);
                // float32 rounds x_n + r * h_n: with gates of 3e38 that sum is exact only to ~1 ulp of it,
                // so n is compared with the tanh slope times that rounding.
                const double pre = xg[at + 2 * H] + r * hn;
                const double nn = std::tanh(pre);
                const double n_tol = kCellTol * (1 + (1 - nn * nn) * (std::fabs(xg[at + 2 * H]) + std::fabs(r * hn)));
                const double act[3] = {r, z, nn};
                for (int k = 0; k < 3; ++k) {
                    sv.want[at + k * H] = act[k];
                    sv.tol[at + k * H] = k == 2 ? n_tol : kCellTol;
                }
                h.want[e] = update ? (1 - z) * nn + z * hp[e] : hp[e];
                h.tol[e] = n_tol * 2;
                const double d = dh[e];
                const double dn = d * (1 - z) * (1 - nn * nn), dz = d * (hp[e] - nn) * z * (1 - z);
                const double dr = dn * hn * r * (1 - r);
                const double gtol = (n_tol + kCellTol) * std::fabs(d) * (2 + std::fabs(hn));
                const double dx3[3] = {dr, dz, dn}, dh3[3] = {dr, dz, dn * r};
                for (int k = 0; k < 3; ++k) {
                    dxg.want[at + k * H] = update ? dx3[k] : 0.0;
                    dhg.want[at + k * H] = update ? dh3[k] : 0.0;
                    dxg.tol[at + k * H] = dhg.tol[at + k * H] = gtol;
                }
                dhp.want[e] = update ? d * z : d;
                dhp.tol[e] = gtol;
            }
        }
        check_output(p, Hd, h, "h");
        if (with_saved_check) check_output(p, S, sv, "saved");
        check_output(p, DXG, dxg, "dx_gates");
        check_output(p, DHG, dhg, "dh_gates");
        if (with_dh_prev) check_output(p, DHP, dhp, "dh_prev");
        else p.add(input_violation(DHP, "dh_prev (not passed)"));
        p.add(input_violation(XG, "x_gates"));
        p.add(input_violation(HG, "h_gates"));
        p.add(input_violation(HP, "h_prev"));
        p.add(input_violation(DH, "dh"));
        return p;
    });
}

void error_cases(Context& cx) {
    auto error_case = [&](const std::string& name, std::function<std::string()> body) {
        cx.report.run("error recurrent " + name, [&] {
            Problems p;
            p.add(body());
            return p;
        });
    };
    // batch 2, hidden 3.
    DeviceArray<float> gates(cx.device, std::vector<float>(24, 0.5f)), state(cx.device, std::vector<float>(6, 0.25f)),
        h(cx.device, nan_filled(6)), c(cx.device, nan_filled(6)), saved(cx.device, nan_filled(30)),
        gates3(cx.device, std::vector<float>(18, 0.5f)), small(cx.device, {});  // small: the guard only, 16 floats
    DeviceArray<float> big(cx.device, std::vector<float>(80, 0.5f)), big_h(cx.device, nan_filled(20)),
        big_c(cx.device, nan_filled(20));
    error_case("lstm_cell gates too small", [&] {
        kn_status s = kn_lstm_cell_f32(small.get(), state.get(), state.get(), nullptr, h.get(), c.get(), nullptr, 2, 3);
        std::string p = expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"lstm_cell", "buffer 'gates'", "24", "[2, 3]"});
        if (p.empty()) p = first_changed(h.read(), h.written(), 0, 6, "h written despite the error:");
        return p;
    });
    error_case("lstm_cell saved too small", [&] {
        kn_status s = kn_lstm_cell_f32(gates.get(), state.get(), state.get(), nullptr, h.get(), c.get(), small.get(), 2, 3);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"buffer 'saved'", "30"});
    });
    error_case("lstm_cell mask too small", [&] {
        DeviceArray<float> mask(cx.device, std::vector<float>{});  // guard only: 16 floats
        kn_status s = kn_lstm_cell_f32(big.get(), big.get(), big.get(), mask.get(), big_h.get(), big_c.get(), nullptr, 20, 1);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"buffer 'mask'", "20"});
    });
    error_case("lstm_cell h is c", [&] {
        kn_status s = kn_lstm_cell_f32(gates.get(), state.get(), state.get(), nullptr, h.get(), h.get(), nullptr, 2, 3);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"c must not be the same buffer as h"});
    });
    error_case("lstm_cell c is c_prev", [&] {
        kn_status s = kn_lstm_cell_f32(gates.get(), state.get(), h.get(), nullptr, c.get(), state.get(), nullptr, 2, 3);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"c must not be the same buffer as c_prev"});
    });
    error_case("lstm_cell NULL gates", [&] {
        kn_status s = kn_lstm_cell_f32(nullptr, state.get(), state.get(), nullptr, h.get(), c.get(), nullptr, 2, 3);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"'gates' is NULL"});
    });
    error_case("lstm_cell negative hidden", [&] {
        kn_status s = kn_lstm_cell_f32(gates.get(), state.get(), state.get(), nullptr, h.get(), c.get(), nullptr, 2, -3);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"hidden = -3"});
    });
    error_case("lstm_cell_backward dgates too small", [&] {
        kn_status s = kn_lstm_cell_backward_f32(saved.get(), state.get(), nullptr, h.get(), nullptr, small.get(), nullptr,
                                                nullptr, 2, 3);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"lstm_cell_backward", "buffer 'dgates'", "24"});
    });
    error_case("lstm_cell_backward dc_prev is dh", [&] {
        kn_status s = kn_lstm_cell_backward_f32(saved.get(), state.get(), nullptr, h.get(), nullptr, gates.get(), h.get(),
                                                nullptr, 2, 3);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"dc_prev must not be the same buffer as dh"});
    });
    error_case("gru_cell h_gates too small", [&] {
        kn_status s = kn_gru_cell_f32(gates3.get(), small.get(), state.get(), nullptr, h.get(), nullptr, 2, 3);
        return expect_error(cx, s, KN_ERROR_SHAPE_MISMATCH, {"gru_cell", "buffer 'h_gates'", "18"});
    });
    error_case("gru_cell h is h_prev", [&] {
        kn_status s = kn_gru_cell_f32(gates3.get(), gates3.get(), state.get(), nullptr, state.get(), nullptr, 2, 3);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"h must not be the same buffer as h_prev"});
    });
    error_case("gru_cell_backward NULL dh", [&] {
        kn_status s = kn_gru_cell_backward_f32(gates3.get(), gates3.get(), state.get(), nullptr, nullptr, saved.get(),
                                               gates.get(), nullptr, 2, 3);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"'dh' is NULL"});
    });
    error_case("gru_cell_backward dx_gates is dh_gates", [&] {
        kn_status s = kn_gru_cell_backward_f32(gates3.get(), gates3.get(), state.get(), nullptr, h.get(), saved.get(),
                                               saved.get(), nullptr, 2, 3);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"dh_gates must not be the same buffer as dx_gates"});
    });
    error_case("gru_cell sizes overflow", [&] {
        kn_status s = kn_gru_cell_f32(gates3.get(), gates3.get(), state.get(), nullptr, h.get(), nullptr,
                                      int64_t{1} << 40, int64_t{1} << 30);
        return expect_error(cx, s, KN_ERROR_INVALID_ARGUMENT, {"overflow"});
    });
    if (cx.other) {
        error_case("lstm_cell two devices", [&] {
            DeviceArray<float> elsewhere(cx.other, std::vector<float>(6, 0.0f));
            kn_status s = kn_lstm_cell_f32(gates.get(), state.get(), elsewhere.get(), nullptr, h.get(), c.get(), nullptr, 2, 3);
            return expect_error(cx, s, KN_ERROR_DEVICE_MISMATCH, {"'h_prev'"});
        });
    }
    error_case("empty calls", [&] {
        // batch 0 or hidden 0: validated, nothing written.
        DeviceArray<float> untouched(cx.device, nan_filled(6));
        if (kn_lstm_cell_f32(gates.get(), state.get(), state.get(), nullptr, untouched.get(), c.get(), nullptr, 0, 3) != KN_OK)
            return std::string("lstm_cell with batch 0 failed: ") + kn_last_error();
        if (kn_gru_cell_f32(gates3.get(), gates3.get(), state.get(), nullptr, untouched.get(), nullptr, 2, 0) != KN_OK)
            return std::string("gru_cell with hidden 0 failed: ") + kn_last_error();
        return first_changed(untouched.read(), untouched.written(), 0, 6 + kGuard, "h written by an empty call:");
    });
}

}  // namespace

void test_recurrent(Context& cx) {
    // Batch 1, hidden 1, primes, sizes around a SIMD width and a work-group, the benchmark's 64 x 128.
    const int64_t shapes[][2] = {{1, 1}, {1, 7}, {3, 1}, {3, 7}, {2, 33}, {5, 17}, {7, 64}, {64, 128}, {13, 257}};
    for (const auto& sh : shapes)
        for (bool masked : {false, true}) {
            lstm_case(cx, {sh[0], sh[1], masked, false}, true, true, true);
            gru_case(cx, {sh[0], sh[1], masked, false}, true, true);
        }
    for (bool masked : {false, true}) {
        lstm_case(cx, {6, 19, masked, true}, true, true, true);
        gru_case(cx, {6, 19, masked, true}, true, true);
    }
    // The optional operands absent.
    lstm_case(cx, {4, 9, true, false}, false, true, true);
    lstm_case(cx, {4, 9, true, false}, true, false, true);
    lstm_case(cx, {4, 9, true, false}, false, false, true);
    lstm_case(cx, {4, 9, true, false}, true, true, false);
    gru_case(cx, {4, 9, true, false}, false, true);
    lstm_no_saved_case(cx, 5, 11);
    if (!cx.quick) {
        lstm_case(cx, {97, 515, true, false}, true, true, true);
        gru_case(cx, {97, 515, true, false}, true, true);
    }
    error_cases(cx);
}

}  // namespace selftest
