# One image for every execsight service (collector, correlator, tune, sweep, ui) and the
# one-shot steps (topics, migrate). Built from the repository root by deploy/docker-compose.yml.
# Debian bookworm's python3-bpfcc is built for Python 3.11, as this base image is.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    EXECSIGHT_STATE_DIR=/var/lib/execsight

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-bpfcc bpfcc-tools kmod procps \
    && rm -rf /var/lib/apt/lists/* \
    # bcc is pure Python over libbcc: give this interpreter the bcc module alone, not all of dist-packages
    && ln -s /usr/lib/python3/dist-packages/bcc "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/bcc"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY execsight ./execsight
COPY schemas ./schemas
COPY services ./services
COPY deploy ./deploy
RUN pip install . && mkdir -p /var/lib/execsight

ENTRYPOINT ["execsight"]
CMD ["--help"]
