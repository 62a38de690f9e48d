// The thin C shim: zstd, zlib, snappy, blosc, serial HDF5 and CBLAS for Swift, plus the HDF5 macros Swift cannot import.
#ifndef CLONGCRAWL_H
#define CLONGCRAWL_H

#include <stdint.h>
#include <stddef.h>
#include <zstd.h>
#include <zstd_errors.h>
#include <cblas.h>
#include <hdf5.h>
#include <openssl/evp.h>
#include <xxhash.h>
#include <zlib.h>
#include <snappy-c.h>
#include <blosc.h>

/// Asks for the cache line at `p` ahead of a write (a hash table probe whose address is known early).
static inline void lc_prefetch(const void *p) { __builtin_prefetch(p, 1, 3); }

/// HDF5 registered filter id for zstd (the id Python's hdf5plugin reads).
#define LC_H5Z_FILTER_ZSTD 32015

// HDF5 constants that are macros over global variables (not importable into Swift).
hid_t lc_h5p_default(void);
hid_t lc_h5s_all(void);
hid_t lc_h5t_native_uint16(void);
hid_t lc_h5t_native_int64(void);
hid_t lc_h5t_std_u16le(void);
hid_t lc_h5t_std_i64le(void);
hid_t lc_h5t_c_s1(void);
hid_t lc_h5p_dataset_create(void);
hid_t lc_h5p_dataset_xfer(void);
hid_t lc_h5p_file_access(void);
unsigned lc_h5f_acc_trunc(void);
hid_t lc_h5p_file_create(void);
hid_t lc_h5t_native_int32(void);
hid_t lc_h5t_std_i32le(void);
size_t lc_h5t_variable(void);
hsize_t lc_h5s_unlimited(void);
unsigned lc_h5f_acc_rdwr(void);
unsigned lc_h5f_acc_rdonly(void);

/// Registers the zstd filter (id 32015) with HDF5 once per process. Returns 0 on success.
int lc_register_zstd_filter(void);

/// Silences HDF5's own error printing to stderr; errors are reported by the caller.
void lc_h5_silence_errors(void);

/// Keeps allocations below `bytes` on the heap (glibc M_MMAP_THRESHOLD), never trims freed heap (M_TRIM_THRESHOLD),
/// and serves every thread from that one heap (M_ARENA_MAX 1).
void lc_malloc_keep_below(int bytes);

/// The largest of x[0..<n] (n >= 1).
float lc_max(const float *x, long n);
/// x[i] = exp(x[i] - shift) in place for i < n, and their sum in double: the softmax inner loop, 8 lanes at a time
/// (Cephes' expf polynomial, within 2 ulp of expf; arguments below -87.3 give about 1e-38 instead of 0).
double lc_exp_shifted_sum(float *x, long n, float shift);
/// a[i] = GELU(h[i]) (tanh form) for i < n, 8 lanes at a time.
void lc_gelu_forward(const float *h, float *a, long n);
/// a[i] = GELU(h[i]) and da[i] *= GELU'(h[i]) for i < n: the MLP backward's one elementwise pass.
void lc_gelu_backward(const float *h, float *a, float *da, long n);
/// Sets the number of OpenBLAS threads.
void lc_blas_set_threads(int n);
/// The OpenBLAS kernel set in use ("Prescott", "Haswell", "SkylakeX", ...).
const char *lc_blas_core_name(void);
/// The best OpenBLAS kernel set this CPU supports ("SkylakeX" with AVX-512, "Haswell" with AVX2+FMA), or NULL.
const char *lc_blas_preferred_core(void);
int lc_blas_get_threads(void);

/// Joins the MPI world when mpirun started this process (rank and size out; returns 1), else rank 0 of 1
/// without touching MPI (returns 0); -1 if MPI_Init failed. MPI_Finalize runs at exit.
int lc_world_start(int *rank, int *size);
/// Cores this process may run on (its affinity mask, as mpirun --bind-to sets it).
int lc_world_cores(void);
/// Ends every rank (MPI_Abort) or, alone, this process.
void lc_world_abort(int code);
void lc_world_barrier(void);
/// In-place sums over all ranks.
void lc_world_sum_float(float *buffer, long count);
void lc_world_sum_double(double *buffer, long count);
/// Starts an in-place sum of buffer[0..<count] over all ranks without waiting (MPI_Iallreduce); the buffer must not
/// be touched until lc_world_wait_sums returns.
void lc_world_start_sum_float(float *buffer, long count);
/// Lets the started sums progress (MPI moves data only inside its calls); 1 when all are complete.
int lc_world_test_sums(void);
/// Waits for every started sum.
void lc_world_wait_sums(void);
/// In-place maximum over all ranks.
void lc_world_max_int64(int64_t *buffer, int count);
/// send[j]: the bytes this rank has for rank j; recv[i]: the bytes rank i has for this one (MPI_Alltoall).
void lc_world_exchange_sizes(const long *send, long *recv);
/// One round of an all-to-all (MPI_Alltoallv of bytes): counts and offsets per rank, in bytes.
void lc_world_exchange_round(const void *send, const int *send_counts, const int *send_offsets,
                             void *recv, const int *recv_counts, const int *recv_offsets);
