"""A small causal-LM trainer that reads tweetmill shards directly. Imports torch, numpy, pyarrow only.

Modules (import the ones you need; this package itself imports nothing heavy):

* ``data``       — zero-copy shard reader, validation split by id hash, block packer (numpy/pyarrow)
* ``loader``     — per-rank step batches, prefetched on threads, moved to the device
* ``model``      — compact GPT, document-masked attention backends (flex / varlen / sdpa)
* ``train``      — ``TrainConfig`` and the training loop (``train``), DDP under torchrun
* ``checkpoint`` — atomic checkpoints, ``latest`` pointers, ``weights_only`` loading
* ``metrics``    — model FLOPs / MFU and the JSON-lines metrics stream
* ``cli``        — ``train`` / ``generate`` commands (``python -m tweetmill.gpu_train``)
"""
