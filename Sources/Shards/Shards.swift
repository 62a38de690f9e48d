// Shards module
