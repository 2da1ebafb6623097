// The multiresolution grid encoding on the CPU: forward and backward in one pass over the
// points, no intermediate [N, L, 2^D] tensors. Built by coordfit/models/grid_kernel.py with
// the system C++ compiler (no torch headers: a plain C ABI called through ctypes) and checked
// against MultiresGrid.reference in tests/test_grid_kernel.py.
//
// The arithmetic mirrors the PyTorch reference operation by operation, in float32, so that
// cells (floor of the position) agree exactly: u = clamp((x + 1) * 0.5, 0, 1),
// pos = u * scale + shift, cell = floor(pos) (clamped to the last cell on explicit levels),
// frac = pos - cell. Compiled with -ffp-contract=off so no multiply-add is fused.
//
// Per level, int64 meta [L, 3 + 2 D]: size, offset, hashed, stride[D], cell_max[D];
// float meta [L, D + 1]: scale[D], shift. Table [rows, F] row-major, output [N, L * F].
//
// Threads: the forward and the gradient of x split the points; the gradient of the table
// splits the levels (their rows are disjoint), so each row's sum runs in point order with
// any number of threads: the backward is deterministic and the same on 1 or 8 threads.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

constexpr uint32_t PRIMES[4] = {1u, 2654435761u, 805459861u, 3674653429u};

struct Level {
    int64_t size, offset;
    bool hashed;
    const int64_t* stride;
    const int64_t* cell_max;
    const float* scale;
    float shift;
};

inline Level level(const int64_t* meta, const float* fmeta, int D, int l) {
    const int64_t* m = meta + l * (3 + 2 * D);
    const float* f = fmeta + l * (D + 1);
    return {m[0], m[1], m[2] != 0, m + 3, m + 3 + D, f, f[D]};
}

// One level of one point: the 2^D rows read and their weights (and what the x-gradient needs).
template <int D>
struct Corners {
    int64_t row[1 << D];
    float w[1 << D];
    float frac[D];
    float dpos[D];  // d pos_d / d x_d: scale * 0.5 inside [-1, 1], 0 where u was clamped

    inline void compute(const float* x, const Level& lv) {
        int64_t lo[D], hi[D];
        uint32_t hlo[D], hhi[D];
        float a[D][2];
        for (int d = 0; d < D; ++d) {
            float raw = (x[d] + 1.0f) * 0.5f;
            float u = std::min(std::max(raw, 0.0f), 1.0f);
            dpos[d] = (raw >= 0.0f && raw <= 1.0f) ? lv.scale[d] * 0.5f : 0.0f;
            float pos = u * lv.scale[d] + lv.shift;
            float base = std::floor(pos);
            float cmax = (float)lv.cell_max[d];
            if (base > cmax) base = cmax;
            float fr = pos - base;
            frac[d] = fr;
            a[d][0] = 1.0f - fr;
            a[d][1] = fr;
            int64_t c = (int64_t)base;
            if (lv.hashed) {
                hlo[d] = (uint32_t)c * PRIMES[d];
                hhi[d] = (uint32_t)(c + 1) * PRIMES[d];
            } else {
                lo[d] = c * lv.stride[d];
                hi[d] = (c + 1) * lv.stride[d];
            }
        }
        for (int k = 0; k < (1 << D); ++k) {
            float wk = 1.0f;
            for (int d = 0; d < D; ++d) wk *= a[d][(k >> d) & 1];
            w[k] = wk;
            int64_t r;
            if (lv.hashed) {
                uint32_t h = 0;
                for (int d = 0; d < D; ++d) h ^= ((k >> d) & 1) ? hhi[d] : hlo[d];
                r = (int64_t)(h & (uint32_t)(lv.size - 1));  // hashed levels hold T = 2^k rows
            } else {
                r = 0;
                for (int d = 0; d < D; ++d) r += ((k >> d) & 1) ? hi[d] : lo[d];
                if (r >= lv.size) r -= lv.size;  // the +1 corner past the last vertex wraps, as tcnn
            }
            row[k] = r + lv.offset;
        }
    }
};

template <typename Fn>
void parallel(int64_t n, int threads, Fn fn) {  // fn(begin, end) on [0, n) in `threads` chunks
    if (threads <= 1 || n < 2) {
        fn((int64_t)0, n);
        return;
    }
    threads = (int)std::min<int64_t>(threads, n);
    std::vector<std::thread> pool;
    int64_t chunk = (n + threads - 1) / threads;
    for (int t = 1; t < threads; ++t) {
        int64_t b = t * chunk, e = std::min(n, b + chunk);
        if (b < e) pool.emplace_back(fn, b, e);
    }
    fn((int64_t)0, std::min(n, chunk));
    for (auto& th : pool) th.join();
}

template <int D, int F>
void forward(int64_t N, const float* x, const float* table, int L, int f_rt, const int64_t* meta,
             const float* fmeta, float* out, int threads) {
    const int Fn = F > 0 ? F : f_rt;
    parallel(N, threads, [&](int64_t b, int64_t e) {
        Corners<D> c;
        for (int l = 0; l < L; ++l) {  // level-outer: one level's rows stay in cache across the points
            Level lv = level(meta, fmeta, D, l);
            for (int64_t n = b; n < e; ++n) {
                c.compute(x + n * D, lv);
                float* o = out + (n * L + l) * Fn;
                if (F > 0) {
                    float acc[F > 0 ? F : 1] = {};
                    for (int k = 0; k < (1 << D); ++k) {
                        const float* t = table + c.row[k] * F;
                        for (int f = 0; f < F; ++f) acc[f] += c.w[k] * t[f];
                    }
                    for (int f = 0; f < F; ++f) o[f] = acc[f];
                } else {
                    for (int f = 0; f < Fn; ++f) o[f] = 0.0f;
                    for (int k = 0; k < (1 << D); ++k) {
                        const float* t = table + c.row[k] * Fn;
                        for (int f = 0; f < Fn; ++f) o[f] += c.w[k] * t[f];
                    }
                }
            }
        }
    });
}

