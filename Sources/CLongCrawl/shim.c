#include "CLongCrawl.h"
#include <stdlib.h>
#include <pthread.h>
#include <malloc.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

hid_t lc_h5p_default(void) { return H5P_DEFAULT; }
hid_t lc_h5s_all(void) { return H5S_ALL; }
hid_t lc_h5t_native_uint16(void) { return H5T_NATIVE_UINT16; }
hid_t lc_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
hid_t lc_h5t_std_u16le(void) { return H5T_STD_U16LE; }
hid_t lc_h5t_std_i64le(void) { return H5T_STD_I64LE; }
hid_t lc_h5t_c_s1(void) { return H5T_C_S1; }
hid_t lc_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
hid_t lc_h5p_dataset_xfer(void) { return H5P_DATASET_XFER; }
hid_t lc_h5p_file_access(void) { return H5P_FILE_ACCESS; }
unsigned lc_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
unsigned lc_h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }
hid_t lc_h5p_file_create(void) { return H5P_FILE_CREATE; }
hid_t lc_h5t_native_int32(void) { return H5T_NATIVE_INT32; }
hid_t lc_h5t_std_i32le(void) { return H5T_STD_I32LE; }
size_t lc_h5t_variable(void) { return H5T_VARIABLE; }
hsize_t lc_h5s_unlimited(void) { return H5S_UNLIMITED; }
unsigned lc_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }

void lc_h5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

void lc_blas_set_threads(int n) { openblas_set_num_threads(n); }
int lc_blas_get_threads(void) { return openblas_get_num_threads(); }
const char *lc_blas_core_name(void) { return openblas_get_corename(); }

const char *lc_blas_preferred_core(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

// The zstd filter, byte-compatible with hdf5plugin's: each chunk is one plain zstd frame
// (with its content size), cd_values[0] is the compression level.
static size_t zstd_filter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[],
                          size_t nbytes, size_t *buf_size, void **buf) {
    if (flags & H5Z_FLAG_REVERSE) {
        unsigned long long size = ZSTD_getFrameContentSize(*buf, nbytes);
        if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) return 0;
        void *out = malloc(size ? size : 1);
        if (!out) return 0;
        size_t got = ZSTD_decompress(out, size, *buf, nbytes);
        if (ZSTD_isError(got) || got != size) { free(out); return 0; }
        free(*buf);
        *buf = out;
        *buf_size = size;
        return got;
    } else {
        int level = cd_nelmts > 0 ? (int)cd_values[0] : 3;
        size_t bound = ZSTD_compressBound(nbytes);
        void *out = malloc(bound);
        if (!out) return 0;
        size_t got = ZSTD_compress(out, bound, *buf, nbytes, level);
        if (ZSTD_isError(got)) { free(out); return 0; }
        free(*buf);
        *buf = out;
        *buf_size = bound;
        return got;
    }
}

static const H5Z_class2_t zstd_class = {
    H5Z_CLASS_T_VERS, (H5Z_filter_t)LC_H5Z_FILTER_ZSTD, 1, 1, "zstd", NULL, NULL, zstd_filter,
};

static pthread_once_t zstd_once = PTHREAD_ONCE_INIT;
static int zstd_status = -1;
static void register_once(void) { zstd_status = H5Zregister(&zstd_class) < 0 ? -1 : 0; }

int lc_register_zstd_filter(void) {
    pthread_once(&zstd_once, register_once);
    return zstd_status;
}

void lc_malloc_keep_below(int bytes) {
    mallopt(M_MMAP_THRESHOLD, bytes);
    mallopt(M_TRIM_THRESHOLD, -1);
    mallopt(M_ARENA_MAX, 1);
}

#include <immintrin.h>
#include <math.h>

float lc_max(const float *x, long n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    long i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float lanes[8];
    _mm256_storeu_ps(lanes, m);
    float best = -INFINITY;
    for (int k = 0; k < 8; k++) best = lanes[k] > best ? lanes[k] : best;
    for (; i < n; i++) best = x[i] > best ? x[i] : best;
    return best;
}

/* exp by range reduction x = n ln2 + r (ln2 split in two for exactness), a degree-6 polynomial in r, and 2^n
   built in the exponent bits. The scalar and vector versions do the same operations, so a value does not
   depend on its position in the row. */
static const float exp_lo = -87.33654f, exp_hi = 88.37626f, log2e = 1.44269504088896341f;
static const float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
static const float p0 = 1.9875691500e-4f, p1 = 1.3981999507e-3f, p2 = 8.3334519073e-3f, p3 = 4.1665795894e-2f,
                   p4 = 1.6666665459e-1f, p5 = 5.0000001201e-1f;

