# trae2api: OpenAI-compatible gateway for your own Trae IDE account.
#   docker build -t trae2api .
#   docker run --env-file .env -p 17080:17080 -v trae2api-data:/data trae2api
# The container listens on 0.0.0.0, so trae2api refuses to start without AUTH_TOKEN
# (see .env.example). The rotated refresh token is kept in the /data volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

# A fixed, non-root uid/gid so a bind-mounted /data can be chowned to 10001 on the host.
RUN groupadd --system --gid 10001 trae2api \
    && useradd --system --uid 10001 --gid trae2api --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin trae2api \
    && install -d -o trae2api -g trae2api -m 0700 /data

WORKDIR /app

# The same install as the README's quickstart (`python -m pip install .`), without -e, with the
# redis extra for REDIS_URL (compose's replicas profile).
COPY pyproject.toml README.md ./
COPY src/ ./src/
RUN python -m pip install --no-cache-dir ".[redis]" \
    && rm -rf build src/*.egg-info

ENV HOST=0.0.0.0 \
    PORT=17080 \
    DATA_DIR=/data

VOLUME /data
EXPOSE 17080
USER trae2api

# Liveness without curl (not in slim images): the standard library is enough.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:${PORT:-17080}/healthz', timeout=4).status == 200 else 1)"

# As PID 1, `serve` supervises itself (as `serve --supervise` does): a small PID 1 runs the
# gateway as its child, passes signals on and stays until any credential rotation the gateway
# started has stored the new token, which a PID 1 gateway's death would otherwise kill.
CMD ["trae2api", "serve"]
