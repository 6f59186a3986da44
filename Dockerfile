# One image for every role: `docker run visionstream ingest|infer|sink|topics ...`.
# Build stage: a venv made from uv.lock (the versions the suite passed with, every file's hash checked) by uv, itself
# installed by hash. Final stage: a slim Python with that venv, no compilers or build tools, as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY scripts/uv-requirements.txt ./scripts/
RUN pip install --no-cache-dir --require-hashes -r scripts/uv-requirements.txt
ENV UV_PROJECT_ENVIRONMENT=/opt/visionstream UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy UV_COMPILE_BYTECODE=0
# the dependencies first (a layer that changes only with the lock), then the project itself, not editable;
# the `tracking` group brings trackers, with its opencv-python requirement overridden (see pyproject.toml)
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --group tracking --no-install-project --no-cache
COPY schemas ./schemas
COPY visionstream ./visionstream
COPY ingest ./ingest
COPY inference ./inference
COPY analytics ./analytics
COPY sink ./sink
COPY cli ./cli
COPY evaluation ./evaluation
COPY console ./console
RUN uv sync --locked --no-dev --group tracking --no-editable --no-cache

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/visionstream --create-home visionstream
COPY --from=build /opt/visionstream /opt/visionstream
ENV PATH=/opt/visionstream/bin:$PATH
USER 10001
WORKDIR /var/lib/visionstream
# Settings come only from VISIONSTREAM_* variables, a mounted config file (--config) and mounted secrets
# (TLS files, passwords passed as variables from secrets); nothing is baked in.
ENV TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
# /metrics, /healthz and /readyz of ingest, inference and sink.
EXPOSE 9106 9107 9108 9109 8080
# Probes the running role's /healthz (a stuck camera thread or a dead loop turns it unhealthy).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["visionstream", "healthcheck"]
ENTRYPOINT ["visionstream"]
CMD ["--help"]
