# The CPU image: API, CPU workers, beat, Flower and migrations (docker-compose.yml runs each with
# its own command). faster-whisper with the bundled tiny.en; no torch.
FROM python:3.11-slim

RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg curl \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 audiojobs
WORKDIR /app
COPY setup.cfg pyproject.toml celeryconfig.py README.rst ./
COPY audiojobs ./audiojobs
RUN pip install --no-cache-dir ".[worker]"
USER audiojobs
ENV AUDIOJOBS_VAR_DIR=/data/var AUDIO_WORK_DIR=/data/work PYTHONUNBUFFERED=1
CMD ["audiojobs", "api", "--host", "0.0.0.0"]
