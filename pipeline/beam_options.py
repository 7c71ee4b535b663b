"""Beam's ``PipelineOptions``, with each view of them made once.

While a graph is built, Beam's type checks ask the pipeline's options for a ``TypeOptions`` view at
every check (``typehints.is_consistent_with``), and each ``view_as`` builds an argparse parser and
parses the flags again: ~1,500 views and ~0.7 s of CPU for tweetmill's graph, in every run. A view
shares its values with the options it came from (``_all_options``), so one view per class serves
every caller alike.
"""

from __future__ import annotations

from typing import Any, TypeVar

from apache_beam.options.pipeline_options import PipelineOptions

__all__ = ["ViewCachingOptions"]

_Options = TypeVar("_Options", bound=PipelineOptions)
_VIEWS = "_views"  # not an option name: kept in the instance's __dict__, never pickled


class ViewCachingOptions(PipelineOptions):
    """``PipelineOptions`` whose ``view_as`` returns the same view of a class each time."""

    def view_as(self, cls: type[_Options]) -> _Options:
        views: dict[type, Any] = self.__dict__.setdefault(_VIEWS, {})
        view = views.get(cls)
        if view is None:
            view = views[cls] = super().view_as(cls)
        return view

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop(_VIEWS, None)
        return state
