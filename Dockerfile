# docingest: one image for the API, the workers and the migrate job (docs/deploy.md).
# Builder: a virtualenv with the wheel and its dependencies, each dependency installed at the
# version and sha256 pinned in requirements.lock (`make lock`), so a build can never pick up a
# different or tampered package. Final: that venv only, run by a non-root user; no compiler,
# no pip cache, no source tree.
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/docingest
COPY requirements.lock ./
RUN /opt/docingest/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/docingest/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/docingest/bin/pip install --no-deps /wheels/*.whl

FROM python:3.11-slim
ENV PATH=/opt/docingest/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DOCINGEST_HOME=/var/lib/docingest
RUN groupadd --system --gid 10001 docingest \
 && useradd --system --uid 10001 --gid docingest --home-dir /var/lib/docingest --no-create-home docingest \
 && install -d -o docingest -g docingest -m 0700 /var/lib/docingest
COPY --from=builder /opt/docingest /opt/docingest
USER 10001:10001
WORKDIR /var/lib/docingest
EXPOSE 8000
# Liveness of the API (workers and the migrate job override or ignore it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["docingest"]
CMD ["api", "--host", "0.0.0.0", "--no-migrate"]
