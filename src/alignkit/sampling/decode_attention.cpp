// Decode attention over a KV cache for one new token per row, bf16 in and out, fp32 inside.
//
// Built and loaded by decode_attention.py (g++ -O3 -march=native -fopenmp); plain C++ with GCC vector
// extensions, so the compiler picks the machine's vector width (AVX-512, AVX2, NEON) and no intrinsics are
// written here. Layout (all contiguous, bf16 stored as uint16):
//
//   q     (B, Hkv * G, D)   the new token's query heads; query head h * G + i reads KV head h (GQA)
//   kt    (B, Hkv, D, C)    each row's own keys, transposed: a key's D values lie C apart, so 16 keys are
//                           one vector
//   v     (B, Hkv, C, D)    each row's own values
//   pkt   (N, Hkv, D, P)    the prompt store (P > 0 only): keys of N prompts, each shared by its rows
//   pv    (N, Hkv, P, D)    and their values
//   slot  (B,) int64        the prompt of each row: an index into the prompt store
//   bias  (B, P + C) fp32   additive mask over [row's prompt columns | row's own columns]: 0 = attend,
//                           -inf = hidden
//   out   (B, Hkv * G, D)
//
// For each (row, KV head) pair, in one pass and without writing scores to memory:
//   s[i, j] = scale * q_i . k_j + bias[j]     over the columns of each store not -inf at both ends
//   p[i, :] = softmax(s[i, :])                 (one softmax over both stores; fp32; exp by range reduction
//                                               + polynomial, Cephes expf)
//   out_i   = sum_j p[i, j] v_j                (fp32 accumulation, one rounding to bf16)
// Reading only the visible columns skips the cache's padding and not-yet-written columns; the pairs are
// split over OpenMP threads (the process's runtime, shared with torch). The rows of one prompt are
// neighbours, so a prompt's keys and values come from memory once and from cache for its other rows.

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

typedef float f16v __attribute__((vector_size(64)));       // 16 x fp32
typedef uint16_t u16v __attribute__((vector_size(32)));    // 16 x bf16 bits
typedef uint32_t u32v __attribute__((vector_size(64)));
typedef int32_t i32v __attribute__((vector_size(64)));

static const int L = 16;  // lanes per vector

static inline f16v load_bf16(const uint16_t *p) {
    u16v h;
    std::memcpy(&h, p, sizeof h);
    u32v w = __builtin_convertvector(h, u32v) << 16;
    f16v f;
    std::memcpy(&f, &w, sizeof f);
    return f;
}

static inline f16v load_f32(const float *p) {
    f16v f;
    std::memcpy(&f, p, sizeof f);
    return f;
}

static inline void store_f32(float *p, f16v f) { std::memcpy(p, &f, sizeof f); }

static inline f16v splat(float x) { return f16v{} + x; }

// exp(x) for x <= 0 (softmax inputs after subtracting the max); exactly 0 below -87.3 and at -inf.
// Range reduction x = n ln2 + r, |r| <= ln2 / 2, and Cephes expf's degree-5 polynomial (S. L. Moshier,
// Cephes Math Library, expf.c): relative error about 1e-7.
static inline f16v exp_nonpositive(f16v x) {
    const f16v lo = splat(-87.3f);
    i32v dead = x < lo;
    x = x < lo ? lo : x;
    const f16v magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
    f16v n = (x * splat(1.44269504088896341f) + magic) - magic;
    f16v r = x - n * splat(0.693359375f);
    r = r - n * splat(-2.12194440e-4f);
    f16v poly = splat(1.9875691500e-4f);
    poly = poly * r + splat(1.3981999507e-3f);
    poly = poly * r + splat(8.3334519073e-3f);
    poly = poly * r + splat(4.1665795894e-2f);
    poly = poly * r + splat(1.6666665459e-1f);
    poly = poly * r + splat(5.0000001201e-1f);
    f16v e = poly * r * r + r + splat(1.0f);
    i32v bits;
    std::memcpy(&bits, &e, sizeof bits);
    bits += __builtin_convertvector(n, i32v) << 23;  // times 2^n
    std::memcpy(&e, &bits, sizeof e);
    return dead ? splat(0.0f) : e;
}

