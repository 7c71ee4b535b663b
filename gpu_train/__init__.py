"""A small causal-LM trainer that reads tweetmill shards directly. Imports torch, numpy, pyarrow only."""
