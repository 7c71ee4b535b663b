# A pinned worker image for Dataflow (or any portable Beam runner): Beam's Python SDK image with
# tweetmill and its requirements installed, so workers start without installing anything.
#
# The image's Python and Beam versions must match the environment that launches the job
# (tweetmill's .venv: Python 3.11, apache-beam 2.77.0). From the repository root:
#
#   .venv/bin/python -m tweetmill.pipeline.dataflow requirements > docker-requirements.txt  # optional pins
#   docker build -t europe-west4-docker.pkg.dev/PROJECT/REPO/tweetmill:0.1.0 .
#   docker push europe-west4-docker.pkg.dev/PROJECT/REPO/tweetmill:0.1.0
#   tweetmill run 'gs://...' --output gs://... --runner DataflowRunner ... \
#       --sdk_container_image europe-west4-docker.pkg.dev/PROJECT/REPO/tweetmill:0.1.0
#
# With --sdk_container_image, tweetmill stages neither its wheel nor its requirements.
ARG PYTHON_VERSION=3.11
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}

ARG BEAM_VERSION
WORKDIR /opt/tweetmill

# docker-requirements.tx[t]: the pins of the launching environment, when written (see above);
# the bracket makes the file optional.
COPY pyproject.toml README.md docker-requirements.tx[t] ./
COPY pipeline pipeline
COPY transforms transforms
COPY schemas schemas
COPY gpu_train gpu_train

# apache-beam stays the image's own (a constraint, not an upgrade); tweetmill is installed as a
# regular (non-editable) package, with its bundled tokenizer as package data.
RUN echo "apache-beam==${BEAM_VERSION}" > /tmp/beam-constraint.txt \
    && if [ -f docker-requirements.txt ]; then \
         pip install --no-cache-dir -c /tmp/beam-constraint.txt -r docker-requirements.txt; fi \
    && pip install --no-cache-dir -c /tmp/beam-constraint.txt . \
    && rm -rf /opt/tweetmill/* /tmp/beam-constraint.txt \
    && python -c "import apache_beam, langdetect, tokenizers; \
from importlib import resources; \
from tweetmill.pipeline.build import build; \
assert apache_beam.__version__ == '${BEAM_VERSION}', apache_beam.__version__; \
assert resources.files('tweetmill.transforms').joinpath('assets', 'tweet-bpe-16k.json').is_file(); \
assert resources.files('langdetect').joinpath('profiles', 'en').is_file()"

WORKDIR /
# The entry point stays the image's: /opt/apache/beam/boot, which starts the SDK harness.