static inline uint16_t to_bf16(float f) {  // round to nearest even
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

// A cursor over the next pair's keys or values: each call fetches one more cache line into L2, so the next
// pair's data arrives while this pair computes (spread over the loop: a burst of hundreds of prefetches
// would only stall on the miss queue).
struct Prefetch {
    const char *p = nullptr, *end = nullptr;
    inline void next() {
        if (p < end) {
            __builtin_prefetch(p, 0, 2);  // into L2: L1 is too small for a pair ahead
            p += 64;
        }
    }
};

// 2L bf16 values loaded as L 32-bit words, widened to fp32 by two integer operations: even gets values
// 0, 2, 4, ... (the low halves), odd gets 1, 3, 5, ... (the high halves).
static inline void widen_pairs(const uint16_t *p, f16v &even, f16v &odd) {
    u32v w;
    std::memcpy(&w, p, sizeof w);
    const u32v we = w << 16, wo = w & 0xffff0000u;
    std::memcpy(&even, &we, sizeof even);
    std::memcpy(&odd, &wo, sizeof odd);
}

// The inverse order: store 2L floats at dst, even[l] at dst[2l] and odd[l] at dst[2l + 1].
static inline void store_interleaved(float *dst, f16v even, f16v odd) {
    store_f32(dst, __builtin_shufflevector(even, odd, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23));
    store_f32(dst + L, __builtin_shufflevector(even, odd, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30,
                                               15, 31));
}

// Both products of the attention are sums of rank-1 updates: for t in [t0, t1),
//   out_i (+)= coeff[i * cstride + t] * widen(rows + t * rstride)     (i < NQ; 2L lanes, or L for the tail)
// scores: t = key dimension d, coeff = q, rows = K^T rows at column j (2L keys);
// values: t = column j, coeff = p, rows = V rows at dimension d0 (2L dimensions).
// ACC adds to out (a second segment's values) instead of storing. Two prefetches per step keep the next
// pair's data coming.
template <int NQ, bool ACC = false>
static inline void rank1_block(const float *coeff, int64_t cstride, const uint16_t *rows, int64_t rstride,
                               int64_t t0, int64_t t1, float *out, int64_t ostride, Prefetch &pf) {
    f16v even[NQ] = {}, odd[NQ] = {};
    for (int64_t t = t0; t < t1; ++t) {
        pf.next();
        pf.next();
        f16v re, ro;
        widen_pairs(rows + t * rstride, re, ro);
        for (int i = 0; i < NQ; ++i) {
            const f16v c = splat(coeff[i * cstride + t]);
            even[i] += c * re;
            odd[i] += c * ro;
        }
    }
    for (int i = 0; i < NQ; ++i) {
        if (ACC) {
            float tmp[2 * L];
            store_interleaved(tmp, even[i], odd[i]);
            float *dst = out + i * ostride;
            store_f32(dst, load_f32(dst) + load_f32(tmp));
            store_f32(dst + L, load_f32(dst + L) + load_f32(tmp + L));
        } else {
            store_interleaved(out + i * ostride, even[i], odd[i]);
        }
    }
}

template <int NQ, bool ACC = false>  // the same over L lanes
static inline void rank1_block16(const float *coeff, int64_t cstride, const uint16_t *rows, int64_t rstride,
                                 int64_t t0, int64_t t1, float *out, int64_t ostride, Prefetch &pf) {
    f16v acc[NQ] = {};
    for (int64_t t = t0; t < t1; ++t) {
        pf.next();
        pf.next();
        const f16v r = load_bf16(rows + t * rstride);
        for (int i = 0; i < NQ; ++i) acc[i] += splat(coeff[i * cstride + t]) * r;
    }
    for (int i = 0; i < NQ; ++i) store_f32(out + i * ostride, (ACC ? load_f32(out + i * ostride) : f16v{}) + acc[i]);
}

// The columns of one (row, KV head) pair in one store: the shared prompt's, or the row's own.
struct Segment {
    const uint16_t *kt;  // (D, C) keys, transposed
    const uint16_t *v;   // (C, D) values
    const float *bias;   // (C) additive mask
    int64_t C;           // columns of the store (>= L)
    int64_t lo, hi;      // the visible ones: [lo, hi)
    int64_t off;         // where its scores sit in a score row
};

// [lo, hi): the columns of bias[0, C) left after trimming -inf at both ends.
static inline void visible(const float *bias, int64_t C, int64_t &lo, int64_t &hi) {
    lo = 0;
    hi = C;
    while (lo < hi && bias[lo] == -INFINITY) ++lo;
    while (hi > lo && bias[hi - 1] == -INFINITY) --hi;
}

// NQ query rows of one (row, KV head) pair over its segments: scores, one softmax, weighted sum of values.
// s: NQ score rows of S floats; o: NQ x D outputs (fp32).
template <int NQ>
static void attend(const float *qf, const Segment *seg, int nseg, int64_t D, int64_t S, float scale, float *s,
                   float *o, Prefetch &pk, Prefetch &pv) {
    for (int g = 0; g < nseg; ++g) {
        // Keys in blocks of 2L then L columns; the last block is moved left to end at hi (recomputing a few
        // columns) instead of a scalar tail. C >= L is checked by the caller; a block may start left of lo.
        const Segment &e = seg[g];
        int64_t j = e.lo;
        for (; j + 2 * L <= e.hi; j += 2 * L) rank1_block<NQ>(qf, D, e.kt + j, e.C, 0, D, s + e.off + j, S, pk);
        for (; j < e.hi; j += L) {
            int64_t start = j + L <= e.hi ? j : (e.hi >= L ? e.hi - L : 0);
            rank1_block16<NQ>(qf, D, e.kt + start, e.C, 0, D, s + e.off + start, S, pk);
        }
    }
    for (int i = 0; i < NQ; ++i) {
        float mx = -INFINITY;
        for (int g = 0; g < nseg; ++g) {
            float *si = s + i * S + seg[g].off;
            for (int64_t c = seg[g].lo; c < seg[g].hi; ++c) {
                si[c] = si[c] * scale + seg[g].bias[c];
                mx = si[c] > mx ? si[c] : mx;
            }
        }
        if (mx == -INFINITY) mx = 0.0f;  // every column hidden: all weights 0, output 0
        float total = 0.0f;
        f16v sum = {};
        for (int g = 0; g < nseg; ++g) {
            float *si = s + i * S + seg[g].off;
            int64_t c = seg[g].lo;
            for (; c + L <= seg[g].hi; c += L) {
                f16v e = exp_nonpositive(load_f32(si + c) - splat(mx));
                store_f32(si + c, e);
                sum += e;
            }
            for (; c < seg[g].hi; ++c) {
                float e = std::exp(si[c] - mx);
                si[c] = e;
                total += e;
            }
        }
        for (int k = 0; k < L; ++k) total += sum[k];
        float inv = total > 0.0f ? 1.0f / total : 0.0f;
        for (int g = 0; g < nseg; ++g) {
            float *si = s + i * S + seg[g].off;
            for (int64_t c = seg[g].lo; c < seg[g].hi; ++c) si[c] *= inv;
        }
    }
    for (int g = 0; g < nseg; ++g) {
        const Segment &e = seg[g];
        const float *p = s + e.off;
        int64_t d0 = 0;
        if (g == 0) {
            for (; d0 + 2 * L <= D; d0 += 2 * L) rank1_block<NQ>(p, S, e.v + d0, D, e.lo, e.hi, o + d0, D, pv);
            for (; d0 < D; d0 += L) rank1_block16<NQ>(p, S, e.v + d0, D, e.lo, e.hi, o + d0, D, pv);
        } else {
            for (; d0 + 2 * L <= D; d0 += 2 * L)
                rank1_block<NQ, true>(p, S, e.v + d0, D, e.lo, e.hi, o + d0, D, pv);
            for (; d0 < D; d0 += L) rank1_block16<NQ, true>(p, S, e.v + d0, D, e.lo, e.hi, o + d0, D, pv);
        }
    }
}

typedef void (*attend_fn)(const float *, const Segment *, int, int64_t, int64_t, float, float *, float *,
                          Prefetch &, Prefetch &);

static const attend_fn ATTEND[5] = {nullptr, attend<1>, attend<2>, attend<3>, attend<4>};

extern "C" {

// Returns 0, or 1 when the shapes are not supported (D not a multiple of 16, C < 16, or 0 < P < 16).
// P = 0: no prompt store (pkt, pv, slot unused).
int alignkit_decode_attention_bf16(const uint16_t *q, const uint16_t *kt, const uint16_t *v, const float *bias,
                                   uint16_t *out, const uint16_t *pkt, const uint16_t *pv, const int64_t *slot,
                                   int64_t B, int64_t Hkv, int64_t G, int64_t D, int64_t C, int64_t P,
                                   float scale, int threads) {
    if (D % L != 0 || C < L || (P > 0 && P < L)) return 1;
    const int64_t pairs = B * Hkv, S = P + C;
    // each row's visible columns in the prompt store and in its own: [lo, hi) trimmed of -inf at both ends
    int64_t *bounds = (int64_t *)std::malloc(sizeof(int64_t) * (size_t)(4 * B));
    for (int64_t b = 0; b < B; ++b) {
        visible(bias + b * S, P, bounds[4 * b], bounds[4 * b + 1]);
        visible(bias + b * S + P, C, bounds[4 * b + 2], bounds[4 * b + 3]);
    }
#pragma omp parallel num_threads(threads)
    {
        float *s = (float *)std::malloc(sizeof(float) * (size_t)(4 * S + 4 * D + G * D));
        float *o = s + 4 * S;
        float *qf = o + 4 * D;
#pragma omp for schedule(static)
        for (int64_t pair = 0; pair < pairs; ++pair) {
            const int64_t b = pair / Hkv, h = pair % Hkv;
            const int64_t *bd = bounds + 4 * b;
            Segment seg[2];
            int nseg = 0;
            if (bd[1] > bd[0]) {  // the row's prompt, in the prompt store (shared by the prompt's rows)
                const int64_t ph = slot[b] * Hkv + h;
                seg[nseg++] = Segment{pkt + ph * D * P, pv + ph * P * D, bias + b * S, P, bd[0], bd[1], 0};
            }
            if (bd[3] > bd[2])  // the row's own columns
                seg[nseg++] = Segment{kt + pair * D * C, v + pair * C * D, bias + b * S + P, C, bd[2], bd[3], P};
            const uint16_t *qp = q + (b * Hkv + h) * G * D;
            uint16_t *op = out + (b * Hkv + h) * G * D;
            for (int64_t x = 0; x < G * D; ++x) {
                const uint32_t w = (uint32_t)qp[x] << 16;
                std::memcpy(qf + x, &w, sizeof w);
            }
            Prefetch pk, pn;  // the next pair's own keys (whole block) and visible values
            if (pair + 1 < pairs) {
                pk.p = (const char *)(kt + (pair + 1) * D * C);
                pk.end = pk.p + D * C * 2;
                const int64_t *nb = bounds + 4 * ((pair + 1) / Hkv);
                pn.p = (const char *)(v + ((pair + 1) * C + nb[2]) * D);
                pn.end = (const char *)(v + ((pair + 1) * C + nb[3]) * D);
            }
            for (int64_t i0 = 0; i0 < G; i0 += 4) {
                const int nq = (int)(G - i0 < 4 ? G - i0 : 4);
                if (nseg) {
                    ATTEND[nq](qf + i0 * D, seg, nseg, D, S, scale, s, o, pk, pn);
                } else {
                    std::memset(o, 0, sizeof(float) * (size_t)(nq * D));
                }
                for (int64_t x = 0; x < nq * D; ++x) op[i0 * D + x] = to_bf16(o[x]);
            }
        }
        std::free(s);
    }
    std::free(bounds);
    return 0;
}
}
