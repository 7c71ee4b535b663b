"""``python -m tweetmill.gpu_train SHARDS [options]`` (also under torchrun) and ``... generate RUN``."""

import sys

from tweetmill.gpu_train.cli import main

if __name__ == "__main__":
    sys.exit(main())
