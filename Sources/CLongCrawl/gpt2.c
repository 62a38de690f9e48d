// The GPT-2 tokenizer's inner loop: the pre-tokenizer and the piece table probe (Sources/Tokenizer/PieceTable.swift
// owns the tables, GPT2Tokenizer.encodeValid calls this). In C because the loop needs what Swift does not offer:
// SSE byte compares with a movemask (16 letters decided in a few instructions), software prefetch of the table slots
// a batch of pieces will read, a 16-byte unaligned key load, and CRC32C; and it must stay free of bounds checks and
// retains.
#include "CLongCrawl.h"
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

// Character classes, as Swift's CharClass: the table the Swift side builds packs these, 2 bits per code point.
enum { LETTER = 0, NUMBER = 1, SPACE = 2, OTHER = 3 };

// The class of each ASCII byte: letters A-Z a-z, digits 0-9, White_Space 9-13 and 32, the rest other.
static const uint8_t ascii_class[128] = {
    3,3,3,3,3,3,3,3,3,2,2,2,2,2,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,2,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,1,1,1,1,1,1,1,1,1,1,3,3,3,3,3,3,
    3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,3,3,3,3,3,3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,3,3,3,3,3,
};

// The class of the non-ASCII character at p (valid UTF-8), and its length. Code points from U+40000 on hold no
// letter, number or White_Space in Unicode 16 (planes 4-13 unassigned, 14 tags and selectors, 15-16 private use).
static inline int wide_class(const uint8_t *p, const uint8_t *classes, size_t *len) {
    uint32_t v;
    uint8_t b = p[0];
    if (b < 0xE0) { v = (uint32_t)(b & 0x1F) << 6 | (p[1] & 0x3F); *len = 2; }
    else if (b < 0xF0) { v = (uint32_t)(b & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F); *len = 3; }
    else { v = (uint32_t)(b & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 | (uint32_t)(p[2] & 0x3F) << 6 | (p[3] & 0x3F); *len = 4; }
    if (v >= LC_GPT2_CLASS_END) return OTHER;
    return classes[v >> 2] >> (2 * (v & 3)) & 3;
}

static inline int class_at(const uint8_t *p, const uint8_t *classes, size_t *len) {
    if (p[0] < 0x80) { *len = 1; return ascii_class[p[0]]; }
    return wide_class(p, classes, len);
}

// The end of the run of class `c` that continues at j.
static inline size_t run_end(const uint8_t *p, size_t j, size_t n, int c, const uint8_t *classes) {
    if (c == LETTER) {
        // 16 bytes a step while they are ASCII letters: (b | 0x20) - 'a' < 26, as a signed compare after a shift
        // by 0x80 (SSE2 compares only signed bytes).
        const __m128i bias = _mm_set1_epi8(0x80 - 'a'), lower = _mm_set1_epi8(0x20), bound = _mm_set1_epi8((char)(0x80 + 26));
        for (;;) {
            while (j + 16 <= n) {
                __m128i x = _mm_loadu_si128((const __m128i *)(p + j));
                __m128i t = _mm_add_epi8(_mm_or_si128(x, lower), bias);
                unsigned letters = (unsigned)_mm_movemask_epi8(_mm_cmplt_epi8(t, bound));
                if (letters != 0xFFFF) { j += __builtin_ctz(~letters); break; }
                j += 16;
            }
            while (j < n && p[j] < 0x80 && ascii_class[p[j]] == LETTER) j++;
            if (j >= n || p[j] < 0x80) return j;
            size_t len;
            if (wide_class(p + j, classes, &len) != LETTER) return j;
            j += len;
        }
    }
    while (j < n) {
        size_t len;
        if (class_at(p + j, classes, &len) != c) break;
        j += len;
    }
    return j;
}

// The end of the piece starting at i (< n): the GPT-2 pattern's alternatives as PreTokenizer.swift explains them.
static inline size_t piece_end(const uint8_t *p, size_t i, size_t n, const uint8_t *classes) {
    uint8_t b = p[i];
    if (b == '\'' && i + 1 < n) {
        uint8_t c = p[i + 1];
        if (c == 's' || c == 'd' || c == 'm' || c == 't') return i + 2;
        if (i + 2 < n) {
            uint8_t d = p[i + 2];
            if ((c == 'l' && d == 'l') || (c == 'v' && d == 'e') || (c == 'r' && d == 'e')) return i + 3;
        }
    }
    size_t len;
    int c = class_at(p + i, classes, &len);
    if (b == ' ' && i + 1 < n) {
        size_t next_len;
        int next = class_at(p + i + 1, classes, &next_len);
        if (next != SPACE) return run_end(p, i + 1 + next_len, n, next, classes);
    }
    if (c != SPACE) return run_end(p, i + len, n, c, classes);
    size_t j = i + len, last = i;
    while (j < n) {
        size_t l;
        if (class_at(p + j, classes, &l) != SPACE) break;
        last = j;
        j += l;
    }
    return j == n || last == i ? j : last;
}

// Bytes 0-15 of the 16-byte mask that keeps the first `len` bytes of a load.
static const uint8_t keep_mask[32] = {
    255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
};

static inline __m128i piece_key(const uint8_t *p, size_t len, size_t room) {
    __m128i x;
    if (room >= 16) x = _mm_loadu_si128((const __m128i *)p);
    else { uint8_t buffer[16] = {0}; memcpy(buffer, p, len); x = _mm_loadu_si128((const __m128i *)buffer); }
    x = _mm_and_si128(x, _mm_loadu_si128((const __m128i *)(keep_mask + 16 - len)));
    return _mm_insert_epi8(x, (int)len, 15);
}

static inline uint64_t key_hash(uint64_t k0, uint64_t k1) {
    return _mm_crc32_u64(_mm_crc32_u64(0, k0), k1);
}

uint64_t lc_piece_hash(const uint8_t *piece, size_t len) {
    __m128i key = piece_key(piece, len, 0);
    return key_hash((uint64_t)_mm_cvtsi128_si64(key), (uint64_t)_mm_extract_epi64(key, 1));
}

long lc_piece_insert(lc_piece_slot *slots, uint64_t mask, const uint8_t *piece, size_t len, const uint16_t *ids, size_t count) {
    if (len == 0 || len > LC_PIECE_MAX_BYTES || count == 0 || count > LC_PIECE_MAX_IDS) return -1;
    __m128i key = piece_key(piece, len, 0);
    uint64_t k0 = (uint64_t)_mm_cvtsi128_si64(key), k1 = (uint64_t)_mm_extract_epi64(key, 1);
    uint64_t h = key_hash(k0, k1) & mask;
    while (slots[h].k1 != 0) {
        if (slots[h].k0 == k0 && slots[h].k1 == k1) return -1;
        h = (h + 1) & mask;
    }
    lc_piece_slot s = {k0, k1, {0}, (uint16_t)count};
    memcpy(s.ids, ids, 2 * count);
    slots[h] = s;
    return (long)h;
}

void *lc_huge_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 1 << 21, bytes) != 0) return NULL;
    madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

