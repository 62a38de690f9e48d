// Preprocess module
