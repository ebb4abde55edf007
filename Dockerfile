# The edge container (Cloudflare Containers, or any container host): the Starlette app and its
# runtime only. No build pipeline, no compiler, not root. The bundle is fetched at start from
# EDGEPERSO_BUNDLE_URL (an object store's https URL of the bundle directory), its manifest's
# Ed25519 signature checked against EDGEPERSO_PUBLIC_KEY before any other file is downloaded:
# the container refuses unsigned downloads and http, and given a URL without a key it does not
# start (docs/deploy.md). To bake a bundle in instead, add `COPY build/bundle /srv/bundle` and
# leave the URL unset (with EDGEPERSO_PUBLIC_KEY set, it is still checked when it loads).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY edge ./edge
# The project without extras is exactly the edge runtime: numpy, msgspec, starlette,
# onnxruntime, uvicorn, at the versions constraints.txt pins.
RUN pip install -c constraints.txt . \
    && useradd --create-home --uid 10001 edge \
    && mkdir -p /srv/bundle /srv/events \
    && chown -R edge /srv

USER edge
EXPOSE 8080
# The same command the tests start (tests/edge/test_sink.py), on the container's interface.
CMD ["python", "-m", "edge", "serve", "--bundle", "/srv/bundle", "--host", "0.0.0.0", "--port", "8080", "--events-dir", "/srv/events"]
