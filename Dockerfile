# Worker image: the mnaft package on Python 3.11. TORCH_SPEC picks the torch build:
# torch==2.13.0 is the CPU wheel; plain `torch` is the default CUDA build for the gpu worker.
FROM python:3.11-slim
ARG TORCH_SPEC=torch==2.13.0
ENV DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY mnaft_core mnaft_core
COPY storage storage
COPY tasks tasks
COPY flows flows
COPY configs configs
COPY assets assets
RUN pip install "${TORCH_SPEC}" && pip install -e '.[s3]'
