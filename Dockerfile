# One image for every role: `docker run visionstream ingest|infer|sink|topics ...`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY visionstream ./visionstream
COPY ingest ./ingest
COPY inference ./inference
COPY sink ./sink
COPY cli ./cli
COPY deploy/kafka ./deploy/kafka
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/visionstream --create-home visionstream
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER visionstream
WORKDIR /var/lib/visionstream
ENV TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
ENTRYPOINT ["visionstream"]
CMD ["--help"]
