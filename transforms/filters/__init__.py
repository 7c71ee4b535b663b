"""Tweet filters: one module per filter, each a ``Stage`` (see ``transforms/stage.py``).

The order they run in, and which run at all, is decided in one place: ``pipeline/build.py``.
"""