static inline float exp_scalar(float x) {
    x = fminf(fmaxf(x, exp_lo), exp_hi);
    float n = nearbyintf(x * log2e);
    float r = fmaf(-n, ln2_hi, x);
    r = fmaf(-n, ln2_lo, r);
    float p = fmaf(p0, r, p1);
    p = fmaf(p, r, p2); p = fmaf(p, r, p3); p = fmaf(p, r, p4); p = fmaf(p, r, p5);
    p = fmaf(p, r * r, r + 1.0f);
    union { int i; float f; } scale = { .i = ((int)n + 127) << 23 };
    return p * scale.f;
}

static inline __m256 exp_vector(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(exp_lo)), _mm256_set1_ps(exp_hi));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(log2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(ln2_hi), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(ln2_lo), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(p0), r, _mm256_set1_ps(p1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(p2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(p3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(p4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(p5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

double lc_exp_shifted_sum(float *x, long n, float shift) {
    const __m256 s = _mm256_set1_ps(shift);
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_vector(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
        _mm256_storeu_ps(x + i, e);
        acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double lanes[8];
    _mm256_storeu_pd(lanes, acc0);
    _mm256_storeu_pd(lanes + 4, acc1);
    double sum = 0;
    for (int k = 0; k < 8; k++) sum += lanes[k];
    for (; i < n; i++) { float e = exp_scalar(x[i] - shift); x[i] = e; sum += e; }
    return sum;
}

/* GELU, tanh form: 0.5 x (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3), with tanh u = 1 - 2 / (exp(2u) + 1) from
   the exp above. Only 1 + tanh u and 1 - tanh^2 u are used, so tanh's absolute error (a few 1e-8) is what counts;
   its relative error near u = 0 is larger and this is not a general tanh. exp's clamp keeps 2u finite; a NaN x
   stays NaN through the factor x. glibc's tanhf (through expm1f) was 5% of a small-config training step. */
static const float gelu_c = 0.7978845608028654f, gelu_a = 0.044715f;

/* The same operations in the same order as the vector loops, so a value does not depend on its position. */
static inline void gelu_scalar(float x, float *value, float *slope) {
    float u = gelu_c * fmaf(gelu_a * (x * x), x, x);
    float th = 1.0f - 2.0f / (exp_scalar(u + u) + 1.0f);
    float halfX = 0.5f * x, onePlus = 1.0f + th;
    *value = halfX * onePlus;
    if (slope) *slope = fmaf(halfX * fmaf(-th, th, 1.0f), gelu_c * fmaf(3.0f * gelu_a, x * x, 1.0f), 0.5f * onePlus);
}

static inline __m256 gelu_tanh_vector(__m256 x) {
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 u = _mm256_mul_ps(_mm256_set1_ps(gelu_c), _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(gelu_a), x2), x, x));
    __m256 e = exp_vector(_mm256_add_ps(u, u));
    return _mm256_sub_ps(_mm256_set1_ps(1.0f), _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
}

void lc_gelu_forward(const float *h, float *a, long n) {
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(h + i);
        __m256 th = gelu_tanh_vector(x);
        _mm256_storeu_ps(a + i, _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, th)));
    }
    for (; i < n; i++) gelu_scalar(h[i], a + i, NULL);
}

void lc_gelu_backward(const float *h, float *a, float *da, long n) {
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256 c = _mm256_set1_ps(gelu_c), a3 = _mm256_set1_ps(3.0f * gelu_a);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(h + i);
        __m256 th = gelu_tanh_vector(x);
        __m256 onePlus = _mm256_add_ps(one, th), halfX = _mm256_mul_ps(half, x);
        _mm256_storeu_ps(a + i, _mm256_mul_ps(halfX, onePlus));
        __m256 du = _mm256_mul_ps(c, _mm256_fmadd_ps(a3, _mm256_mul_ps(x, x), one));
        __m256 sech2 = _mm256_fnmadd_ps(th, th, one);
        __m256 slope = _mm256_fmadd_ps(_mm256_mul_ps(halfX, sech2), du, _mm256_mul_ps(half, onePlus));
        _mm256_storeu_ps(da + i, _mm256_mul_ps(_mm256_loadu_ps(da + i), slope));
    }
    for (; i < n; i++) { float slope; gelu_scalar(h[i], a + i, &slope); da[i] *= slope; }
}

int lc_rename_exchange(const char *a, const char *b) {
    return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, 2 /* RENAME_EXCHANGE */);
}
