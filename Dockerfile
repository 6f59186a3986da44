# One image for every role: `docker run visionstream ingest|infer|sink|topics ...`.
# Build stage: wheels for the project and all its dependencies. Final stage: a slim Python with those wheels
# installed, no compilers or build tools, running as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY visionstream ./visionstream
COPY ingest ./ingest
COPY inference ./inference
COPY analytics ./analytics
COPY sink ./sink
COPY cli ./cli
COPY evaluation ./evaluation
COPY console ./console
COPY constraints ./constraints
# trackers without its opencv-python requirement: opencv-python-headless provides cv2 (see pyproject.toml)
RUN pip wheel --no-cache-dir --wheel-dir /wheels . && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels -r constraints/trackers.txt

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/visionstream --create-home visionstream
COPY --from=build /wheels /wheels
# --no-deps: every dependency is among the wheels (and trackers must not pull opencv-python in)
RUN pip install --no-cache-dir --no-compile --no-deps /wheels/*.whl && rm -rf /wheels
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