template <int D, int F>
void backward(int64_t N, const float* x, const float* table, const float* grad, int L, int f_rt,
              const int64_t* meta, const float* fmeta, float* grad_table, float* grad_x, int threads) {
    const int Fn = F > 0 ? F : f_rt;
    if (grad_table != nullptr) {
        parallel(L, threads, [&](int64_t lb, int64_t le) {
            Corners<D> c;
            for (int64_t l = lb; l < le; ++l) {
                Level lv = level(meta, fmeta, D, (int)l);
                for (int64_t n = 0; n < N; ++n) {
                    c.compute(x + n * D, lv);
                    const float* g = grad + (n * L + l) * Fn;
                    for (int k = 0; k < (1 << D); ++k) {
                        float* t = grad_table + c.row[k] * Fn;
                        for (int f = 0; f < Fn; ++f) t[f] += c.w[k] * g[f];
                    }
                }
            }
        });
    }
    if (grad_x != nullptr) {
        parallel(N, threads, [&](int64_t b, int64_t e) {
            Corners<D> c;
            for (int64_t n = b; n < e; ++n) {
                float gx[D] = {};
                for (int l = 0; l < L; ++l) {
                    Level lv = level(meta, fmeta, D, l);
                    c.compute(x + n * D, lv);
                    const float* g = grad + (n * L + l) * Fn;
                    for (int k = 0; k < (1 << D); ++k) {
                        const float* t = table + c.row[k] * Fn;
                        float gt = 0.0f;  // d loss / d w_k
                        for (int f = 0; f < Fn; ++f) gt += g[f] * t[f];
                        for (int d = 0; d < D; ++d) {
                            float dw = ((k >> d) & 1) ? 1.0f : -1.0f;  // d w_k / d frac_d
                            for (int e2 = 0; e2 < D; ++e2)
                                if (e2 != d) dw *= ((k >> e2) & 1) ? c.frac[e2] : 1.0f - c.frac[e2];
                            gx[d] += gt * dw * c.dpos[d];
                        }
                    }
                }
                for (int d = 0; d < D; ++d) grad_x[n * D + d] = gx[d];
            }
        });
    }
}

template <int D>
int dispatch_f(int F, auto&& run) {
    switch (F) {
        case 1: run.template operator()<D, 1>(); return 0;
        case 2: run.template operator()<D, 2>(); return 0;
        case 4: run.template operator()<D, 4>(); return 0;
        case 8: run.template operator()<D, 8>(); return 0;
        default: run.template operator()<D, 0>(); return 0;
    }
}

int dispatch(int D, int F, auto&& run) {
    switch (D) {
        case 1: return dispatch_f<1>(F, run);
        case 2: return dispatch_f<2>(F, run);
        case 3: return dispatch_f<3>(F, run);
        case 4: return dispatch_f<4>(F, run);
        default: return 1;
    }
}

}  // namespace

extern "C" {

int coordfit_grid_version() { return 1; }

int coordfit_grid_forward(int D, int F, int64_t N, const float* x, const float* table, int L,
                          const int64_t* meta, const float* fmeta, float* out, int threads) {
    return dispatch(D, F, [&]<int DD, int FF>() { forward<DD, FF>(N, x, table, L, F, meta, fmeta, out, threads); });
}

int coordfit_grid_backward(int D, int F, int64_t N, const float* x, const float* table, const float* grad, int L,
                           const int64_t* meta, const float* fmeta, float* grad_table, float* grad_x,
                           int threads) {
    return dispatch(D, F, [&]<int DD, int FF>() {
        backward<DD, FF>(N, x, table, grad, L, F, meta, fmeta, grad_table, grad_x, threads);
    });
}

// Adam on the rows of a table whose gradient is not all zero (instant-ngp's rule: an entry
// no point reached this step keeps its parameters and moments). torch's Adam arithmetic:
// m += (1 - b1) (g - m), v = b2 v + (1 - b2) g^2, p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps).
// Rows are independent, so any thread count gives the same result.
int coordfit_adam_rows(int64_t rows, int F, float* p, const float* g, float* m, float* v, float lr, float b1,
                       float b2, float eps, float bc1, float bc2_sqrt, int threads) {
    const float step = lr / bc1, inv_bc2 = 1.0f / bc2_sqrt;
    parallel(rows, threads, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
            const float* gr = g + r * F;
            bool touched = false;
            for (int f = 0; f < F; ++f) touched |= gr[f] != 0.0f;
            if (!touched) continue;
            for (int f = 0; f < F; ++f) {
                const int64_t i = r * F + f;
                const float gi = gr[f];
                m[i] += (1.0f - b1) * (gi - m[i]);
                v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
                p[i] -= step * m[i] / (std::sqrt(v[i]) * inv_bc2 + eps);
            }
        }
    });
    return 0;
}

}  // extern "C"
