# bgjob-operator: the operator as a container image.
#
#   docker build -t bgjob-operator:dev .
#   hack/operator-image.sh HOST:PORT   (no Docker: buildah, on a Python base
#                                       image built from Debian packages)
#
# Two stages: the builder makes the wheel and a virtualenv with it and its
# dependencies; the final image gets only that virtualenv, on the same slim
# Python, with no compiler, no pip cache and no build files. It runs as the
# numeric user 65532 (the Helm chart's runAsUser) and writes nothing outside
# /tmp, so it runs with a read-only root filesystem.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, from pyproject.toml alone: this layer is reused until
# it changes, so a rebuild after a code or docs change only reinstalls the wheel.
COPY pyproject.toml ./
RUN python -m venv /opt/bgjob \
 && python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && /opt/bgjob/bin/pip install --no-cache-dir -r /tmp/requirements.txt
COPY README.md ./
COPY operator/ operator/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/bgjob/bin/pip install --no-cache-dir --no-deps /wheels/bgjob_operator-*.whl \
 && /opt/bgjob/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="bgjob-operator" \
      org.opencontainers.image.description="Runs background work on Kubernetes from one BackgroundJob resource." \
      org.opencontainers.image.licenses="Apache-2.0"
# Bytecode was compiled at install time; never try to write more at run time.
# USER: kopf names its peer identity after getpass.getuser(), which fails for
# a UID with no /etc/passwd entry (65532, or whatever runAsUser a user picks)
# unless the environment says who we are.
ENV PATH=/opt/bgjob/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    USER=bgjob-operator
COPY --from=build /opt/bgjob /opt/bgjob
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["bgjob-operator", "run"]
