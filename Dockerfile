# The bot in a container: `docker build -t ticket-bot .`, then see docs/operations.md.
# Settings come from the environment (docker run --env-file .env, or compose.yaml's env_file); .env is
# never copied into the image (.dockerignore).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A dedicated user without a login shell; it owns only /data.
RUN groupadd --system --gid 10001 ticketbot \
 && useradd --system --uid 10001 --gid ticketbot --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin ticketbot \
 && install -d -o ticketbot -g ticketbot -m 0700 /data

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY app.py ./
COPY server/ server/
COPY bot/ bot/
COPY handlers/ handlers/
COPY clients/ clients/
COPY sandbox/ sandbox/
COPY config/ config/
# The package and its run-time dependencies only (no dev or sandbox extras); the source stays in /app,
# read-only for the bot's user.
RUN pip install . \
 && rm -rf build ./*.egg-info

# The database lives on a volume; mount one at /data to keep tickets across containers.
ENV DATABASE_URL=sqlite:////data/tickets.db \
    HOST=0.0.0.0 \
    PORT=3000
VOLUME ["/data"]
EXPOSE 3000

USER ticketbot

# slim has no curl: ask /healthz with Python's urllib (a non-2xx answer or no answer exits non-zero).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]

# docker stop sends SIGTERM; the bot stops within 10 s (compose.yaml gives it 15 s).
STOPSIGNAL SIGTERM
CMD ["python", "app.py"]
