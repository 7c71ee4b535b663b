"""Arrow schemas, record types, the manifest format and the shard-directory reader (``shard_dir``)
shared by the pipeline and the trainer.

Depends on pyarrow and numpy only (no Beam, no torch), so a GPU machine with torch and pyarrow can
read shards.
"""

from tweetmill.schemas.manifest import MANIFEST_NAME, Counts, Manifest, ShardEntry, TokenizerInfo
from tweetmill.schemas.records import DeadLetter, Tweet, derived_tweet_id
from tweetmill.schemas.shard import SHARD_FORMAT_VERSION, check_shard_schema, shard_file_name, shard_schema

__all__ = [
    "MANIFEST_NAME",
    "SHARD_FORMAT_VERSION",
    "Counts",
    "DeadLetter",
    "Manifest",
    "ShardEntry",
    "TokenizerInfo",
    "Tweet",
    "check_shard_schema",
    "derived_tweet_id",
    "shard_file_name",
    "shard_schema",
]