/// MPI_Get_library_version's first line ("Open MPI v4.1.4, package: ..."); callable before MPI_Init.
const char *lc_mpi_library_version(void);

/// Swaps the names `a` and `b` in one step (renameat2 with RENAME_EXCHANGE, which glibc's headers hide from Swift);
/// 0, or -1 with errno set (EINVAL where the file system cannot).
int lc_rename_exchange(const char *a, const char *b);

/// data/gpt2/encoder.json and vocab.bpe as compiled into the binary (vocabulary.c), with their sizes.
const unsigned char *lc_gpt2_encoder_json(size_t *size);
const unsigned char *lc_gpt2_vocab_bpe(size_t *size);

/// A piece of text the GPT-2 tokenizer has met, or a token, and its ids (gpt2.c, Sources/Tokenizer/PieceTable.swift).
/// `k0` and `k1` are the piece's bytes 0-7 and 8-14, little-endian and zero-padded, with its length in k1's top
/// byte; k1 == 0 marks an empty slot. `ids[0 ..< count]` are its tokens. 32 bytes: two to a cache line.
typedef struct {
    uint64_t k0, k1;
    uint16_t ids[7];
    uint16_t count;
} lc_piece_slot;

/// The longest piece, and the most ids, a slot holds.
#define LC_PIECE_MAX_BYTES 15
#define LC_PIECE_MAX_IDS 7
/// The character class table covers U+0000 ..< U+40000, 2 bits each (0 letter, 1 number, 2 White_Space, 3 other).
#define LC_GPT2_CLASS_END 0x40000

/// `bytes` of memory on 2 MiB boundaries, asking the kernel for huge pages (NULL if out of memory); release with
/// free(). For tables probed at random: with 4 KiB pages an 8 MiB table costs a TLB walk on most probes.
void *lc_huge_alloc(size_t bytes);

/// The hash of `piece` (1-15 bytes) whose low bits are its home slot.
uint64_t lc_piece_hash(const uint8_t *piece, size_t len);

/// Puts `piece` (1-15 bytes) -> `ids` (1-7) into the open-addressed table `slots` (mask + 1 slots, a power of two,
/// never full): the slot it now holds, or -1 if it was there or does not fit a slot.
long lc_piece_insert(lc_piece_slot *slots, uint64_t mask, const uint8_t *piece, size_t len, const uint16_t *ids, size_t count);

/// Called by lc_gpt2_encode for a piece text[start ..< end] the table lacks: writes its ids at `out` (at most
/// end - start + 8 of room) and returns how many.
typedef size_t (*lc_gpt2_miss)(void *context, size_t start, size_t end, uint16_t *out);

/// The front table: 2^LC_FRONT_BITS slots of two words, the bytes of a piece of at most 8 bytes (k0 above), then
/// its length (4 bits), id count (1-3, 2 bits), 10 zero bits and 3 ids of 16 bits; all zero when empty.
#define LC_FRONT_BITS 14

/// The GPT-2 ids of `text` (valid UTF-8) into `out` (room for n + 8), returning how many: splits it by the GPT-2
/// pattern and looks each piece of at most 15 bytes up in `front`, then `slots`; `miss` encodes the others.
/// A piece found in `slots` of at most 8 bytes and 3 ids takes its slot in `front`.
size_t lc_gpt2_encode(const uint8_t *text, size_t n, const lc_piece_slot *slots, uint64_t mask, uint64_t *front,
                      const uint8_t *classes, uint16_t *out, lc_gpt2_miss miss, void *context);

/// One HTTP(S) GET read forward (http.c, on libcurl): http and https only, TLS verified, at most `max_redirects`
/// redirects; `offset` > 0 asks `Range: bytes=offset-`. NULL only when out of memory.
typedef struct lc_http lc_http;
lc_http *lc_http_open(const char *url, long long offset, long max_redirects, long connect_timeout_ms);
/// Waits for the final response's headers: 0 when they are in, 1 when nothing arrived for `stall_ms`, -1 when the
/// transfer failed (lc_http_result, lc_http_error).
int lc_http_wait_headers(lc_http *h, int stall_ms);
long lc_http_status(const lc_http *h);
/// The body's length from Content-Length, -1 when the response has none.
long long lc_http_content_length(const lc_http *h);
/// The final response's Content-Range ("" when none) and Retry-After in seconds (-1 when none or a date).
const char *lc_http_content_range(const lc_http *h);
long lc_http_retry_after(const lc_http *h);
/// Up to `cap` body bytes: their count, 0 at the body's end, -1 when the transfer failed, -2 when nothing arrived
/// for `stall_ms`.
long lc_http_read(lc_http *h, unsigned char *buf, long cap, int stall_ms);
/// The transfer's CURLcode once it has ended (0 before, or on success), and its message.
int lc_http_result(const lc_http *h);
const char *lc_http_error(const lc_http *h);
void lc_http_close(lc_http *h);
/// An anonymous file in memory (memfd_create), for a small remote file a reader needs random access to.
int lc_memfd(const char *name);

#endif
