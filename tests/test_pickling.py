"""Every DoFn, CombineFn and PTransform of the full pipeline pickles the way Beam pickles them for a
remote runner, with both of Beam's pickle libraries (``--pickle_library cloudpickle`` and ``dill``),
and unpickles in a fresh interpreter, as on a worker that has only the installed tweetmill."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import apache_beam as beam
import pytest
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions
from conftest import REPO_ROOT
from tweetmill.pipeline.build import build, output_spec
from tweetmill.pipeline.options import RunConfig

LIBRARIES = ("cloudpickle", "dill")
CONFIG = RunConfig(inputs=(str(REPO_ROOT / "examples" / "sample" / "data" / "*"),), output="gs://bucket/out")


class _Collect(beam.pipeline.PipelineVisitor):
    def __init__(self) -> None:
        self.nodes: list[beam.pipeline.AppliedPTransform] = []

    def visit_transform(self, node) -> None:
        self.nodes.append(node)

    def enter_composite_transform(self, node) -> None:
        if node.transform is not None:
            self.nodes.append(node)


def _full_pipeline(library: str) -> beam.Pipeline:
    # Beam's Pipeline sets the pickle library from the options, as on submission.
    p = beam.Pipeline(options=PipelineOptions(["--pickle_library", library]))
    build(p, CONFIG, output_spec(CONFIG))
    return p


def _picklables(p: beam.Pipeline) -> list[tuple[str, object]]:
    """(label, object) for every transform of ``p`` and the user function (DoFn / CombineFn) it runs."""
    visitor = _Collect()
    p.visit(visitor)
    found: list[tuple[str, object]] = []
    for node in visitor.nodes:
        found.append((node.full_label, node.transform))
        fn = getattr(node.transform, "fn", None)
        if fn is not None:
            found.append((f"{node.full_label} fn", fn))
    return found


@pytest.fixture(autouse=True)
def restore_default_pickler():
    yield
    pickler.set_library(pickler.DEFAULT_PICKLE_LIB)


@pytest.mark.slow
@pytest.mark.parametrize("library", LIBRARIES)
def test_every_transform_and_function_of_the_pipeline_pickles(library):
    p = _full_pipeline(library)
    assert pickler.is_currently_dill() == (library == "dill")
    items = _picklables(p)
    labels = {label for label, _ in items}
    for stage in ("ReadArchives", "Clean", "empty", "retweets", "length", "DeduplicateIds",
                  "DeduplicateTexts", "language", "Tokenize", "WriteShards", "WriteDeadLetters", "Finalize"):
        assert stage in labels
    own_fns = {type(obj).__name__ for _, obj in items if type(obj).__module__.startswith("tweetmill.")}
    assert {"_ParseUnitsFn", "_StageFn", "_TokenizeFn", "_WriteShardFn", "_FinalizeFn"} <= own_fns

    failures = []
    for label, obj in items:
        try:
            restored = pickler.loads(pickler.dumps(obj))
        except Exception as exc:  # report every one, not the first
            failures.append(f"{label} ({type(obj).__name__}): {exc!r}")
            continue
        assert type(restored).__name__ == type(obj).__name__
    assert not failures, "\n".join(failures)

    # What a runner receives: the pipeline proto with every function pickled into it, and back.
    proto = p.to_runner_api()
    beam.Pipeline.from_runner_api(proto, p.runner, p.options)


@pytest.mark.slow
def test_the_pickles_load_in_a_fresh_interpreter(tmp_path):
    """A worker unpickles with only the installed packages: no state of the launching process."""
    dumps = {}
    for library in LIBRARIES:
        p = _full_pipeline(library)
        dumps[library] = [(label, pickler.dumps(obj)) for label, obj in _picklables(p)]
    path = tmp_path / "pickles"
    path.write_bytes(pickle.dumps(dumps))
    script = textwrap.dedent(
        """
        import pickle, sys
        from apache_beam.internal import pickler
        dumps = pickle.loads(open(sys.argv[1], "rb").read())
        failed = []
        for library, items in dumps.items():
            pickler.set_library(library)
            for label, data in items:
                try:
                    pickler.loads(data)
                except Exception as exc:
                    failed.append(f"{library} {label}: {exc!r}")
        print("\\n".join(failed))
        print("loaded", sum(len(items) for items in dumps.values()))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    *failures, last = proc.stdout.strip().splitlines()
    assert not [f for f in failures if f], "\n".join(failures)
    assert last == f"loaded {sum(len(v) for v in dumps.values())}"
