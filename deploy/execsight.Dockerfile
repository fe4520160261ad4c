# The execsight images, built from the repository root by deploy/docker-compose.yml:
#   target app        (execsight:local): correlator, tune, sweep, ui and the one-shot steps
#                     (topics, migrate), as the unprivileged user execsight (uid 10001)
#   target collector  (execsight-collector:local): the collector, root, with bcc
# Debian bookworm's python3-bpfcc is built for Python 3.11, as this base image is.
FROM python:3.11-slim-bookworm AS deps

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EXECSIGHT_STATE_DIR=/var/lib/execsight

# The dependencies alone first, from pyproject.toml: this layer is built again only when they change,
# not on every change of the code.
WORKDIR /app
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
       > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# --- every service but the collector: no root, no bcc --------------------------------------------
FROM deps AS app
RUN groupadd --system --gid 10001 execsight \
    && useradd --system --uid 10001 --gid execsight --home-dir /var/lib/execsight --no-create-home \
       --shell /usr/sbin/nologin execsight \
    # the state dir (a volume, or a tmpfs on a read-only root) starts owned by the user
    && install -d -o execsight -g execsight -m 0700 /var/lib/execsight
COPY README.md ./
COPY execsight ./execsight
COPY schemas ./schemas
COPY services ./services
COPY deploy ./deploy
RUN pip install --no-deps . && rm -rf build
USER 10001:10001
ENTRYPOINT ["execsight"]
CMD ["--help"]

# --- the collector: root (it loads eBPF programs), bcc from Debian --------------------------------
FROM deps AS collector
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-bpfcc bpfcc-tools kmod procps \
    && rm -rf /var/lib/apt/lists/* \
    # bcc is pure Python over libbcc: give this interpreter the bcc module alone, not all of dist-packages
    && ln -s /usr/lib/python3/dist-packages/bcc "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/bcc" \
    && install -d -m 0700 /var/lib/execsight
COPY README.md ./
COPY execsight ./execsight
COPY schemas ./schemas
COPY services ./services
COPY deploy ./deploy
RUN pip install --no-deps . && rm -rf build
ENTRYPOINT ["execsight"]
CMD ["--help"]
