#include "CLongCrawl.h"
#include <stdlib.h>
#include <pthread.h>
#include <malloc.h>

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
    mallopt(M_TRIM_THRESHOLD, bytes);
}