enum { BATCH = 64 };

// The front table's slot for a piece of at most 8 bytes (bytes k0, length len).
static inline uint64_t front_slot(uint64_t k0, size_t len) {
    return ((k0 ^ len) * 0x9E3779B97F4A7C15ull) >> (64 - LC_FRONT_BITS);
}

size_t lc_gpt2_encode(const uint8_t *text, size_t n, const lc_piece_slot *slots, uint64_t mask, uint64_t *front,
                      const uint8_t *classes, uint16_t *out, lc_gpt2_miss miss, void *context) {
    uint16_t *cursor = out;
    size_t i = 0;
    // A batch of pieces is scanned first, each looked up in the front table at once (it is L2-resident) and, when
    // not there, its home slot in the main table prefetched; then the batch is emitted in order: the main table's
    // loads overlap instead of each waiting for the last.
    size_t starts[BATCH + 1];
    uint64_t k0s[BATCH], k1s[BATCH], homes[BATCH], found[BATCH];
    while (i < n) {
        size_t count = 0;
        while (count < BATCH && i < n) {
            size_t end = piece_end(text, i, n, classes), len = end - i;
            starts[count] = i;
            found[count] = 0;
            k1s[count] = 0;
            if (len <= LC_PIECE_MAX_BYTES) {
                __m128i key = piece_key(text + i, len, n - i);
                uint64_t k0 = (uint64_t)_mm_cvtsi128_si64(key), k1 = (uint64_t)_mm_extract_epi64(key, 1);
                const uint64_t *f = front + 2 * front_slot(k0, len);
                if (len <= 8 && f[0] == k0 && (f[1] & 15) == len) {
                    found[count] = f[1];
                } else {
                    k0s[count] = k0;
                    k1s[count] = k1;
                    homes[count] = key_hash(k0, k1) & mask;
                    _mm_prefetch((const char *)(slots + homes[count]), _MM_HINT_T0);
                }
            }
            count++;
            i = end;
        }
        starts[count] = i;
        for (size_t k = 0; k < count; k++) {
            uint64_t meta = found[k];
            if (meta != 0) {
                // Three ids and a zero: one 8-byte store, then the cursor moves by the count.
                uint64_t ids = meta >> 16;
                memcpy(cursor, &ids, 8);
                cursor += meta >> 4 & 3;
                continue;
            }
            uint64_t k0 = k0s[k], k1 = k1s[k];
            if (k1 != 0) {
                uint64_t h = homes[k];
                for (;;) {
                    const lc_piece_slot *s = slots + h;
                    if (s->k0 == k0 && s->k1 == k1) {
                        // Seven ids and the count: one 16-byte store, then the cursor moves by the count.
                        _mm_storeu_si128((__m128i *)cursor, _mm_loadu_si128((const __m128i *)s->ids));
                        cursor += s->count;
                        size_t len = k1 >> 56;
                        if (len <= 8 && s->count <= 3) {
                            uint64_t *f = front + 2 * front_slot(k0, len);
                            uint64_t ids;
                            memcpy(&ids, s->ids, 8);
                            f[0] = k0;
                            f[1] = len | (uint64_t)s->count << 4 | ids << 16;
                        }
                        goto next;
                    }
                    if (s->k1 == 0) break;
                    h = (h + 1) & mask;
                }
            }
            cursor += miss(context, starts[k], starts[k + 1], cursor);
        next:;
        }
    }
    return (size_t)(cursor - out);
}
