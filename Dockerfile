# The mlitb app image: one image for the master (`mlitb serve`), the data server
# (`mlitb data serve`) and headless workers (`mlitb worker`); docker-compose.yml
# picks the command. The browser client and the shipped MNIST are package data
# (mlitb/static, mlitb/datasets), so a plain install carries them.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLITB_DATA_DIR=/var/lib/mlitb

WORKDIR /app
COPY pyproject.toml README.md MANIFEST.in ./
COPY mlitb ./mlitb
RUN pip install . && useradd --system --home-dir /app mlitb \
    && mkdir -p /var/lib/mlitb && chown mlitb /var/lib/mlitb
USER mlitb
VOLUME /var/lib/mlitb
EXPOSE 8000

# One port: the data API is under /data/. Behind a proxy or TLS set MLITB_PUBLIC_URL.
CMD ["mlitb", "serve", "--host", "0.0.0.0", "--port", "8000"]
