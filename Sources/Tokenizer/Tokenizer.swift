// Tokenizer module
