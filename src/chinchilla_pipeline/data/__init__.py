"""Data side: dataset configs, streaming sources, token shards, manifests."""
