/* The GPT-2 vocabulary compiled into the binary, so an installed `longcrawl` needs no data folder beside it.
   #embed resolves the path from this file, like #include; the bytes are data/gpt2's, unchanged. */
#include "CLongCrawl.h"

#pragma clang diagnostic ignored "-Wc23-extensions"

static const unsigned char encoder_json[] = {
#embed "../../data/gpt2/encoder.json"
};
static const unsigned char vocab_bpe[] = {
#embed "../../data/gpt2/vocab.bpe"
};

const unsigned char *lc_gpt2_encoder_json(size_t *size) { *size = sizeof encoder_json; return encoder_json; }
const unsigned char *lc_gpt2_vocab_bpe(size_t *size) { *size = sizeof vocab_bpe; return vocab_bpe; }
